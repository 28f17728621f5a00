//! Where a replica listens: a TCP address, or a Unix socket (`unix:/path`) that only the
//! server's user can open, so no other local process reaches `/score` around the endpoint's
//! keys.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The prefix of a Unix socket address.
pub const UNIX_PREFIX: &str = "unix:";

/// A replica's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// `host:port`.
    Tcp(SocketAddr),
    /// `unix:/path/to/socket`.
    Unix(PathBuf),
}

impl ListenAddr {
    /// The socket file of a `unix:` address.
    pub fn unix_path(addr: &str) -> Option<&Path> {
        addr.strip_prefix(UNIX_PREFIX).map(Path::new)
    }
}

/// A `--listen` value that is neither `host:port` nor `unix:/absolute/path`.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an address: give host:port (127.0.0.1:0) or unix:/absolute/path")]
pub struct BadAddress(String);

impl FromStr for ListenAddr {
    type Err = BadAddress;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match Self::unix_path(s) {
            Some(p) if p.is_absolute() => Ok(ListenAddr::Unix(p.to_path_buf())),
            Some(_) => Err(BadAddress(s.to_string())),
            None => s
                .parse()
                .map(ListenAddr::Tcp)
                .map_err(|_| BadAddress(s.to_string())),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "{UNIX_PREFIX}{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_read_back_as_written() {
        for s in ["127.0.0.1:0", "[::1]:8080", "unix:/run/berth/r.sock"] {
            assert_eq!(s.parse::<ListenAddr>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn a_relative_socket_or_a_bare_host_is_refused() {
        for s in ["unix:r.sock", "localhost", "unix:", ""] {
            assert!(s.parse::<ListenAddr>().is_err(), "{s}");
        }
    }
}

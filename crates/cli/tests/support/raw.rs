//! Servers on one PostgreSQL database, started by hand to watch what they say: a leader, and
//! standbys that wait for its lease.

#![allow(dead_code)]

#[path = "../../../store/tests/support/postgres.rs"]
mod postgres;

use super::support;

/// A fresh database of the test cluster (started by this process on first use).
pub fn database() -> String {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(postgres::database())
}

/// A `berth server` started by hand on `home` and `url`, and its stderr lines as they come.
pub struct Raw {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Raw {
    pub fn start(home: &std::path::Path, url: &str) -> Raw {
        use std::io::BufRead;
        let mut child = std::process::Command::new(support::BERTH)
            .args([
                "server",
                "--api-listen",
                "127.0.0.1:0",
                "--scoring-listen",
                "127.0.0.1:0",
            ])
            .args(["--store", url])
            .env("BERTH_HOME", home)
            .env("BERTH_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(l);
            }
        });
        Raw { child, lines }
    }

    /// Waits (at most `secs`) for a line holding `text`; returns it.
    pub fn said(&self, text: &str, secs: u64) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(text) => return l,
                Ok(l) => seen.push(l),
                Err(e) => panic!("no line with `{text}` ({e}); it said:\n{}", seen.join("\n")),
            }
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

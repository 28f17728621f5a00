//! `aml_token` endpoints: signed, expiring tokens. A token is
//! `bt1.<endpoint>.<expiry unix seconds>.<hex HMAC-SHA256>` over `bt1|<endpoint>|<expiry>`,
//! signed with the server's key; the router checks the endpoint, the expiry and the signature.

use ring::hmac;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a Berth token.
    #[error("the token is malformed")]
    Malformed,
    /// Signed for another endpoint.
    #[error("the token is for another endpoint")]
    WrongEndpoint,
    /// Past its expiry.
    #[error("the token expired; get a new one with `berth online-endpoint get-credentials`")]
    Expired,
    /// The signature does not match.
    #[error("the token's signature is not valid")]
    BadSignature,
}

/// A signing key.
#[derive(Clone, Debug)]
pub struct TokenKey(hmac::Key);

impl TokenKey {
    /// A key from secret bytes.
    pub fn new(secret: &[u8]) -> TokenKey {
        TokenKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    fn mac(&self, endpoint: &str, expiry: u64) -> String {
        let tag = hmac::sign(&self.0, format!("bt1|{endpoint}|{expiry}").as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A token for `endpoint` valid until `expiry` (unix seconds).
    pub fn sign(&self, endpoint: &str, expiry: u64) -> String {
        format!("bt1.{endpoint}.{expiry}.{}", self.mac(endpoint, expiry))
    }

    /// Checks a token for `endpoint` at time `now` (unix seconds).
    pub fn verify(&self, endpoint: &str, token: &str, now: u64) -> Result<(), TokenError> {
        let mut parts = token.rsplitn(3, '.');
        let (Some(mac), Some(expiry), Some(head)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let ep = head.strip_prefix("bt1.").ok_or(TokenError::Malformed)?;
        let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        let mac_bytes: Vec<u8> = (0..mac.len())
            .step_by(2)
            .map(|i| {
                mac.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<_>>()
            .ok_or(TokenError::Malformed)?;
        hmac::verify(&self.0, format!("bt1|{ep}|{expiry}").as_bytes(), &mac_bytes)
            .map_err(|_| TokenError::BadSignature)?;
        if ep != endpoint {
            return Err(TokenError::WrongEndpoint);
        }
        if now >= expiry {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies() {
        let k = TokenKey::new(b"secret");
        let t = k.sign("my-ep", 1000);
        assert_eq!(k.verify("my-ep", &t, 999), Ok(()));
        assert_eq!(k.verify("my-ep", &t, 1000), Err(TokenError::Expired));
        assert_eq!(k.verify("other", &t, 10), Err(TokenError::WrongEndpoint));
        assert_eq!(
            TokenKey::new(b"other key").verify("my-ep", &t, 10),
            Err(TokenError::BadSignature)
        );
        let forged = t.replace(".1000.", ".9999.");
        assert_eq!(
            k.verify("my-ep", &forged, 10),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            k.verify("my-ep", "nonsense", 10),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            k.verify("my-ep", "bt1.my-ep.10.zz", 1),
            Err(TokenError::Malformed)
        );
    }
}

//! Client secrets: stored hashed only (SPEC §4), compared in constant time.
//!
//! `sha256:<hex>` is for generated secrets (>= 32 random bytes: brute force is hopeless, so a
//! fast hash is enough). PHC `$argon2id$` is for chosen, guessable secrets.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Sha256,
    Argon2id,
}

#[derive(Clone)]
pub enum SecretHash {
    Sha256([u8; 32]),
    /// The PHC string, validated at load.
    Argon2id(String),
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hashes are not secrets, but they need not reach logs either.
        f.write_str(match self {
            SecretHash::Sha256(_) => "SecretHash::Sha256(..)",
            SecretHash::Argon2id(_) => "SecretHash::Argon2id(..)",
        })
    }
}

impl SecretHash {
    pub fn parse(s: &str) -> Result<SecretHash, String> {
        if let Some(hex) = s.strip_prefix("sha256:") {
            let bytes = hex::decode(hex)
                .ok()
                .filter(|b| b.len() == 32 && hex.bytes().all(|c| !c.is_ascii_uppercase()));
            return match bytes {
                Some(b) => Ok(SecretHash::Sha256(b.try_into().expect("32 bytes"))),
                None => Err("a `sha256:` hash needs 64 lowercase hex digits (use `ords-guard hash-secret --scheme sha256`)".into()),
            };
        }
        if s.starts_with("$argon2id$") {
            let complete = PasswordHash::new(s)
                .map_err(|e| e.to_string())
                .and_then(|h| match (h.salt, h.hash) {
                    (Some(_), Some(_)) => argon2::Params::try_from(&h)
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    _ => Err("salt or hash missing".into()),
                });
            return match complete {
                Ok(()) => Ok(SecretHash::Argon2id(s.to_string())),
                Err(e) => Err(format!(
                    "malformed argon2id PHC string ({e}); use `ords-guard hash-secret`"
                )),
            };
        }
        Err("not a recognised secret hash: use `sha256:<64 hex>` or a PHC `$argon2id$...` string, never the plaintext secret (`ords-guard hash-secret` makes one)".into())
    }

    pub fn scheme(&self) -> Scheme {
        match self {
            SecretHash::Sha256(_) => Scheme::Sha256,
            SecretHash::Argon2id(_) => Scheme::Argon2id,
        }
    }

    /// Constant-time for `sha256:`; argon2's verifier compares its output in constant time.
    pub fn verify(&self, presented: &[u8]) -> bool {
        match self {
            SecretHash::Sha256(want) => {
                let got: [u8; 32] = Sha256::digest(presented).into();
                bool::from(got.ct_eq(want))
            }
            SecretHash::Argon2id(phc) => match PasswordHash::new(phc) {
                Ok(h) => Argon2::default().verify_password(presented, &h).is_ok(),
                Err(_) => false,
            },
        }
    }
}

/// Hash a secret for the registry.
pub fn hash(secret: &[u8], scheme: Scheme) -> String {
    match scheme {
        Scheme::Sha256 => format!("sha256:{}", hex::encode(Sha256::digest(secret))),
        Scheme::Argon2id => {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            Argon2::default()
                .hash_password(secret, &salt)
                .expect("argon2 with default params")
                .to_string()
        }
    }
}

/// A fresh URL-safe secret of 32 random bytes (for `sha256:` storage).
pub fn generate(bytes: usize) -> String {
    use base64::Engine;
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_round_trip() {
        let h = SecretHash::parse(&hash(b"s3cret", Scheme::Sha256)).unwrap();
        assert!(h.verify(b"s3cret"));
        assert!(!h.verify(b"s3cre"));
        assert!(!h.verify(b""));
    }

    #[test]
    fn argon2_round_trip() {
        let h = SecretHash::parse(&hash(b"chosen", Scheme::Argon2id)).unwrap();
        assert_eq!(h.scheme(), Scheme::Argon2id);
        assert!(h.verify(b"chosen"));
        assert!(!h.verify(b"Chosen"));
    }

    #[test]
    fn plaintext_and_malformed_are_refused() {
        for s in [
            "s3cret",
            "sha256:abc",
            "sha256:ZZ",
            &format!("sha256:{}", "A".repeat(64)),
            "$argon2id$garbage",
            "$2b$10$bcrypt",
        ] {
            assert!(SecretHash::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let a = generate(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, generate(32));
    }
}

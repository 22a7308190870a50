//! Client secrets: stored hashed only (SPEC §4), compared in constant time.
//!
//! `sha256:<hex>` is for generated secrets (>= 32 random bytes: brute force is hopeless, so a
//! fast hash is enough). PHC `$argon2id$` is for chosen, guessable secrets; those cost
//! milliseconds of CPU and megabytes of memory each, so the token endpoint runs them on
//! [`pool`], never on a proxy thread.

pub mod budget;
pub mod pool;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, Block};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Sha256,
    Argon2id,
}

/// Largest argon2id memory cost accepted in the registry, in KiB. Each verification worker
/// holds this much while it runs: a larger hash would let one registry entry take a
/// sidecar's whole memory limit. RFC 9106's second recommended setting is 64 MiB.
pub const MAX_ARGON2_M_KIB: u32 = 256 * 1024;

#[derive(Clone)]
pub enum SecretHash {
    Sha256([u8; 32]),
    /// Parsed at load, so a verification only hashes.
    Argon2id(Arc<Argon2Hash>),
}

/// A PHC `$argon2id$` string, taken apart.
pub struct Argon2Hash {
    /// The PHC string as registered: part of the verified-secret cache key.
    pub phc: String,
    params: argon2::Params,
    version: argon2::Version,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl Argon2Hash {
    fn parse(s: &str) -> Result<Argon2Hash, String> {
        let h = PasswordHash::new(s).map_err(|e| e.to_string())?;
        let (Some(salt), Some(hash)) = (h.salt, h.hash) else {
            return Err("salt or hash missing".into());
        };
        // With output_len set from the stored hash, as argon2's own verifier does.
        let params = argon2::Params::try_from(&h).map_err(|e| e.to_string())?;
        if params.m_cost() > MAX_ARGON2_M_KIB {
            return Err(format!(
                "memory cost m={} KiB is over the {MAX_ARGON2_M_KIB} KiB ords-guard accepts (each verification holds it); hash the secret again with `ords-guard hash-secret`",
                params.m_cost()
            ));
        }
        let version = match h.version {
            Some(v) => argon2::Version::try_from(v).map_err(|e| e.to_string())?,
            None => argon2::Version::default(),
        };
        let mut buf = [0u8; 64];
        let salt = salt
            .decode_b64(&mut buf)
            .map_err(|e| e.to_string())?
            .to_vec();
        Ok(Argon2Hash {
            phc: s.to_string(),
            params,
            version,
            salt,
            hash: hash.as_bytes().to_vec(),
        })
    }

    /// The memory one verification needs, in argon2 blocks.
    pub fn blocks(&self) -> usize {
        self.params.block_count()
    }

    /// Hash `presented` into `memory` (grown when too small, otherwise reused) and compare
    /// in constant time.
    pub fn verify_with(&self, presented: &[u8], memory: &mut Vec<Block>) -> bool {
        if memory.len() < self.blocks() {
            memory.resize(self.blocks(), Block::default());
        }
        let mut out = [0u8; 64];
        let Some(out) = out.get_mut(..self.hash.len()) else {
            return false;
        };
        let ctx = Argon2::new(
            argon2::Algorithm::Argon2id,
            self.version,
            self.params.clone(),
        );
        ctx.hash_password_into_with_memory(presented, &self.salt, out, &mut memory[..])
            .is_ok()
            && bool::from(out.ct_eq(&self.hash[..]))
    }
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
            return match Argon2Hash::parse(s) {
                Ok(h) => Ok(SecretHash::Argon2id(Arc::new(h))),
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

    /// Constant-time comparison either way. For argon2id this allocates its memory: the
    /// token endpoint uses [`pool`] instead; this is for the command line and tests.
    pub fn verify(&self, presented: &[u8]) -> bool {
        match self {
            SecretHash::Sha256(want) => {
                let got: [u8; 32] = Sha256::digest(presented).into();
                bool::from(got.ct_eq(want))
            }
            SecretHash::Argon2id(h) => h.verify_with(presented, &mut Vec::new()),
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
    fn argon2_memory_is_reused_and_other_params_verify() {
        // A hash made with other parameters than ours (OWASP's m=12 MiB, t=3) still verifies,
        // in a buffer first grown for a larger one.
        let params = argon2::Params::new(12 * 1024, 3, 1, None).unwrap();
        let other = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(b"pw", &SaltString::generate(&mut rand::rngs::OsRng))
            .unwrap()
            .to_string();
        let SecretHash::Argon2id(small) = SecretHash::parse(&other).unwrap() else {
            panic!("argon2id")
        };
        let SecretHash::Argon2id(big) = SecretHash::parse(&hash(b"pw", Scheme::Argon2id)).unwrap()
        else {
            panic!("argon2id")
        };
        let mut memory = Vec::new();
        assert!(big.verify_with(b"pw", &mut memory));
        let grown = memory.len();
        assert_eq!(grown, big.blocks());
        assert!(small.verify_with(b"pw", &mut memory));
        assert!(!small.verify_with(b"pW", &mut memory));
        assert_eq!(memory.len(), grown, "the larger buffer was reused");
        let p = &small.params;
        assert_eq!((p.m_cost(), p.t_cost(), p.p_cost()), (12 * 1024, 3, 1));
    }

    #[test]
    fn argon2_memory_cost_is_bounded() {
        let params = argon2::Params::new(MAX_ARGON2_M_KIB + 8, 1, 1, None).unwrap();
        // Build the PHC string without running the (huge) hash.
        let phc = format!(
            "$argon2id$v=19$m={},t=1,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
            params.m_cost()
        );
        let e = SecretHash::parse(&phc).err().unwrap();
        assert!(e.contains("memory cost"), "{e}");
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

//! Signing and verification keys: loading (with strength checks), generation (`keygen`,
//! `demo`) and the public JWKS (RFC 7517).

use crate::config::Algorithm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::signature as ring_sig;
use serde_json::{json, Value};
use std::path::Path;

/// Minimum HS256 secret length and RSA modulus size we accept.
pub const MIN_HMAC_BYTES: usize = 32;
pub const MIN_RSA_BITS: usize = 2048;

/// A key that verifies tokens, and its public JWK if it has one.
pub struct VerifyingKey {
    pub alg: Algorithm,
    pub key: Verifier,
    pub jwk: Option<Value>,
}

/// A public key (or HMAC secret) checking JWS signatures. ES256 and RS256 on ring, whose
/// assembly checks them 5x and 9x faster than the pure-Rust crates (criterion, one run:
/// 396 -> 77 µs, 354 -> 39 µs): a flood of distinct forged tokens, which no cache can
/// answer, costs the proxy that much less. Ed25519 stays on ed25519-dalek: ring is no
/// faster there (75 vs 73 µs).
#[derive(Clone)]
pub enum Verifier {
    Hs256(ring::hmac::Key),
    /// The SEC1 uncompressed point.
    Es256(Vec<u8>),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rs256 {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

impl Verifier {
    /// Whether `signature` (raw bytes; ES256 as `r || s`, RFC 7518 §3.4) signs `message`.
    /// The HMAC comparison is constant-time.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Verifier::Hs256(k) => ring::hmac::verify(k, message, signature).is_ok(),
            Verifier::Es256(point) => {
                ring_sig::UnparsedPublicKey::new(&ring_sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            // Strict: no malleable signatures, no weak keys (RFC 8032 §5.1.7).
            Verifier::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| k.verify_strict(message, &sig).is_ok()),
            Verifier::Rs256 { n, e } => ring_sig::RsaPublicKeyComponents { n, e }
                .verify(&ring_sig::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
        }
    }
}

pub struct SigningKey {
    pub alg: Algorithm,
    /// The key parsed once: jsonwebtoken's `EncodingKey` re-parses its DER (and re-derives
    /// the public key) on every signature, which tripled ES256 minting.
    pub signer: Signer,
    /// The signing key's own public half (or the HMAC secret), to verify what we mint.
    pub verifying: VerifyingKey,
}

/// A parsed private key that signs a JWS signing input. All on ring, whose assembly signs
/// ES256 and RS256 many times faster than the pure-Rust crates (criterion `mint`, one run:
/// see docs/src/performance-history.md); the pure-Rust crates still parse the PEM files.
pub enum Signer {
    Hs256(ring::hmac::Key),
    Es256(ring_sig::EcdsaKeyPair),
    EdDsa(ring_sig::Ed25519KeyPair),
    Rs256(ring_sig::RsaKeyPair),
}

/// Signing failed: ECDSA and RSA (blinding) draw from the system's random source, and it
/// did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignError;

impl std::fmt::Display for SignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the system random source failed while signing a token")
    }
}

impl Signer {
    /// The JWS signature (RFC 7518 §3), base64url: ES256 is `r || s`, 64 bytes.
    pub fn sign(&self, input: &[u8]) -> Result<String, SignError> {
        let rng = ring::rand::SystemRandom::new();
        Ok(match self {
            Signer::Hs256(k) => B64.encode(ring::hmac::sign(k, input)),
            Signer::Es256(k) => B64.encode(k.sign(&rng, input).map_err(|_| SignError)?),
            Signer::EdDsa(k) => B64.encode(k.sign(input)),
            Signer::Rs256(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&ring_sig::RSA_PKCS1_SHA256, &rng, input, &mut sig)
                    .map_err(|_| SignError)?;
                B64.encode(sig)
            }
        })
    }
}

pub fn jwt_algorithm(alg: Algorithm) -> jsonwebtoken::Algorithm {
    match alg {
        Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
        Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read key file {}: {e}", path.display()))
}

fn utf8(bytes: &[u8], path: &Path) -> Result<String, String> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| format!("key file {} is not PEM text", path.display()))
}

fn strong_hmac(bytes: &[u8], path: &Path) -> Result<(), String> {
    if bytes.len() < MIN_HMAC_BYTES {
        return Err(format!(
            "HS256 key file {} holds {} bytes; at least {MIN_HMAC_BYTES} are required (`ords-guard keygen --algorithm HS256`)",
            path.display(),
            bytes.len()
        ));
    }
    Ok(())
}

fn strong_rsa(modulus_bytes: usize, path: &Path) -> Result<(), String> {
    if modulus_bytes * 8 < MIN_RSA_BITS {
        return Err(format!(
            "RSA key in {} has {} bits; at least {MIN_RSA_BITS} are required",
            path.display(),
            modulus_bytes * 8
        ));
    }
    Ok(())
}

/// A key the PEM parser took but ring will not sign with (an RSA modulus past 8192 bits, an
/// unusual public exponent, a public half that does not match).
fn cannot_sign(path: &Path, e: ring::error::KeyRejected) -> String {
    format!(
        "key file {} cannot sign: {e}; `ords-guard keygen` writes a key that can",
        path.display()
    )
}

const PKCS8_HINT: &str = "expected a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`); `ords-guard keygen` writes one, `openssl pkcs8 -topk8 -nocrypt` converts others";

/// Load the private signing key for `alg` from `path`.
pub fn load_signing(path: &Path, alg: Algorithm, kid: &str) -> Result<SigningKey, String> {
    let bytes = read(path)?;
    match alg {
        Algorithm::HS256 => {
            strong_hmac(&bytes, path)?;
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes);
            Ok(SigningKey {
                alg,
                signer: Signer::Hs256(key.clone()),
                verifying: VerifyingKey {
                    alg,
                    key: Verifier::Hs256(key),
                    jwk: None,
                },
            })
        }
        Algorithm::ES256 => {
            use p256::pkcs8::DecodePrivateKey;
            let pem = utf8(&bytes, path)?;
            let sk = p256::SecretKey::from_pkcs8_pem(&pem).map_err(|_| {
                format!(
                    "key file {} is not a P-256 key: {PKCS8_HINT}",
                    path.display()
                )
            })?;
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            let point = sk.public_key().to_encoded_point(false);
            let pair = ring_sig::EcdsaKeyPair::from_private_key_and_public_key(
                &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                &sk.to_bytes(),
                point.as_bytes(),
                &ring::rand::SystemRandom::new(),
            )
            .map_err(|e| cannot_sign(path, e))?;
            Ok(SigningKey {
                alg,
                verifying: ec_verifying(&sk.public_key(), kid)?,
                signer: Signer::Es256(pair),
            })
        }
        Algorithm::EdDSA => {
            use ed25519_dalek::pkcs8::DecodePrivateKey;
            let pem = utf8(&bytes, path)?;
            let sk = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map_err(|_| {
                format!(
                    "key file {} is not an Ed25519 key: {PKCS8_HINT}",
                    path.display()
                )
            })?;
            let pair = ring_sig::Ed25519KeyPair::from_seed_and_public_key(
                &sk.to_bytes(),
                sk.verifying_key().as_bytes(),
            )
            .map_err(|e| cannot_sign(path, e))?;
            Ok(SigningKey {
                alg,
                verifying: ed_verifying(&sk.verifying_key(), kid)?,
                signer: Signer::EdDsa(pair),
            })
        }
        Algorithm::RS256 => {
            use rsa::pkcs8::DecodePrivateKey;
            use rsa::traits::PublicKeyParts;
            let pem = utf8(&bytes, path)?;
            let sk = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|_| {
                format!(
                    "key file {} is not an RSA key: {PKCS8_HINT}",
                    path.display()
                )
            })?;
            use rsa::pkcs1::EncodeRsaPrivateKey;
            strong_rsa(sk.size(), path)?;
            let verifying = rsa_verifying(&sk.to_public_key(), kid)?;
            let der = sk.to_pkcs1_der().map_err(|_| {
                format!(
                    "key file {} is not an RSA key: {PKCS8_HINT}",
                    path.display()
                )
            })?;
            let pair =
                ring_sig::RsaKeyPair::from_der(der.as_bytes()).map_err(|e| cannot_sign(path, e))?;
            Ok(SigningKey {
                alg,
                verifying,
                signer: Signer::Rs256(pair),
            })
        }
    }
}

/// Load an older key that still verifies tokens (rotation). Asymmetric: a public key PEM.
pub fn load_verification(path: &Path, alg: Algorithm, kid: &str) -> Result<VerifyingKey, String> {
    let bytes = read(path)?;
    let spki = "expected a public key PEM (`-----BEGIN PUBLIC KEY-----`)";
    match alg {
        Algorithm::HS256 => {
            strong_hmac(&bytes, path)?;
            Ok(VerifyingKey {
                alg,
                key: Verifier::Hs256(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes)),
                jwk: None,
            })
        }
        Algorithm::ES256 => {
            use p256::pkcs8::DecodePublicKey;
            let pk = p256::PublicKey::from_public_key_pem(&utf8(&bytes, path)?).map_err(|_| {
                format!(
                    "key file {} is not a P-256 public key: {spki}",
                    path.display()
                )
            })?;
            ec_verifying(&pk, kid)
        }
        Algorithm::EdDSA => {
            use ed25519_dalek::pkcs8::DecodePublicKey;
            let pk = ed25519_dalek::VerifyingKey::from_public_key_pem(&utf8(&bytes, path)?)
                .map_err(|_| {
                    format!(
                        "key file {} is not an Ed25519 public key: {spki}",
                        path.display()
                    )
                })?;
            ed_verifying(&pk, kid)
        }
        Algorithm::RS256 => {
            use rsa::pkcs8::DecodePublicKey;
            use rsa::traits::PublicKeyParts;
            let pk =
                rsa::RsaPublicKey::from_public_key_pem(&utf8(&bytes, path)?).map_err(|_| {
                    format!(
                        "key file {} is not an RSA public key: {spki}",
                        path.display()
                    )
                })?;
            strong_rsa(pk.size(), path)?;
            rsa_verifying(&pk, kid)
        }
    }
}

fn ec_verifying(pk: &p256::PublicKey, kid: &str) -> Result<VerifyingKey, String> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let point = pk.to_encoded_point(false);
    let (x, y) = (
        B64.encode(point.x().expect("uncompressed")),
        B64.encode(point.y().expect("uncompressed")),
    );
    let key = Verifier::Es256(point.as_bytes().to_vec());
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "use": "sig", "alg": "ES256", "kid": kid});
    Ok(VerifyingKey {
        alg: Algorithm::ES256,
        key,
        jwk: Some(jwk),
    })
}

fn ed_verifying(pk: &ed25519_dalek::VerifyingKey, kid: &str) -> Result<VerifyingKey, String> {
    let x = B64.encode(pk.as_bytes());
    let key = Verifier::Ed25519(*pk);
    let jwk =
        json!({"kty": "OKP", "crv": "Ed25519", "x": x, "use": "sig", "alg": "EdDSA", "kid": kid});
    Ok(VerifyingKey {
        alg: Algorithm::EdDSA,
        key,
        jwk: Some(jwk),
    })
}

fn rsa_verifying(pk: &rsa::RsaPublicKey, kid: &str) -> Result<VerifyingKey, String> {
    use rsa::traits::PublicKeyParts;
    let (n_bytes, e_bytes) = (pk.n().to_bytes_be(), pk.e().to_bytes_be());
    let (n, e) = (B64.encode(&n_bytes), B64.encode(&e_bytes));
    let key = Verifier::Rs256 {
        n: n_bytes,
        e: e_bytes,
    };
    let jwk = json!({"kty": "RSA", "n": n, "e": e, "use": "sig", "alg": "RS256", "kid": kid});
    Ok(VerifyingKey {
        alg: Algorithm::RS256,
        key,
        jwk: Some(jwk),
    })
}

/// A freshly generated key pair: the private file's bytes and, if asymmetric, the public PEM.
pub struct Generated {
    pub private: Vec<u8>,
    pub public: Option<String>,
}

pub fn generate(alg: Algorithm) -> Generated {
    use rand::rngs::OsRng;
    match alg {
        Algorithm::HS256 => {
            // 48 random bytes, written as base64url text: >= 32 bytes, and printable.
            Generated {
                private: crate::clients::secret::generate(48).into_bytes(),
                public: None,
            }
        }
        Algorithm::ES256 => {
            let sk = p256::SecretKey::random(&mut OsRng);
            pem_pair(&sk, &sk.public_key())
        }
        Algorithm::EdDSA => {
            let sk = ed25519_dalek::SigningKey::generate(&mut OsRng);
            // RFC 8410's PKCS#8 v1 form, without the public key attribute: ed25519-dalek
            // writes v2, which OpenSSL 3 and Python's `cryptography` cannot read (we read both).
            let v1 = ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: sk.to_bytes(),
                public_key: None,
            };
            pem_pair(&v1, &sk.verifying_key())
        }
        Algorithm::RS256 => {
            let sk = rsa::RsaPrivateKey::new(&mut OsRng, MIN_RSA_BITS).expect("rsa keygen");
            pem_pair(&sk, &sk.to_public_key())
        }
    }
}

/// PKCS#8 private and SPKI public PEM (p256, ed25519-dalek and rsa share one `pkcs8`).
fn pem_pair(
    private: &impl p256::pkcs8::EncodePrivateKey,
    public: &impl p256::pkcs8::EncodePublicKey,
) -> Generated {
    use p256::pkcs8::LineEnding;
    Generated {
        private: private
            .to_pkcs8_pem(LineEnding::LF)
            .expect("encode")
            .as_bytes()
            .to_vec(),
        public: Some(public.to_public_key_pem(LineEnding::LF).expect("encode")),
    }
}

/// Write `signing.pem` (mode 0600) and, for asymmetric algorithms, `signing.pub.pem` into `dir`.
pub fn write_generated(dir: &Path, g: &Generated) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join("signing.pem"))?;
    f.write_all(&g.private)?;
    if let Some(p) = &g.public {
        std::fs::write(dir.join("signing.pub.pem"), p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_output_is_read_by_openssl() {
        let Ok(v) = std::process::Command::new("openssl")
            .arg("version")
            .output()
        else {
            panic!("openssl is needed for this test (Debian: openssl)");
        };
        assert!(v.status.success());
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
            let dir = tempfile::tempdir().unwrap();
            write_generated(dir.path(), &generate(alg)).unwrap();
            for (file, public) in [("signing.pem", false), ("signing.pub.pem", true)] {
                let mut cmd = std::process::Command::new("openssl");
                cmd.arg("pkey");
                if public {
                    cmd.arg("-pubin");
                }
                let out = cmd
                    .args(["-noout", "-in"])
                    .arg(dir.path().join(file))
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{alg:?} {file}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    #[test]
    fn keys_openssl_generated_sign_what_their_public_half_verifies() {
        // ring signs; what operators bring is often openssl's, not keygen's.
        for (alg, args) in [
            (
                Algorithm::ES256,
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
            ),
            (Algorithm::EdDSA, &["-algorithm", "ED25519"][..]),
            (
                Algorithm::RS256,
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"][..],
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (private, public) = (dir.path().join("k.pem"), dir.path().join("k.pub.pem"));
            let gen = std::process::Command::new("openssl")
                .arg("genpkey")
                .args(args)
                .arg("-out")
                .arg(&private)
                .output()
                .expect("openssl is needed for this test (Debian: openssl)");
            assert!(
                gen.status.success(),
                "{alg:?}: {}",
                String::from_utf8_lossy(&gen.stderr)
            );
            let out = std::process::Command::new("openssl")
                .args(["pkey", "-pubout", "-in"])
                .arg(&private)
                .arg("-out")
                .arg(&public)
                .output()
                .unwrap();
            assert!(out.status.success());
            let sk = load_signing(&private, alg, "k").unwrap();
            let pk = load_verification(&public, alg, "k").unwrap();
            let sig = B64
                .decode(sk.signer.sign(b"header.payload").unwrap())
                .unwrap();
            assert!(pk.key.verify(b"header.payload", &sig), "{alg:?}");
            assert!(!pk.key.verify(b"header.payload!", &sig), "{alg:?}");
        }
    }

    #[test]
    fn an_ed25519_key_with_the_public_attribute_still_loads() {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let sk = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let v2 = sk.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("v2.pem"), v2.as_bytes()).unwrap();
        assert!(load_signing(&dir.path().join("v2.pem"), Algorithm::EdDSA, "k").is_ok());
    }

    #[test]
    fn generated_keys_load_for_every_algorithm() {
        for alg in [
            Algorithm::HS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
            Algorithm::RS256,
        ] {
            let dir = tempfile::tempdir().unwrap();
            write_generated(dir.path(), &generate(alg)).unwrap();
            let sk = load_signing(&dir.path().join("signing.pem"), alg, "k").unwrap();
            assert_eq!(sk.verifying.jwk.is_some(), !alg.is_symmetric());
            if !alg.is_symmetric() {
                let vk = load_verification(&dir.path().join("signing.pub.pem"), alg, "k").unwrap();
                assert_eq!(vk.jwk, sk.verifying.jwk, "{alg:?}");
            }
        }
    }

    #[test]
    fn weak_or_wrong_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, b"too short").unwrap();
        assert!(load_signing(&short, Algorithm::HS256, "k")
            .err()
            .unwrap()
            .contains("at least 32"));
        assert!(
            load_signing(&dir.path().join("missing"), Algorithm::HS256, "k")
                .err()
                .unwrap()
                .contains("cannot read")
        );
        write_generated(dir.path(), &generate(Algorithm::EdDSA)).unwrap();
        // An Ed25519 key offered as ES256.
        assert!(load_signing(&dir.path().join("signing.pem"), Algorithm::ES256, "k").is_err());
        // A public key offered as the private signing key.
        assert!(load_signing(&dir.path().join("signing.pub.pem"), Algorithm::EdDSA, "k").is_err());
    }
}

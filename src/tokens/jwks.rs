//! Identity providers' JSON Web Key Sets (SPEC §9), parsed with jsonwebtoken's `jwk` types
//! key by key, bounded, into the keys an issuer's tokens are checked with. Pure: fetching,
//! refresh and the single-flight refetch on an unknown `kid` are the cache's business.
//!
//! A key that cannot serve is skipped alone, with a reason for the log, and the rest of the
//! set is used: a `use` other than `sig`, an `alg` outside the issuer's algorithms (HS* and
//! encryption algorithms never), a key type or curve no allowed algorithm takes, a symmetric
//! key, an RSA modulus under 2048 bits, a point not on its curve.
//! Signatures are checked with ring (RSA, P-256, P-384) and ed25519-dalek (`verify_strict`).

use crate::tokens::keys::MIN_RSA_BITS;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::Algorithm;
use ring::signature as ring_sig;
use std::fmt;

/// Largest JWK Set document read (SPEC §9).
pub const MAX_BYTES: usize = 1 << 20;
/// Most keys a set may hold; more is a failed fetch, not a truncated set (SPEC §9).
pub const MAX_KEYS: usize = 100;

/// An issuer's algorithms when its entry names none (SPEC §9).
pub const DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a whole document is not a usable JWK Set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    TooLarge(usize),
    NotJson,
    NoKeysArray,
    TooManyKeys(usize),
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::TooLarge(n) => write!(f, "the JWK Set is {n} bytes, over the 1 MiB limit"),
            JwksError::NotJson => f.write_str("the JWK Set is not a JSON object"),
            JwksError::NoKeysArray => f.write_str("the JWK Set has no `keys` array"),
            JwksError::TooManyKeys(n) => write!(
                f,
                "the JWK Set holds {n} keys, over the limit of {MAX_KEYS}"
            ),
        }
    }
}

impl std::error::Error for JwksError {}

/// The public key material of a usable JWK.
#[derive(Clone)]
enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// SEC1 uncompressed points.
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl Material {
    /// Whether a token signed with `alg` can be checked with this key type and curve.
    fn takes(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Material::Rsa { .. } => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Material::P256(_) => alg == ES256,
            Material::P384(_) => alg == ES384,
            Material::Ed25519(_) => alg == EdDSA,
        }
    }
}

/// One usable key of an issuer.
#[derive(Clone)]
pub struct IssuerKey {
    pub kid: Option<String>,
    /// The JWK's own `alg`, when it names one.
    alg: Option<Algorithm>,
    material: Material,
}

impl fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl IssuerKey {
    /// Whether this key may check a token whose header says `alg`: its own `alg`, when
    /// present, is that one, and its type and curve fit it.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.alg.is_none_or(|own| own == alg) && self.material.takes(alg)
    }

    /// Whether `signature` (raw bytes; ECDSA as `r || s`, RFC 7518 §3.4) signs `message`
    /// under `alg`. False for an `alg` the key does not [fit](Self::fits).
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        use Algorithm::*;
        if !self.fits(alg) {
            return false;
        }
        let ring_check = |params: &'static dyn ring_sig::VerificationAlgorithm, key: &[u8]| {
            ring_sig::UnparsedPublicKey::new(params, key)
                .verify(message, signature)
                .is_ok()
        };
        match &self.material {
            Material::Rsa { n, e } => {
                let params: &ring_sig::RsaParameters = match alg {
                    RS256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
                    RS384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
                    RS512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
                    PS256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
                    PS384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
                    PS512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                ring_sig::RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .is_ok()
            }
            Material::P256(point) => ring_check(&ring_sig::ECDSA_P256_SHA256_FIXED, point),
            Material::P384(point) => ring_check(&ring_sig::ECDSA_P384_SHA384_FIXED, point),
            // Strict: no malleable signatures, no weak keys (RFC 8032 §5.1.7).
            Material::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| k.verify_strict(message, &sig).is_ok()),
        }
    }
}

/// Why no key of a set checks a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMiss {
    /// No key has the token's `kid`: the provider may have rotated (refetch, once).
    UnknownKid,
    /// The token has no `kid` and the set holds more than one key.
    KidRequired,
    /// Keys with that `kid` exist, none for the token's `alg`.
    AlgorithmMismatch,
}

/// The usable keys of one JWK Set.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<IssuerKey>,
    /// One line per key skipped, for the log.
    pub skipped: Vec<String>,
}

/// base64url, with or without padding (RFC 7515 says without; some providers pad).
fn b64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .ok()
}

fn algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The key material of a JWK, or why it has none we use.
fn material(jwk: &Jwk) -> Result<Material, &'static str> {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let (Some(n), Some(e)) = (b64(&p.n), b64(&p.e)) else {
                return Err("its RSA `n` or `e` is not base64url");
            };
            let n: Vec<u8> = n.into_iter().skip_while(|b| *b == 0).collect();
            if n.len() * 8 < MIN_RSA_BITS {
                return Err("its RSA modulus is under 2048 bits");
            }
            Ok(Material::Rsa { n, e })
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let (Some(x), Some(y)) = (b64(&p.x), b64(&p.y)) else {
                return Err("its EC `x` or `y` is not base64url");
            };
            let size = match p.curve {
                EllipticCurve::P256 => 32,
                EllipticCurve::P384 => 48,
                _ => return Err("its curve is not P-256 or P-384"),
            };
            if x.len() != size || y.len() != size {
                return Err("its EC coordinates have the wrong length");
            }
            let point = [&[4u8][..], &x, &y].concat();
            // ring checks the point when it verifies; P-256 points are checked now too (p256
            // is in the build), so such a bad key is skipped at load rather than failing
            // every token. A bad P-384 point fails each verification instead.
            if size == 32 {
                p256::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| "its EC point is not on P-256")?;
                Ok(Material::P256(point))
            } else {
                Ok(Material::P384(point))
            }
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            let x: [u8; 32] = b64(&p.x)
                .and_then(|x| x.try_into().ok())
                .ok_or("its Ed25519 `x` is not 32 bytes of base64url")?;
            ed25519_dalek::VerifyingKey::from_bytes(&x)
                .map(Material::Ed25519)
                .map_err(|_| "its Ed25519 key is not a valid point")
        }
        AlgorithmParameters::OctetKeyPair(_) => Err("its OKP curve is not Ed25519"),
        AlgorithmParameters::OctetKey(_) => Err("symmetric keys are never used for an issuer"),
        _ => Err("its key type is not RSA, EC or OKP"),
    }
}

impl KeySet {
    /// Parse a JWK Set document, keeping the keys that can check tokens signed with one of
    /// `allowed`.
    pub fn parse(bytes: &[u8], allowed: &[Algorithm]) -> Result<KeySet, JwksError> {
        if bytes.len() > MAX_BYTES {
            return Err(JwksError::TooLarge(bytes.len()));
        }
        let doc: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|_| JwksError::NotJson)?;
        let entries = doc
            .as_object()
            .ok_or(JwksError::NotJson)?
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or(JwksError::NoKeysArray)?;
        if entries.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys(entries.len()));
        }
        let mut set = KeySet::default();
        for (i, entry) in entries.iter().enumerate() {
            let kid = entry.get("kid").and_then(|k| k.as_str()).unwrap_or("-");
            match Self::usable(entry, allowed) {
                Ok(key) => set.keys.push(key),
                Err(why) => set.skipped.push(format!("key {i} (kid {kid}): {why}")),
            }
        }
        Ok(set)
    }

    fn usable(entry: &serde_json::Value, allowed: &[Algorithm]) -> Result<IssuerKey, &'static str> {
        let jwk: Jwk = serde_json::from_value(entry.clone())
            .map_err(|_| "it is not a JWK (RFC 7517) with the parameters of its type")?;
        match &jwk.common.public_key_use {
            None | Some(PublicKeyUse::Signature) => {}
            Some(_) => return Err("its `use` is not `sig`"),
        }
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(a) => Some(
                algorithm(a)
                    .filter(|a| allowed.contains(a))
                    .ok_or("its `alg` is not one of the issuer's algorithms")?,
            ),
        };
        let material = material(&jwk)?;
        let key = IssuerKey {
            kid: jwk.common.key_id.clone(),
            alg,
            material,
        };
        if !allowed.iter().any(|a| key.fits(*a)) {
            return Err("no algorithm of the issuer fits its key type and `alg`");
        }
        Ok(key)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The `kid`s held, in order: what the log says changed when a refresh brings new keys.
    pub fn kids(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("-"))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key that checks a token with header `kid` and `alg` (SPEC §9: a set of one key
    /// also serves tokens without `kid`).
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&IssuerKey, KeyMiss> {
        let Some(kid) = kid else {
            return match self.keys.as_slice() {
                [only] if only.fits(alg) => Ok(only),
                [_] => Err(KeyMiss::AlgorithmMismatch),
                [] => Err(KeyMiss::UnknownKid),
                _ => Err(KeyMiss::KidRequired),
            };
        };
        let mut named = self
            .keys
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .peekable();
        if named.peek().is_none() {
            return Err(KeyMiss::UnknownKid);
        }
        named
            .find(|k| k.fits(alg))
            .ok_or(KeyMiss::AlgorithmMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::KeyPair;
    use serde_json::json;

    fn enc(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    /// A signer and its public JWK, for each algorithm family.
    enum Signer {
        Rsa(ring_sig::RsaKeyPair),
        Ec(ring_sig::EcdsaKeyPair),
        Ed(ed25519_dalek::SigningKey),
    }

    impl Signer {
        fn sign(&self, alg: Algorithm, msg: &[u8]) -> Vec<u8> {
            let rng = SystemRandom::new();
            match self {
                Signer::Rsa(k) => {
                    let pad: &'static dyn ring_sig::RsaEncoding = match alg {
                        Algorithm::RS256 => &ring_sig::RSA_PKCS1_SHA256,
                        Algorithm::RS384 => &ring_sig::RSA_PKCS1_SHA384,
                        Algorithm::RS512 => &ring_sig::RSA_PKCS1_SHA512,
                        Algorithm::PS256 => &ring_sig::RSA_PSS_SHA256,
                        Algorithm::PS384 => &ring_sig::RSA_PSS_SHA384,
                        _ => &ring_sig::RSA_PSS_SHA512,
                    };
                    let mut sig = vec![0; k.public().modulus_len()];
                    k.sign(pad, &rng, msg, &mut sig).unwrap();
                    sig
                }
                Signer::Ec(k) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
                Signer::Ed(k) => {
                    use ed25519_dalek::Signer as _;
                    k.sign(msg).to_bytes().to_vec()
                }
            }
        }
    }

    fn rsa() -> (Signer, serde_json::Value) {
        use rsa::pkcs8::EncodePrivateKey;
        use rsa::traits::PublicKeyParts;
        let sk = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let der = sk.to_pkcs8_der().unwrap();
        let pair = ring_sig::RsaKeyPair::from_pkcs8(der.as_bytes()).unwrap();
        let jwk = json!({"kty": "RSA", "kid": "r1", "use": "sig",
            "n": enc(&sk.n().to_bytes_be()), "e": enc(&sk.e().to_bytes_be())});
        (Signer::Rsa(pair), jwk)
    }

    fn ec(p384: bool) -> (Signer, serde_json::Value) {
        let rng = SystemRandom::new();
        let (signing, verifying, crv, kid) = if p384 {
            (
                &ring_sig::ECDSA_P384_SHA384_FIXED_SIGNING,
                48,
                "P-384",
                "e384",
            )
        } else {
            (
                &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                32,
                "P-256",
                "e256",
            )
        };
        let doc = ring_sig::EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
        let pair = ring_sig::EcdsaKeyPair::from_pkcs8(signing, doc.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let (x, y) = point[1..].split_at(verifying);
        let jwk = json!({"kty": "EC", "kid": kid, "crv": crv, "x": enc(x), "y": enc(y)});
        (Signer::Ec(pair), jwk)
    }

    fn ed() -> (Signer, serde_json::Value) {
        let sk = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let jwk = json!({"kty": "OKP", "kid": "ed", "crv": "Ed25519", "alg": "EdDSA",
            "x": enc(sk.verifying_key().as_bytes())});
        (Signer::Ed(sk), jwk)
    }

    fn set(keys: &[&serde_json::Value]) -> KeySet {
        let doc = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
        KeySet::parse(&doc, &DEFAULT_ALGORITHMS).unwrap()
    }

    #[test]
    fn every_default_algorithm_verifies_and_rejects_a_forgery() {
        let (rsa_signer, rsa_jwk) = rsa();
        let (p256_signer, p256_jwk) = ec(false);
        let (p384_signer, p384_jwk) = ec(true);
        let (ed_signer, ed_jwk) = ed();
        let keys = set(&[&rsa_jwk, &p256_jwk, &p384_jwk, &ed_jwk]);
        assert_eq!(keys.len(), 4, "{:?}", keys.skipped);
        use Algorithm::*;
        for (alg, kid, signer) in [
            (RS256, "r1", &rsa_signer),
            (RS384, "r1", &rsa_signer),
            (RS512, "r1", &rsa_signer),
            (PS256, "r1", &rsa_signer),
            (PS384, "r1", &rsa_signer),
            (PS512, "r1", &rsa_signer),
            (ES256, "e256", &p256_signer),
            (ES384, "e384", &p384_signer),
            (EdDSA, "ed", &ed_signer),
        ] {
            let sig = signer.sign(alg, b"header.payload");
            let key = keys.select(Some(kid), alg).unwrap();
            assert!(key.verify(alg, b"header.payload", &sig), "{alg:?}");
            assert!(!key.verify(alg, b"header.payloaD", &sig), "{alg:?}");
            let mut bad = sig.clone();
            bad[5] ^= 1;
            assert!(!key.verify(alg, b"header.payload", &bad), "{alg:?}");
        }
        // The key type decides which algorithms a key checks: no RSA key for ES256, no
        // P-256 key for ES384, and a JWK's own alg pins it.
        assert_eq!(
            keys.select(Some("r1"), ES256).unwrap_err(),
            KeyMiss::AlgorithmMismatch
        );
        assert_eq!(
            keys.select(Some("e256"), ES384).unwrap_err(),
            KeyMiss::AlgorithmMismatch
        );
        assert_eq!(
            keys.select(Some("ed"), ES256).unwrap_err(),
            KeyMiss::AlgorithmMismatch
        );
        assert!(!keys
            .select(Some("r1"), RS256)
            .unwrap()
            .verify(HS256, b"m", b"s"));
        assert_eq!(
            keys.select(Some("nope"), RS256).unwrap_err(),
            KeyMiss::UnknownKid
        );
        assert_eq!(keys.select(None, RS256).unwrap_err(), KeyMiss::KidRequired);
        // One key alone serves tokens without a kid.
        let one = set(&[&p256_jwk]);
        let sig = p256_signer.sign(ES256, b"m");
        assert!(one.select(None, ES256).unwrap().verify(ES256, b"m", &sig));
        assert_eq!(
            one.select(None, RS256).unwrap_err(),
            KeyMiss::AlgorithmMismatch
        );
    }

    #[test]
    fn unusable_keys_are_skipped_one_by_one() {
        let (_, good) = ec(false);
        let mut rsa_small = rsa().1;
        rsa_small["n"] = json!(enc(&[0xff; 128]));
        let mut enc_use = good.clone();
        enc_use["use"] = json!("enc");
        let mut hs_alg = good.clone();
        hs_alg["alg"] = json!("HS256");
        let mut wrong_alg = good.clone();
        wrong_alg["alg"] = json!("ES384");
        let mut off_curve = good.clone();
        off_curve["y"] = json!(enc(&[1; 32]));
        let mut short = good.clone();
        short["x"] = json!(enc(&[1; 31]));
        let oct = json!({"kty": "oct", "k": enc(b"0123456789abcdef0123456789abcdef")});
        let p521 = json!({"kty": "EC", "crv": "P-521", "x": enc(&[1; 66]), "y": enc(&[1; 66])});
        let x25519 = json!({"kty": "OKP", "crv": "X25519", "x": enc(&[9; 32])});
        let garbage = json!({"kty": "RSA", "n": 5});
        let not_object = json!("key");
        let keys = set(&[
            &rsa_small,
            &enc_use,
            &hs_alg,
            &wrong_alg,
            &off_curve,
            &short,
            &oct,
            &p521,
            &x25519,
            &garbage,
            &not_object,
            &good,
        ]);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.skipped.len(), 11, "{:#?}", keys.skipped);
        assert!(keys.skipped[0].contains("2048"), "{}", keys.skipped[0]);
        assert!(keys.skipped[1].contains("`use`"));
        assert!(keys.skipped[6].contains("symmetric"));
        // ES384 named on a P-256 key: its type fits no algorithm it may be used for.
        assert!(keys.skipped[3].contains("fits"), "{}", keys.skipped[3]);
        // An issuer limited to RS256 keeps no EC key.
        let doc = serde_json::to_vec(&json!({ "keys": [good] })).unwrap();
        assert!(KeySet::parse(&doc, &[Algorithm::RS256]).unwrap().is_empty());
    }

    #[test]
    fn whole_documents_are_bounded() {
        let algs = &DEFAULT_ALGORITHMS;
        assert_eq!(
            KeySet::parse(b"<html>", algs).unwrap_err(),
            JwksError::NotJson
        );
        assert_eq!(KeySet::parse(b"[]", algs).unwrap_err(), JwksError::NotJson);
        assert_eq!(
            KeySet::parse(b"{}", algs).unwrap_err(),
            JwksError::NoKeysArray
        );
        assert_eq!(
            KeySet::parse(br#"{"keys": {}}"#, algs).unwrap_err(),
            JwksError::NoKeysArray
        );
        assert!(KeySet::parse(br#"{"keys": []}"#, algs).unwrap().is_empty());
        let (_, k) = ec(false);
        let many = serde_json::to_vec(&json!({ "keys": vec![k; MAX_KEYS + 1] })).unwrap();
        assert_eq!(
            KeySet::parse(&many, algs).unwrap_err(),
            JwksError::TooManyKeys(101)
        );
        let huge = vec![b' '; MAX_BYTES + 1];
        assert_eq!(
            KeySet::parse(&huge, algs).unwrap_err(),
            JwksError::TooLarge(MAX_BYTES + 1)
        );
    }
}

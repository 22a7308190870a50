//! The token side of the ORDS model, as a door: the client-credentials endpoint and the
//! JWKS (`endpoint`), and the throttle on failed attempts (`throttle`).
//!
//! Layer: above `registry`, which the endpoint reads. What the registry holds sits below
//! and is re-exported here under its old names: our JWTs and keys, identity providers'
//! claim rules and JWK Sets (`crate::tokens`: `token`, `keys`, `issuer`, `jwks`), and
//! client secrets with where argon2id runs (`crate::clients::secret`).

pub mod endpoint;
pub mod throttle;

pub use crate::clients::secret;
pub use crate::tokens::{issuer, jwks, keys, token};

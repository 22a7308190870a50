//! Bearer tokens and the keys that sign and verify them, as the registry holds them. Our
//! own: the JWTs the token endpoint mints and the proxy verifies (`token`), their signing
//! and verification keys (`keys`), and those revoked before their expiry (`revoked`).
//! Identity providers' (SPEC §9): an issuer's claim rules (`issuer`), JWK Sets (`jwks`),
//! the cell holding an issuer's keys (`keycell`) and the tasks that fetch them
//! (`jwks_fetch`); opaque tokens' answers (`introspection`) and the calls that get them
//! (`introspector`, SPEC §16).
//!
//! Layer: below `registry` (which compiles these from the config), above `config`,
//! `clients` and the utilities. Nothing here reads a registry: the doors that do (the
//! decision in `access`, the token endpoint in `oauth`) sit above it.

pub mod introspection;
pub mod introspector;
pub mod issuer;
pub mod jwks;
pub mod jwks_fetch;
pub mod keycell;
pub mod keys;
pub mod revoked;
pub mod token;

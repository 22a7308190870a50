//! OAuth2 and JOSE pieces for identity providers' tokens (SPEC §9): the issuer checks, JWK
//! Sets, the cell holding an issuer's keys and the fetcher that fills it. The token
//! endpoint, its keys and secrets still live at the crate root; they move here next.

pub mod issuer;
pub mod jwks;
pub mod jwks_fetch;
pub mod keycell;

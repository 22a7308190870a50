//! OAuth2 and JOSE pieces for identity providers' tokens (SPEC §9). The token endpoint, its
//! keys and secrets still live at the crate root; they move here as issuers land.

pub mod issuer;
pub mod jwks;

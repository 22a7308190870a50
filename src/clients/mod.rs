//! ORDS OAuth clients' credentials, as the registry compiles and the commands write them:
//! secrets stored hashed only and checked in constant time (`secret`, with the argon2id
//! worker `pool` and its per-second `budget`), and new clients with a generated id and
//! secret (`new_client`, for `clients add`, `demo` and `import ords`).
//!
//! Layer: below `registry`, above `config`. Nothing here reads a registry.

pub mod secret;

use crate::config::ClientConfig;
use secret::Scheme;

/// A client with a generated id and secret (32 random bytes, so `sha256:` storage).
pub fn new_client(
    name: &str,
    roles: Vec<String>,
    privileges: Vec<String>,
) -> (ClientConfig, String) {
    let secret = secret::generate(32);
    let client = ClientConfig {
        name: name.to_string(),
        client_id: secret::generate(16),
        secrets: vec![secret::hash(secret.as_bytes(), Scheme::Sha256)],
        grant_type: "client_credentials".into(),
        owner: None,
        description: None,
        support_email: None,
        privileges,
        roles,
        token_lifetime_seconds: None,
        disabled: false,
        introspect: false,
        not_before: None,
    };
    (client, secret)
}

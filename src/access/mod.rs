//! Who may reach a path (SPEC §3): the pure decision (`decision`) and `ords-guard explain`,
//! the same steps told in words (`explain`).
//!
//! Layer: a door above `registry`, which it reads. What the registry compiled it from sits
//! below: the normalised request target and the privileges' patterns are `crate::patterns`
//! (re-exported here as `path` and `pattern`), the client's address behind
//! `trusted_proxies` is `crate::client_addr`.

pub mod decision;
pub mod explain;

pub use crate::patterns::{path, pattern};

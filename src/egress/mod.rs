//! Egress (SPEC §10): ords-guard as the client of a remote API, for legacy callers that
//! cannot do OAuth2. Here are the pure parts and the token manager: reading a token
//! endpoint's answer (`answer`), the renewal schedule and backoff (`schedule`), retry
//! eligibility (`retry`), and the single-flight manager that holds an entry's token
//! (`tokens`).
//!
//! Layer: below `registry`, which compiles each entry and holds its manager. The doors
//! that read the registry — the egress listener and the runner of the managers' tasks —
//! are `serve::egress`.

pub mod answer;
pub mod retry;
pub mod schedule;
pub mod tokens;

//! Egress (SPEC §10): ords-guard as the client of a remote API, for legacy callers that
//! cannot do OAuth2. What has landed are the pure parts and the token manager: reading a
//! token endpoint's answer, the renewal schedule and backoff, retry eligibility, and the
//! single-flight manager that holds an entry's token. The egress listener that uses them
//! is the next part of issue #12.

pub mod answer;
pub mod proxy;
pub mod retry;
pub mod runner;
pub mod schedule;
pub mod tokens;

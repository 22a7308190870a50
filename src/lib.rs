//! ords-guard: the Oracle REST Data Services security model — privileges, roles, OAuth2
//! clients, a client-credentials token endpoint and bearer enforcement — for any HTTP
//! backend, as a pingora reverse proxy.
//!
//! The top-level modules are layers, and their imports point down only: `tests/layering.rs`
//! reads every `crate::` reference and fails on a circle. Bottom to top:
//!
//! 1. The schema and utilities, which know nothing of the ORDS model: `config` (the YAML
//!    schema, parsed with positions), `logs`, `background` (the runtime for our own
//!    fetches), `backoff`, `certs`, `resolve`, `outbound` (the outbound HTTP client),
//!    `client_addr` (the client behind `trusted_proxies`) and `backend` (the demo's echo
//!    backend).
//! 2. What the registry is compiled from, pure of any registry: `patterns` (the request path
//!    normalised, privileges' patterns), `clients` (client secrets, new clients), `tokens`
//!    (our JWTs and keys, identity providers' claim rules and JWK Sets), `egress` (a remote
//!    API's token manager and its rules), `ratelimit` (the arithmetic and the stores) and
//!    `traces` (spans, W3C trace context and their export).
//! 3. `registry`: the compiled, immutable generation every request reads.
//! 4. The doors that read it: `oauth` (the token endpoint), `access` (the decision and
//!    `explain`), and `serve`, everything that listens (the ingress proxy and its decision
//!    pipeline, the egress listeners, the admin port, reloads).
//! 5. The commands: `import`, `demo` and `cli`.

// 1. The schema and utilities.
pub mod backend;
pub mod background;
pub mod backoff;
pub mod certs;
pub mod client_addr;
pub mod config;
pub mod logs;
pub mod outbound;
pub mod problem;
pub mod resolve;

// 2. What the registry is compiled from.
pub mod clients;
pub mod egress;
pub mod patterns;
pub mod ratelimit;
pub mod tokens;
pub mod traces;

// 3. The registry.
pub mod registry;

// 4. The doors that read it.
pub mod access;
pub mod oauth;
pub mod revocation;
pub mod serve;

// 5. The commands.
pub mod cli;
pub mod demo;
pub mod import;

//! ords-guard: the Oracle REST Data Services security model — privileges, roles, OAuth2
//! clients, a client-credentials token endpoint and bearer enforcement — for any HTTP
//! backend, as a pingora reverse proxy.
//!
//! One folder a concern, as a newcomer would look for it: `access` decides who may reach a
//! path, `oauth` is the token side (our endpoint, keys, secrets, identity providers),
//! `egress` attaches tokens for legacy callers, `serve` is everything that listens. Pure
//! logic (`access`, `registry`, `oauth::token`, `oauth::endpoint`, `ratelimit::gcra`) is
//! kept apart from I/O (`serve`, `egress::proxy`, `outbound`), and imports point down: the
//! registry compiles configs with `certs` and `oauth`, never with `serve`.

pub mod access;
pub mod background;
pub mod backoff;
pub mod certs;
pub mod config;
pub mod egress;
pub mod oauth;
pub mod ratelimit;
pub mod registry;
pub mod resolve;

pub mod backend;
pub mod cli;
pub mod demo;
pub mod import;
pub mod logs;
pub mod outbound;
pub mod serve;

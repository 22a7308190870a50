//! ords-guard: the Oracle REST Data Services security model — privileges, roles, OAuth2
//! clients, a client-credentials token endpoint and bearer enforcement — for any HTTP
//! backend, as a pingora reverse proxy.
//!
//! Pure logic (`path`, `pattern`, `registry`, `decision`, `token`, `endpoint`) is kept apart
//! from I/O (`proxy`, `conn`, `tls`, `admin`, `server`).

pub mod background;
pub mod backoff;
pub mod certs;
pub mod client_addr;
pub mod config;
pub mod decision;
pub mod egress;
pub mod endpoint;
pub mod keys;
pub mod oauth;
pub mod path;
pub mod pattern;
pub mod ratelimit;
pub mod registry;
pub mod resolve;
pub mod secret;
pub mod throttle;
pub mod token;

pub mod admin;
pub mod backend;
pub mod cli;
pub mod conn;
pub mod demo;
pub mod explain;
pub mod import;
pub mod logs;
pub mod metrics;
pub mod outbound;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod state;
pub mod tls;
pub mod upstream_slots;

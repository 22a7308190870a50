//! Everything that listens: the server's assembly and signals (`server`), the connection
//! guard in front of pingora (`conn`), the decision pipeline every door runs (`pipeline`)
//! and the doors: the ingress proxy (`proxy`), the authz check endpoints (`authz`, and Envoy's gRPC API in `authz_grpc`), the egress listeners and their token managers' tasks
//! (`egress`), the bound on requests at the upstream (`upstream_slots`), listener
//! certificates (`tls`), the admin port (`admin`) and its Prometheus metrics (`metrics`),
//! and the live state requests read with its reloads (`state`, `reload`).
//!
//! Layer: the doors' top, above `registry` and the doors that read it (`access`, `oauth`);
//! below only the commands (`cli`, `demo`).

pub mod admin;
pub mod authz;
pub mod authz_grpc;
pub mod conn;
pub mod egress;
pub mod metrics;
pub mod pipeline;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod state;
pub mod tls;
pub mod upstream_slots;

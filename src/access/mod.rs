//! Who may reach a path (SPEC §3): the request target normalised (`path`), the privileges'
//! patterns (`pattern`), the pure decision (`decision`), the client's address behind
//! `trusted_proxies` (`client_addr`), and `ords-guard explain`, the same steps told in
//! words (`explain`).

pub mod client_addr;
pub mod decision;
pub mod explain;
pub mod path;
pub mod pattern;

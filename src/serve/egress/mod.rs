//! The egress doors (SPEC §10): the listener a legacy caller's request goes through
//! (`proxy`), and the runner of the current generation's token managers (`runner`). What
//! they read — the token manager, its schedule, retry rules and answers — is `crate::egress`,
//! below the registry that holds one manager per entry.

pub mod proxy;
pub mod runner;

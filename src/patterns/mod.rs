//! Paths as a privilege sees them (SPEC §3): the request target normalised (`path`), and
//! the privileges' patterns with the matcher that finds the most specific one (`pattern`).
//!
//! Layer: below `registry` (which compiles every privilege's patterns into a matcher),
//! above `config`. Pure: nothing here reads a registry.

pub mod path;
pub mod pattern;

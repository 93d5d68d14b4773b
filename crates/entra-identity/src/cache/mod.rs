//! Where tokens are kept between requests: the bounded in-memory cache every credential has,
//! and the optional second-level caches behind it (a persistent one in MSAL's format, a
//! distributed one shared by a fleet).

pub(crate) mod distributed;
pub(crate) mod memory;
pub(crate) mod persistent;
pub(crate) mod second_level;
mod sync;

/// The interleaving explorer of the memory cache: built only with `--cfg shuttle`.
#[cfg(all(test, shuttle))]
mod explore;

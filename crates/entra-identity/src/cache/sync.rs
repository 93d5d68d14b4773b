//! The locks and atomics of the memory cache, imported from one place so that the interleaving
//! explorer (`explore.rs`) can put shuttle's in their place: built with `--cfg shuttle`, the
//! library's unit tests get shuttle's locks and atomics, which hand control to shuttle's
//! scheduler at every acquisition and access, so that it chooses the interleaving. Every other
//! build gets the standard library's, unchanged.
//!
//! `AtomicUsize` stays the standard library's in both: a process-wide static (the stripe
//! counter) uses it, and shuttle's atomics belong to one execution. The published counters that
//! also use it are written only under the `books` lock, which shuttle does control.

#[cfg(all(test, shuttle))]
pub(crate) use shuttle::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
#[cfg(all(test, shuttle))]
pub(crate) use shuttle::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(not(all(test, shuttle)))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};
pub(crate) use std::sync::{Arc, OnceLock, PoisonError};
#[cfg(not(all(test, shuttle)))]
pub(crate) use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

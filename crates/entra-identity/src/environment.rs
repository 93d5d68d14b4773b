//! The injected clock and environment, so tests control time and variables.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Tells the time in whole seconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        calibrated_now()
    }
}

/// Seconds between recalibrations of the fast clock against the real-time clock.
const RECALIBRATE_SECS: u64 = 60;

static CALIBRATED_UNIX: AtomicI64 = AtomicI64::new(0);
static CALIBRATED_MONOTONIC: AtomicU64 = AtomicU64::new(u64::MAX);

/// The real time, in seconds, read cheaply: the coarse monotonic clock (a few nanoseconds,
/// and no shared write) plus an offset measured against the real-time clock once a minute.
/// Token expiry is counted in seconds, so the coarse clock's milliseconds do not matter.
fn calibrated_now() -> i64 {
    let monotonic = coarsetime::Instant::now_without_cache_update().as_ticks() >> 32;
    let base = CALIBRATED_MONOTONIC.load(Ordering::Relaxed);
    if base != u64::MAX && monotonic.wrapping_sub(base) < RECALIBRATE_SECS {
        return CALIBRATED_UNIX.load(Ordering::Relaxed) + (monotonic - base) as i64;
    }
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    // Two threads recalibrating at once store two measurements of the same two clocks; any
    // mix of them is off by the clocks' drift over a minute at most.
    CALIBRATED_UNIX.store(unix, Ordering::Relaxed);
    CALIBRATED_MONOTONIC.store(monotonic, Ordering::Relaxed);
    unix
}

/// A clock that moves only when told to: for tests of expiry and refresh.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock reading `now`.
    pub fn new(now: i64) -> Self {
        Self {
            now: Arc::new(AtomicI64::new(now)),
        }
    }

    /// A clock reading the system time now, then standing still.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }

    /// Moves the clock forward (or back, with a negative number).
    pub fn advance(&self, seconds: i64) {
        self.now.fetch_add(seconds, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, now: i64) {
        self.now.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// Reads environment variables.
pub trait Environment: Send + Sync + fmt::Debug {
    /// The value of `name`, if set and valid Unicode.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A fixed set of variables: for tests, and for programs that read configuration elsewhere.
#[derive(Clone, Default)]
pub struct MapEnvironment {
    vars: HashMap<String, String>,
}

impl MapEnvironment {
    /// No variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a variable.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }
}

impl fmt::Debug for MapEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets (AZURE_CLIENT_SECRET): show only the names.
        f.debug_struct("MapEnvironment")
            .field("names", &self.vars.keys())
            .finish()
    }
}

impl Environment for MapEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_agrees_with_std() {
        let std_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64;
        assert!((SystemClock.now() - std_now).abs() <= 1);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(100);
        let shared = clock.clone();
        clock.advance(5);
        assert_eq!(shared.now(), 105);
        shared.set(7);
        assert_eq!(clock.now(), 7);
    }

    #[test]
    fn map_environment_debug_hides_values() {
        let env = MapEnvironment::new().with("AZURE_CLIENT_SECRET", "s3cr3t");
        assert_eq!(env.var("AZURE_CLIENT_SECRET").as_deref(), Some("s3cr3t"));
        assert!(!format!("{env:?}").contains("s3cr3t"));
    }
}

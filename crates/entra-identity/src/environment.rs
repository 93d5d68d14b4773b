//! The injected clock and environment, so tests control time and variables.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

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
const RECALIBRATE_NANOS: i64 = 60_000_000_000;

/// Real time minus coarse monotonic time, in nanoseconds, at the last calibration.
static OFFSET_NANOS: AtomicI64 = AtomicI64::new(0);
/// The coarse monotonic time of the last calibration; `i64::MIN` before the first.
static CALIBRATED_AT: AtomicI64 = AtomicI64::new(i64::MIN);

/// The real time, in seconds, read cheaply: the coarse monotonic clock (a few nanoseconds,
/// a few milliseconds of resolution, and no shared write) plus its offset from the real-time
/// clock, measured again once a minute.
fn calibrated_now() -> i64 {
    let monotonic = monotonic_nanos();
    let calibrated_at = CALIBRATED_AT.load(Ordering::Relaxed);
    if calibrated_at != i64::MIN && monotonic.wrapping_sub(calibrated_at) < RECALIBRATE_NANOS {
        return (monotonic + OFFSET_NANOS.load(Ordering::Relaxed)).div_euclid(1_000_000_000);
    }
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    // Two threads recalibrating at once store two measurements of the same two clocks; any
    // mix of them is off by the clocks' drift over a minute at most.
    OFFSET_NANOS.store(real - monotonic, Ordering::Relaxed);
    CALIBRATED_AT.store(monotonic, Ordering::Relaxed);
    real.div_euclid(1_000_000_000)
}

fn monotonic_nanos() -> i64 {
    let ticks = coarsetime::Instant::now_without_cache_update().as_ticks();
    // Ticks are seconds in fixed point with 32 fractional bits.
    let nanos = (u128::from(ticks) * 1_000_000_000) >> 32;
    i64::try_from(nanos).unwrap_or(i64::MAX)
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

//! Absolute time and the clocks that tell it.
//!
//! Persisted expiries are wall-clock Unix times, so [`Timestamp`] is Unix time in
//! microseconds. Everything that depends on time takes it from a [`Clock`] the
//! store was built with (or, for the sans-IO machines, as an explicit `now`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: microseconds since the Unix epoch (UTC).
///
/// Arithmetic saturates, so extreme values never panic.
///
/// ```
/// use std::time::Duration;
/// use tokenstore_core::Timestamp;
///
/// let t = Timestamp::from_unix_secs(1_700_000_000);
/// assert_eq!(t + Duration::from_millis(1500), Timestamp::from_unix_secs_f64(1_700_000_001.5));
/// assert_eq!(Timestamp::MAX + Duration::from_secs(1), Timestamp::MAX);
/// ```
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);
    /// The latest representable time.
    pub const MAX: Self = Self(i64::MAX);
    /// The earliest representable time.
    pub const MIN: Self = Self(i64::MIN);

    /// From microseconds since the epoch.
    pub const fn from_unix_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// From whole seconds since the epoch (saturating).
    pub const fn from_unix_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1_000_000))
    }

    /// From fractional seconds since the epoch, as mxcp stores them (`REAL`).
    ///
    /// The microsecond nearest to the exact value of `secs`, ties to even:
    /// what Python's `round(secs, 6)` gives, so a time mxcp wrote with
    /// `time.time()` reads as the microsecond Python prints for it. This is
    /// the exact inverse of [`Timestamp::as_unix_secs_f64`] within 2^33
    /// seconds of the epoch (about the year 2242); further out, doubles no
    /// longer tell microseconds apart. Saturates; NaN maps to the epoch. Use
    /// [`Timestamp::try_from_unix_secs_f64`] to reject non-finite values.
    pub fn from_unix_secs_f64(secs: f64) -> Self {
        if secs.is_nan() {
            return Self::EPOCH;
        }
        let bits = secs.to_bits();
        let biased = ((bits >> 52) & 0x7ff) as i32;
        let fraction = bits & ((1 << 52) - 1);
        // Finite doubles are `mantissa * 2^exponent` exactly (infinities
        // come out far beyond the range and saturate).
        let (mantissa, exponent) = match biased {
            0 => (fraction, -1074),
            _ => (fraction | 1 << 52, biased - 1075),
        };
        // Why this inverts `as_unix_secs_f64` within 2^33 s: there `t as f64`
        // is exact (|t| < 2^53 µs) and the division rounds correctly, so the
        // double of t is within half an ulp, at most 2^-21 s < 0.5 µs, of t.
        let micros = nearest_micros(mantissa, exponent);
        let micros = if secs < 0.0 { -micros } else { micros };
        Self(i64::try_from(micros).unwrap_or(if secs < 0.0 { i64::MIN } else { i64::MAX }))
    }

    /// From fractional seconds, or `None` when `secs` is NaN or infinite.
    pub fn try_from_unix_secs_f64(secs: f64) -> Option<Self> {
        secs.is_finite().then(|| Self::from_unix_secs_f64(secs))
    }

    /// Microseconds since the epoch.
    pub const fn as_unix_micros(self) -> i64 {
        self.0
    }

    /// Fractional seconds since the epoch, as mxcp stores them.
    pub fn as_unix_secs_f64(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }

    /// `self + d`, saturating at [`Timestamp::MAX`].
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(duration_micros(d)))
    }

    /// `self - d`, saturating at [`Timestamp::MIN`].
    pub fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(duration_micros(d)))
    }

    /// The time from `earlier` to `self`, or zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        let micros = self.0.saturating_sub(earlier.0).max(0);
        Duration::from_micros(micros as u64)
    }
}

/// The integer nearest to `mantissa * 2^exponent * 10^6`, ties to even,
/// computed exactly; anything beyond `i64` comes out as `2^64` or more.
///
/// With `mantissa < 2^53`, `m = mantissa * 15625 < 2^67` and the value is
/// `m * 2^(exponent + 6)`.
fn nearest_micros(mantissa: u64, exponent: i32) -> i128 {
    let m = u128::from(mantissa) * 15_625;
    let shift = exponent + 6;
    if shift >= 0 {
        // A shift past 60 makes any nonzero value at least 15625 * 2^61 > 2^64.
        return if m == 0 || shift <= 60 {
            (m << shift) as i128
        } else {
            1 << 64
        };
    }
    let shift = shift.unsigned_abs();
    if shift > 68 {
        // m < 2^67 <= half of 2^shift: below one half, so zero.
        return 0;
    }
    let (whole, rest, half) = (m >> shift, m & ((1 << shift) - 1), 1 << (shift - 1));
    let up = rest > half || (rest == half && whole % 2 == 1);
    (whole + u128::from(up)) as i128
}

fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        self.saturating_add(d)
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Self;
    fn sub(self, d: Duration) -> Self {
        self.saturating_sub(d)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({:.6})", self.as_unix_secs_f64())
    }
}

/// A source of the current time.
///
/// Stores take their time from the clock they were built with, so a test or a
/// deterministic simulation can set it. The sans-IO machines never read a clock:
/// their callers pass `now`.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// How far behind the true time a reading may lag (zero for exact clocks).
    /// The read cache adds it to its skew.
    fn resolution(&self) -> Duration {
        Duration::ZERO
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }

    fn resolution(&self) -> Duration {
        (**self).resolution()
    }
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp::EPOCH + d,
            Err(before) => Timestamp::EPOCH - before.duration(),
        }
    }
}

/// The operating system's coarse wall clock: a few nanoseconds a reading instead
/// of tens, at the price of a few milliseconds of resolution (reported by
/// [`Clock::resolution`]).
///
/// On Linux and Android it reads `CLOCK_REALTIME_COARSE`; elsewhere it is
/// [`SystemClock`]. The read cache uses it by default: every API request checks an
/// entry's deadline, and its skew (1 s by default) dwarfs the resolution.
#[derive(Debug, Clone, Copy)]
pub struct CoarseSystemClock {
    resolution: Duration,
}

impl CoarseSystemClock {
    /// The coarse clock, with its resolution asked of the OS once.
    pub fn new() -> Self {
        Self {
            resolution: coarse::resolution(),
        }
    }
}

impl Default for CoarseSystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for CoarseSystemClock {
    fn now(&self) -> Timestamp {
        coarse::now()
    }

    fn resolution(&self) -> Duration {
        self.resolution
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod coarse {
    use super::Timestamp;
    use rustix::time::{ClockId, clock_getres, clock_gettime};
    use std::time::Duration;

    pub(super) fn now() -> Timestamp {
        let t = clock_gettime(ClockId::RealtimeCoarse);
        Timestamp::from_unix_micros(t.tv_sec.saturating_mul(1_000_000) + t.tv_nsec / 1_000)
    }

    pub(super) fn resolution() -> Duration {
        let r = clock_getres(ClockId::RealtimeCoarse);
        Duration::new(
            r.tv_sec.max(0) as u64,
            r.tv_nsec.clamp(0, 999_999_999) as u32,
        )
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod coarse {
    use super::{Clock, SystemClock, Timestamp};
    use std::time::Duration;

    pub(super) fn now() -> Timestamp {
        SystemClock.now()
    }

    pub(super) fn resolution() -> Duration {
        Duration::ZERO
    }
}

/// A clock that moves only when told to; clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use tokenstore_core::{Clock, ManualClock, Timestamp};
///
/// let clock = ManualClock::new(Timestamp::from_unix_secs(100));
/// let view = clock.clone();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(view.now(), Timestamp::from_unix_secs(105));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.as_unix_micros())))
    }

    /// Sets the time (it may go backwards).
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.as_unix_micros(), Ordering::SeqCst);
    }

    /// Moves the time forward by `d` (saturating).
    pub fn advance(&self, d: Duration) {
        let step = duration_micros(d);
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(step))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f64_round_trip_keeps_microseconds() {
        let t = Timestamp::from_unix_secs_f64(1_764_000_000.25);
        assert_eq!(t.as_unix_micros(), 1_764_000_000_250_000);
        assert_eq!(t.as_unix_secs_f64(), 1_764_000_000.25);
        assert_eq!(Timestamp::try_from_unix_secs_f64(f64::NAN), None);
        assert_eq!(Timestamp::from_unix_secs_f64(f64::INFINITY), Timestamp::MAX);
    }

    #[test]
    fn f64_decoding_inverts_encoding_past_2106() {
        // Found by the sqlite_roundtrip fuzz target: one microsecond off with
        // a plain `round(secs * 1e6)`.
        let t = Timestamp::from_unix_micros(4_314_483_627_798_741);
        assert_eq!(Timestamp::from_unix_secs_f64(t.as_unix_secs_f64()), t);
        // Every microsecond of a stretch just past 2^32 s, and just below 2^33 s.
        for start in [4_294_967_296_000_000, 8_589_934_591_000_000] {
            for m in start..start + 200_000 {
                let t = Timestamp::from_unix_micros(m);
                assert_eq!(Timestamp::from_unix_secs_f64(t.as_unix_secs_f64()), t);
            }
        }
    }

    #[test]
    fn f64_decoding_inverts_encoding_until_2242() {
        // A spread of microsecond values from 1970 to 2^33 s.
        let mut m: i64 = 1;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        while m < 8_589_934_000_000_000 {
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let t = Timestamp::from_unix_micros(m + (x % 1_000_000) as i64);
                assert_eq!(Timestamp::from_unix_secs_f64(t.as_unix_secs_f64()), t);
            }
            m = m * 5 / 4 + 1;
        }
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Timestamp::MIN - Duration::from_secs(1), Timestamp::MIN);
        assert_eq!(Timestamp::MAX + Duration::MAX, Timestamp::MAX);
        let a = Timestamp::from_unix_secs(10);
        assert_eq!(
            a.saturating_duration_since(Timestamp::from_unix_secs(20)),
            Duration::ZERO
        );
        assert_eq!(
            Timestamp::from_unix_secs(20).saturating_duration_since(a),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn system_clock_is_after_2024() {
        assert!(SystemClock.now() > Timestamp::from_unix_secs(1_704_067_200));
    }

    #[test]
    fn coarse_clock_lags_by_at_most_its_resolution() {
        let coarse = CoarseSystemClock::new();
        assert!(coarse.resolution() < Duration::from_secs(1));
        let before = SystemClock.now();
        let reading = coarse.now();
        let after = SystemClock.now();
        assert!(reading <= after, "coarse clock ahead of the precise one");
        // Generous margin: the machine may be descheduled between the readings.
        assert!(reading + coarse.resolution() + Duration::from_millis(100) >= before);
    }
}

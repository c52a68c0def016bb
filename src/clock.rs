//! Time on one clock: presentation timestamps in nanoseconds, and the one place where frame
//! indices and audio sample indices are converted into each other.
//!
//! MODA runs at 30 frames/s on 16 kHz audio: 16 000 / 30 = 533⅓ samples per frame, so frame
//! `k` covers samples `[⌊k·1600/3⌋, ⌊(k+1)·1600/3⌋)` (533 or 534 of them) and is presented
//! `k/30` s after the stream's origin. Everything here is integer arithmetic, so a frame's
//! first sample and its timestamp never drift, however long the service runs.
//!
//! (The official offline code counts a window's frames in float64 as
//! `trunc(samples / (16000/30))`, which gives 29 frames for 16 000 samples, not 30; the offline
//! motion stage keeps that count, `motion::frame_count`, to reproduce it exactly.)

use std::fmt;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A presentation or capture timestamp: nanoseconds since an origin on one clock (the stream
/// start offline, `CLOCK_MONOTONIC` live).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pts(u64);

impl Pts {
    pub const ZERO: Pts = Pts(0);

    pub const fn from_nanos(ns: u64) -> Pts {
        Pts(ns)
    }

    pub const fn nanos(self) -> u64 {
        self.0
    }

    pub fn seconds(self) -> f64 {
        self.0 as f64 * 1e-9
    }

    /// `self + d`, saturating at the end of time.
    pub fn after(self, d: Duration) -> Pts {
        Pts(self
            .0
            .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    }

    /// `self − earlier`, or zero when `earlier` is later.
    pub fn since(self, earlier: Pts) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Pts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6} s", self.seconds())
    }
}

/// `ticks · 10⁹ / per_second`, rounded down, without overflow for any `u64` tick count that
/// fits the result.
fn ticks_to_nanos(ticks: u64, per_second: u64) -> u64 {
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(per_second);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Frame rate and audio rate of one stream, with every conversion between frames, samples and
/// time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameClock {
    fps: u32,
    sample_rate: u32,
}

impl FrameClock {
    /// 30 frames/s over 16 kHz audio: every network input and output.
    pub const MODA: FrameClock = FrameClock {
        fps: 30,
        sample_rate: 16_000,
    };

    /// A clock of `fps` frames/s over `sample_rate` audio; `None` when either is zero.
    pub fn new(fps: u32, sample_rate: u32) -> Option<FrameClock> {
        (fps > 0 && sample_rate > 0).then_some(FrameClock { fps, sample_rate })
    }

    pub fn fps(self) -> u32 {
        self.fps
    }

    pub fn sample_rate(self) -> u32 {
        self.sample_rate
    }

    /// First sample of frame `k`: `⌊k · rate / fps⌋`.
    pub fn first_sample(self, k: u64) -> u64 {
        let s = u128::from(k) * u128::from(self.sample_rate) / u128::from(self.fps);
        u64::try_from(s).unwrap_or(u64::MAX)
    }

    /// The frame whose samples include sample `s`.
    pub fn frame_of_sample(self, s: u64) -> u64 {
        // The largest k with ⌊k·R/F⌋ ≤ s, i.e. k·R < (s + 1)·F.
        let k = ((u128::from(s) + 1) * u128::from(self.fps) - 1) / u128::from(self.sample_rate);
        u64::try_from(k).unwrap_or(u64::MAX)
    }

    /// Frames whose samples all lie within the first `n` samples.
    pub fn complete_frames(self, n: u64) -> u64 {
        // Frame k is complete when ⌊(k+1)·R/F⌋ ≤ n.
        let k = ((u128::from(n) + 1) * u128::from(self.fps) - 1) / u128::from(self.sample_rate);
        u64::try_from(k).unwrap_or(u64::MAX)
    }

    /// Start of frame `k` after the origin.
    pub fn frame_offset(self, k: u64) -> Duration {
        Duration::from_nanos(ticks_to_nanos(k, u64::from(self.fps)))
    }

    /// Timestamp of frame `k` for a stream whose frame 0 is at `origin`.
    pub fn frame_pts(self, origin: Pts, k: u64) -> Pts {
        origin.after(self.frame_offset(k))
    }

    /// Duration of one frame (rounded down to the nanosecond; use [`FrameClock::frame_pts`]
    /// for positions, which does not accumulate the rounding).
    pub fn frame_duration(self) -> Duration {
        self.frame_offset(1)
    }

    /// Start of sample `s` after the origin.
    pub fn sample_offset(self, s: u64) -> Duration {
        Duration::from_nanos(ticks_to_nanos(s, u64::from(self.sample_rate)))
    }

    /// Timestamp of sample `s` for a stream whose sample 0 is at `origin`.
    pub fn sample_pts(self, origin: Pts, s: u64) -> Pts {
        origin.after(self.sample_offset(s))
    }

    /// The sample being played `d` after the origin (rounded down).
    pub fn sample_at(self, d: Duration) -> u64 {
        let s = d.as_nanos() * u128::from(self.sample_rate) / 1_000_000_000;
        u64::try_from(s).unwrap_or(u64::MAX)
    }

    /// The frame being shown `d` after the origin (rounded down).
    pub fn frame_at(self, d: Duration) -> u64 {
        let k = d.as_nanos() * u128::from(self.fps) / 1_000_000_000;
        u64::try_from(k).unwrap_or(u64::MAX)
    }
}

/// Where "now" comes from: the system's monotonic clock in the service, a clock a test moves
/// by hand, or the audio itself in a simulation.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Pts;
    /// Sleeps until `deadline` (returns at once when it has passed). May return earlier
    /// (a manual clock wakes every few milliseconds of real time so that sleepers can look at a
    /// stop flag): callers that must not act before the deadline check [`Clock::now`] again.
    fn sleep_until(&self, deadline: Pts);
}

/// `CLOCK_MONOTONIC`: the clock ALSA and V4L2 timestamps are on, never set back, not counting
/// suspend.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicClock;

impl MonotonicClock {
    /// `CLOCK_MONOTONIC` now.
    pub fn read() -> Pts {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        if rc != 0 {
            // CLOCK_MONOTONIC is always available on Linux; keep time from standing still.
            return Pts::ZERO;
        }
        Pts::from_nanos(
            u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000
                + u64::try_from(ts.tv_nsec).unwrap_or(0),
        )
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Pts {
        MonotonicClock::read()
    }

    fn sleep_until(&self, deadline: Pts) {
        loop {
            let now = MonotonicClock::read();
            if now >= deadline {
                return;
            }
            std::thread::sleep(deadline.since(now));
        }
    }
}

/// A clock that moves only when told: for tests of timing logic that run in microseconds
/// whatever they simulate. `sleep_until` waits for another thread to advance the clock past
/// the deadline, or returns after 10 ms of real time (see [`Clock::sleep_until`]).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: Mutex<Pts>,
    moved: Condvar,
}

impl ManualClock {
    pub fn new(start: Pts) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
            moved: Condvar::new(),
        }
    }

    /// Moves the clock to `t` (never backwards) and wakes the sleepers.
    pub fn set(&self, t: Pts) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = (*now).max(t);
        self.moved.notify_all();
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let t = self.now().after(d);
        self.set(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Pts {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sleep_until(&self, deadline: Pts) {
        let now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if *now < deadline {
            let _ = self
                .moved
                .wait_timeout(now, Duration::from_millis(10))
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cover_every_sample_once() {
        let c = FrameClock::MODA;
        assert_eq!(
            (0..4).map(|k| c.first_sample(k)).collect::<Vec<_>>(),
            [0, 533, 1066, 1600]
        );
        let mut next = 0;
        for k in 0..10_000u64 {
            let (a, b) = (c.first_sample(k), c.first_sample(k + 1));
            assert_eq!(
                a,
                next,
                "frame {k} starts where {} ended",
                k.wrapping_sub(1)
            );
            assert!(b - a == 533 || b - a == 534);
            assert_eq!(c.frame_of_sample(a), k);
            assert_eq!(c.frame_of_sample(b - 1), k);
            assert_eq!(c.complete_frames(b), k + 1);
            assert_eq!(c.complete_frames(b - 1), k);
            next = b;
        }
    }

    #[test]
    fn timestamps_do_not_drift_over_a_day() {
        let c = FrameClock::MODA;
        let day_frames = 24 * 3600 * 30;
        assert_eq!(c.frame_offset(day_frames), Duration::from_secs(24 * 3600));
        assert_eq!(c.first_sample(day_frames), 24 * 3600 * 16_000);
        assert_eq!(c.frame_offset(1).as_nanos(), 33_333_333);
        assert_eq!(c.frame_offset(2).as_nanos(), 66_666_666);
        assert_eq!(c.frame_offset(3).as_nanos(), 100_000_000);
        let origin = Pts::from_nanos(5_000);
        assert_eq!(c.frame_pts(origin, 3).nanos(), 100_005_000);
        assert_eq!(
            c.sample_pts(origin, 16_000).since(origin),
            Duration::from_secs(1)
        );
        assert_eq!(c.frame_at(Duration::from_millis(1000)), 30);
        assert_eq!(c.frame_at(Duration::from_nanos(33_333_332)), 0);
        assert_eq!(c.sample_at(Duration::from_millis(1)), 16);
    }

    #[test]
    fn monotonic_time_moves_forward_and_sleeps_until_a_deadline() {
        let c = MonotonicClock;
        let a = c.now();
        c.sleep_until(a.after(Duration::from_millis(2)));
        let b = c.now();
        assert!(b.since(a) >= Duration::from_millis(2), "{a} → {b}");
        c.sleep_until(a); // in the past: returns at once
    }

    #[test]
    fn a_manual_clock_wakes_sleepers_when_advanced() {
        let clock = std::sync::Arc::new(ManualClock::new(Pts::from_nanos(100)));
        let c = std::sync::Arc::clone(&clock);
        let sleeper = std::thread::spawn(move || {
            while c.now() < Pts::from_nanos(1_000) {
                c.sleep_until(Pts::from_nanos(1_000));
            }
            c.now()
        });
        clock.advance(Duration::from_nanos(400));
        clock.set(Pts::from_nanos(50)); // never backwards
        assert_eq!(clock.now(), Pts::from_nanos(500));
        clock.set(Pts::from_nanos(1_200));
        assert_eq!(sleeper.join().unwrap(), Pts::from_nanos(1_200));
    }

    #[test]
    fn other_rates_and_degenerate_clocks() {
        assert!(FrameClock::new(0, 16_000).is_none());
        assert!(FrameClock::new(30, 0).is_none());
        let c = FrameClock::new(25, 48_000).unwrap();
        assert_eq!(c.first_sample(1), 1920);
        assert_eq!(c.frame_of_sample(1919), 0);
        assert_eq!(c.frame_of_sample(1920), 1);
        assert_eq!(Pts::ZERO.since(Pts::from_nanos(10)), Duration::ZERO);
        assert_eq!(
            Pts::from_nanos(u64::MAX)
                .after(Duration::from_secs(1))
                .nanos(),
            u64::MAX
        );
    }
}

//! The frame clock and the fixed latency budget of the live service.
//!
//! At 30 frames/s over 16 kHz audio a frame is 533⅓ samples (33.3 ms). Frame k covers samples
//! `[⌊k·1600/3⌋, ⌊(k+1)·1600/3⌋)`, captured from `t0 + k/30 s` on (t0: capture time of sample
//! 0 on CLOCK_MONOTONIC). It is presented at exactly
//!
//! ```text
//! D(k) = t0 + k/30 s + B          (B = latency_ms)
//! ```
//!
//! computed from k in integer nanoseconds every time, never accumulated, so deadlines do not
//! drift however long the service runs (after 24 h, D(2 592 000) = t0 + 86 400 s + B exactly).
//!
//! Where the budget goes, for the first frame of a chunk (the tightest; later frames of the
//! chunk have 1/30 s more slack each): MODA runs on a window of H history + K chunk + L
//! lookahead frames once the audio of the window's last frame is complete, i.e. (K + L)/30 s
//! after frame k's audio began (K = L = 5: 333 ms); then the motion stage (one MODA and one
//! FaCo run per chunk), then the frame stage (condition image and renderer), then the output.
//!
//! ```text
//! B_min = (K + L)/fps + p99(motion per chunk) + p99(render per frame) + capture period + margin
//! ```
//!
//! The service measures the two compute terms when it starts (and with `--check`) and refuses a
//! budget below B_min, naming the smallest that holds. At D(k) the output shows frame k if it has
//! been rendered; otherwise it shows the previous picture again and counts frame k late. A frame
//! rendered after its deadline is dropped, never shown late: the clock does not catch up by
//! bunching frames. The render stage skips a frame it cannot finish before its deadline.

use std::time::Duration;

use crate::clock::{FrameClock, Pts};

/// Deadlines of one live stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    t0: Pts,
    budget: Duration,
    clock: FrameClock,
}

impl Schedule {
    pub fn new(t0: Pts, budget: Duration, clock: FrameClock) -> Schedule {
        Schedule { t0, budget, clock }
    }

    pub fn t0(&self) -> Pts {
        self.t0
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// When frame `k`'s audio begins: `t0 + k/fps`.
    pub fn frame_time(&self, k: u64) -> Pts {
        self.clock.frame_pts(self.t0, k)
    }

    /// When frame `k` is presented: `t0 + k/fps + budget`.
    pub fn deadline(&self, k: u64) -> Pts {
        self.frame_time(k).after(self.budget)
    }

    /// The first frame whose deadline is at or after `t`.
    pub fn first_frame_due_after(&self, t: Pts) -> u64 {
        let base = self.t0.after(self.budget);
        if t <= base {
            return 0;
        }
        let k = self.clock.frame_at(t.since(base));
        if self.deadline(k) >= t {
            k
        } else {
            k + 1
        }
    }
}

/// The terms of the smallest budget that holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetNeeds {
    /// (K + L)/fps: waiting for the window's audio.
    pub audio_wait: Duration,
    /// p99 of one streaming motion run (MODA + FaCo + smoothing).
    pub motion: Duration,
    /// p99 of one frame (condition image + renderer + conversion).
    pub render: Duration,
    /// How late captured audio reaches the pipeline (one capture period).
    pub capture: Duration,
    /// Output and scheduling margin.
    pub margin: Duration,
}

impl BudgetNeeds {
    /// B_min, rounded up to the millisecond.
    pub fn minimum(&self) -> Duration {
        let sum = self.audio_wait + self.motion + self.render + self.capture + self.margin;
        Duration::from_millis(u64::try_from(sum.as_micros().div_ceil(1000)).unwrap_or(u64::MAX))
    }

    /// One line for logs and `--check`.
    pub fn describe(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "{:.0} ms = audio wait {:.1} ms + motion p99 {:.1} ms + render p99 {:.1} ms + capture {:.1} ms + margin {:.1} ms",
            ms(self.minimum()),
            ms(self.audio_wait),
            ms(self.motion),
            ms(self.render),
            ms(self.capture),
            ms(self.margin)
        )
    }
}

/// A configured budget below the measured minimum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("latency_ms = {configured} cannot hold on this machine: the smallest budget that holds is {needed} ms ({detail}); set latency_ms to at least {needed} or make the chunk/lookahead smaller")]
pub struct BudgetError {
    pub configured: u64,
    pub needed: u64,
    pub detail: String,
}

/// Checks `budget` against `needs`.
///
/// # Errors
/// [`BudgetError`] giving the smallest budget that holds.
pub fn check_budget(budget: Duration, needs: &BudgetNeeds) -> Result<(), BudgetError> {
    let min = needs.minimum();
    if budget >= min {
        return Ok(());
    }
    Err(BudgetError {
        configured: budget.as_millis() as u64,
        needed: min.as_millis() as u64,
        detail: needs.describe(),
    })
}

/// Something with a frame index (a rendered frame).
pub trait Indexed {
    fn index(&self) -> u64;
}

impl Indexed for u64 {
    fn index(&self) -> u64 {
        *self
    }
}

/// The output's decision at each deadline: show the frame due, or show the previous picture
/// again. Frames arrive in index order; one that arrives after its deadline is dropped.
#[derive(Debug)]
pub struct Presenter<T> {
    /// A frame taken from the queue that is due later.
    pending: Option<T>,
    /// Deadlines at which the frame due was not ready.
    pub late: u64,
    /// Frames that arrived after their deadline (dropped).
    pub stale: u64,
}

impl<T: Indexed> Default for Presenter<T> {
    fn default() -> Self {
        Presenter {
            pending: None,
            late: 0,
            stale: 0,
        }
    }
}

impl<T: Indexed> Presenter<T> {
    /// At frame `k`'s deadline: the frame to show, taken from `next` (the frames rendered so
    /// far, in index order, without blocking), or `None` to show the previous picture again (k
    /// is counted late). Frames older than k go to `recycle`.
    pub fn take(
        &mut self,
        k: u64,
        mut next: impl FnMut() -> Option<T>,
        mut recycle: impl FnMut(T),
    ) -> Option<T> {
        loop {
            let Some(f) = self.pending.take().or_else(&mut next) else {
                self.late += 1;
                return None;
            };
            match f.index() {
                i if i < k => {
                    self.stale += 1;
                    recycle(f);
                }
                i if i == k => return Some(f),
                _ => {
                    self.pending = Some(f);
                    self.late += 1;
                    return None;
                }
            }
        }
    }

    /// A frame held back because it is due later, given up (at shutdown).
    pub fn drain(&mut self) -> Option<T> {
        self.pending.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn schedule() -> Schedule {
        Schedule::new(
            Pts::from_nanos(7_000_000_123),
            Duration::from_millis(400),
            FrameClock::MODA,
        )
    }

    #[test]
    fn deadlines_are_exact_and_do_not_drift_over_a_day() {
        let s = schedule();
        assert_eq!(s.deadline(0).nanos(), 7_400_000_123);
        assert_eq!(s.deadline(1).nanos(), 7_433_333_456);
        assert_eq!(s.deadline(3).nanos(), 7_500_000_123);
        let day = 24 * 3600 * 30;
        assert_eq!(
            s.deadline(day).since(s.deadline(0)),
            Duration::from_secs(86_400)
        );
        for k in [0, 1, 2, 3, 29, 30, 1_000_001, day] {
            assert_eq!(
                s.deadline(k).since(s.frame_time(k)),
                Duration::from_millis(400)
            );
            assert_eq!(s.first_frame_due_after(s.deadline(k)), k);
            assert_eq!(
                s.first_frame_due_after(s.deadline(k).after(Duration::from_nanos(1))),
                k + 1
            );
        }
        assert_eq!(s.first_frame_due_after(Pts::ZERO), 0);
    }

    #[test]
    fn the_budget_check_names_the_smallest_budget() {
        let needs = BudgetNeeds {
            audio_wait: Duration::from_micros(333_333),
            motion: Duration::from_millis(40),
            render: Duration::from_millis(25),
            capture: Duration::from_millis(16),
            margin: Duration::from_millis(5),
        };
        assert_eq!(needs.minimum(), Duration::from_millis(420));
        assert!(check_budget(Duration::from_millis(420), &needs).is_ok());
        let err = check_budget(Duration::from_millis(300), &needs).unwrap_err();
        assert_eq!(err.needed, 420);
        assert!(
            err.to_string().starts_with(
                "latency_ms = 300 cannot hold on this machine: the smallest budget that holds is 420 ms (420 ms = audio wait 333.3 ms"
            ),
            "{err}"
        );
    }

    /// A day of frames (2 592 000) through the presenter with frames whose render finishes at
    /// simulated times: one in 997 takes longer than its deadline, one in 1499 is skipped by the
    /// renderer. Every presentation happens at D(k) exactly, late frames are counted exactly,
    /// and nothing is ever shown out of order or twice.
    #[test]
    fn a_simulated_day_repeats_and_counts_late_frames_without_drift() {
        let s = schedule();
        let frames = 24 * 3600 * 30u64;
        let ready_at = |k: u64| -> Option<Pts> {
            if k % 1499 == 7 {
                None // skipped by the renderer
            } else if k % 997 == 3 {
                Some(s.deadline(k).after(Duration::from_millis(5))) // 5 ms too late
            } else {
                Some(s.frame_time(k).after(Duration::from_millis(390)))
            }
        };
        let mut queue: VecDeque<(u64, Pts)> = VecDeque::new();
        let mut produced = 0u64;
        let mut p: Presenter<u64> = Presenter::default();
        let (mut shown, mut expected_late, mut last_shown) = (0u64, 0u64, None::<u64>);
        let mut recycled = 0u64;
        for k in 0..frames {
            let now = s.deadline(k);
            // Everything rendered by now is in the queue.
            while produced < frames {
                match ready_at(produced) {
                    None => produced += 1,
                    Some(t) if t <= now => {
                        queue.push_back((produced, t));
                        produced += 1;
                    }
                    Some(_) => break,
                }
            }
            if let Some(f) = p.take(k, || queue.pop_front().map(|f| f.0), |_| recycled += 1) {
                assert_eq!(f, k);
                assert!(last_shown.is_none_or(|l| l < f));
                last_shown = Some(f);
                shown += 1;
            }
            if k % 1499 == 7 || k % 997 == 3 {
                expected_late += 1;
            }
        }
        assert_eq!(p.late, expected_late);
        assert_eq!(shown + p.late, frames);
        // Late renders were dropped when the next deadline came, never shown.
        assert_eq!(p.stale, recycled);
        assert!(p.stale > 2500, "{}", p.stale);
        assert_eq!(
            s.deadline(frames).since(s.deadline(0)),
            Duration::from_secs(86_400)
        );
    }
}

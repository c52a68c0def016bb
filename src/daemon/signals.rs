//! SIGTERM and SIGINT ask the service to stop, SIGHUP to reload its config. The handlers do no
//! work: signal-hook's handlers set atomic flags (async-signal-safe stores) and wake a thread
//! that wakes the main loop; the main loop reads the flags ([`SignalListener::stop_requested`],
//! [`SignalListener::take_reload`]) or waits for the next request
//! ([`SignalListener::next`]). Worker threads poll [`SignalListener::stop_flag`].
//!
//! Several SIGHUPs before the main loop looks are one reload. With [`SecondStop::Exit`] a
//! second stop signal while the first is still being handled ends the process at once (exit
//! status 128 + the signal), for a shutdown that hangs.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use signal_hook::SigId;

/// What a signal asks of the main loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM or SIGINT: shut down cleanly.
    Stop,
    /// SIGHUP: re-read the config.
    Reload,
}

/// What a second SIGTERM/SIGINT does once a stop was requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondStop {
    /// Nothing more: the stop already asked for goes on.
    Ignore,
    /// End the process at once with exit status 128 + the signal (from the handler, with
    /// `_exit`; no destructors run).
    Exit,
}

/// The installed handlers; dropping it removes them (signal-hook keeps its own handler
/// installed, so a later SIGTERM no longer ends the process by default: install a new
/// listener, or exit).
#[derive(Debug)]
pub struct SignalListener {
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    stops: Arc<AtomicU32>,
    wake: Receiver<()>,
    ids: Vec<SigId>,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl SignalListener {
    /// Installs the handlers of SIGTERM, SIGINT and SIGHUP and starts the thread that wakes
    /// [`SignalListener::next`].
    ///
    /// # Errors
    /// The OS error of installing a handler or starting the thread.
    pub fn install(second: SecondStop) -> io::Result<SignalListener> {
        let stop = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        let mut ids = Vec::new();
        let result = (|| {
            for sig in [SIGTERM, SIGINT] {
                if second == SecondStop::Exit {
                    // Registered before the flag, so it sees the flag as the previous signal
                    // left it (signal-hook runs a signal's actions in registration order).
                    let status = 128 + sig;
                    ids.push(signal_hook::flag::register_conditional_shutdown(
                        sig,
                        status,
                        Arc::clone(&stop),
                    )?);
                }
                ids.push(signal_hook::flag::register(sig, Arc::clone(&stop))?);
            }
            ids.push(signal_hook::flag::register(SIGHUP, Arc::clone(&reload))?);
            Signals::new([SIGTERM, SIGINT, SIGHUP])
        })();
        let mut signals = match result {
            Ok(s) => s,
            Err(e) => {
                for id in ids {
                    signal_hook::low_level::unregister(id);
                }
                return Err(e);
            }
        };
        let handle = signals.handle();
        let stops = Arc::new(AtomicU32::new(0));
        let (tx, wake) = mpsc::channel();
        let counter = Arc::clone(&stops);
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if sig != SIGHUP {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    if tx.send(()).is_err() {
                        break;
                    }
                }
            });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                handle.close();
                for id in ids {
                    signal_hook::low_level::unregister(id);
                }
                return Err(e);
            }
        };
        Ok(SignalListener {
            stop,
            reload,
            stops,
            wake,
            ids,
            handle,
            thread: Some(thread),
        })
    }

    /// The stop flag, for threads that poll it.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Whether a stop was requested (it stays requested).
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Whether a reload was requested since the last call (then clears it).
    pub fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::SeqCst)
    }

    /// How many stop signals the wake-up thread has seen.
    pub fn stop_signals(&self) -> u32 {
        self.stops.load(Ordering::SeqCst)
    }

    /// The next request, waiting at most `timeout`: [`Request::Stop`] whenever a stop was
    /// requested (every call, from then on), else [`Request::Reload`] once per pending reload,
    /// else `None` when the time is up.
    pub fn next(&self, timeout: Duration) -> Option<Request> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stop_requested() {
                return Some(Request::Stop);
            }
            if self.take_reload() {
                return Some(Request::Reload);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.wake.recv_timeout(left) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                // The wake-up thread ended: poll the flags at a short interval instead.
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(left.min(Duration::from_millis(50)))
                }
            }
        }
    }
}

impl Drop for SignalListener {
    fn drop(&mut self) {
        self.handle.close();
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, since the signals go to the whole process: reload, coalescing, stop.
    #[test]
    fn signals_become_requests_for_the_main_loop() {
        let l = SignalListener::install(SecondStop::Ignore).unwrap();
        assert_eq!(l.next(Duration::from_millis(20)), None);
        assert!(!l.take_reload());

        signal_hook::low_level::raise(SIGHUP).unwrap();
        signal_hook::low_level::raise(SIGHUP).unwrap();
        assert_eq!(l.next(Duration::from_secs(5)), Some(Request::Reload));
        assert_eq!(
            l.next(Duration::from_millis(20)),
            None,
            "two SIGHUPs before the loop looked are one reload"
        );

        // A signal from another thread wakes a waiting main loop.
        let waker = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            signal_hook::low_level::raise(SIGHUP).unwrap();
        });
        let start = Instant::now();
        assert_eq!(l.next(Duration::from_secs(10)), Some(Request::Reload));
        assert!(start.elapsed() < Duration::from_secs(5));
        waker.join().unwrap();

        let flag = l.stop_flag();
        assert!(!flag.load(Ordering::SeqCst));
        signal_hook::low_level::raise(SIGTERM).unwrap();
        assert!(l.stop_requested(), "set by the handler itself");
        assert!(flag.load(Ordering::SeqCst));
        signal_hook::low_level::raise(SIGHUP).unwrap();
        assert_eq!(l.next(Duration::from_secs(5)), Some(Request::Stop));
        assert_eq!(l.next(Duration::ZERO), Some(Request::Stop), "stop stays");
        assert!(
            l.take_reload(),
            "the reload is still pending behind the stop"
        );
        signal_hook::low_level::raise(SIGINT).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while l.stop_signals() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(l.stop_signals(), 2);
        drop(l);
    }
}

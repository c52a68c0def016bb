//! Fake CUDA streams and events for the fake shim (feature `tensorrt-fake`): a stream is a
//! worker thread that runs enqueued work in order, an event marks a point in that order. So a
//! session's `enqueue` really returns before its run has finished, runs on one stream really
//! complete in order, and two streams really run at the same time.
//!
//! Errors behave like CUDA's: a failed job is remembered by the stream, and every event
//! recorded after it (and `synchronize`) reports it.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::backend::guard;

/// Work run on a stream's thread; an `Err` is the stream's failure.
pub(crate) type Job = Box<dyn FnOnce() -> Result<(), String> + Send>;

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Jobs pushed so far and jobs finished so far: job `n` (1-based) is done when
    /// `completed >= n`.
    submitted: u64,
    completed: u64,
    /// The first failure and the job number it came from.
    error: Option<(u64, String)>,
    closed: bool,
}

/// The queue a stream's worker drains; the fake shim reaches it through [`FakeStream::raw`].
#[derive(Default)]
pub(crate) struct Queue {
    state: Mutex<State>,
    changed: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a job panicked outside `catch`; the counters are intact.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `job`; returns its number.
    pub(crate) fn push(&self, job: Job) -> u64 {
        let mut state = self.lock();
        state.jobs.push_back(job);
        state.submitted += 1;
        self.changed.notify_all();
        state.submitted
    }

    /// Waits until job `target` is done; its result, or the stream's earlier failure.
    fn wait_for(&self, target: u64) -> Result<(), String> {
        let mut state = self.lock();
        while state.completed < target {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        match &state.error {
            Some((job, message)) if *job <= target => Err(message.clone()),
            _ => Ok(()),
        }
    }

    fn done(&self, target: u64) -> bool {
        self.lock().completed >= target
    }

    fn work(&self) {
        loop {
            let job = {
                let mut state = self.lock();
                loop {
                    if let Some(job) = state.jobs.pop_front() {
                        break job;
                    }
                    if state.closed {
                        return;
                    }
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                }
            };
            let result = guard::catch(job).unwrap_or_else(|panic| Err(format!("panic: {panic}")));
            let mut state = self.lock();
            state.completed += 1;
            if let Err(message) = result {
                if state.error.is_none() {
                    state.error = Some((state.completed, message));
                }
            }
            self.changed.notify_all();
        }
    }
}

/// Ends the worker once the last clone of a stream is gone (after the queued work).
struct Closer(Arc<Queue>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.changed.notify_all();
    }
}

/// A fake CUDA stream: clones are the same stream (like copies of a `cudaStream_t`).
#[derive(Clone)]
pub struct FakeStream {
    queue: Arc<Queue>,
    _closer: Arc<Closer>,
}

impl FakeStream {
    /// A stream with its own worker thread.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn new() -> std::io::Result<FakeStream> {
        let queue = Arc::new(Queue::default());
        let worker = Arc::clone(&queue);
        std::thread::Builder::new()
            .name("fake-stream".into())
            .spawn(move || {
                guard::guard_whole_thread();
                worker.work()
            })?;
        Ok(FakeStream {
            _closer: Arc::new(Closer(Arc::clone(&queue))),
            queue,
        })
    }

    /// The handle passed where TensorRT takes a `cudaStream_t`; valid while a clone lives.
    pub fn raw(&self) -> *mut c_void {
        Arc::as_ptr(&self.queue).cast_mut().cast()
    }

    /// Runs `f` on the stream after everything enqueued before (`cudaLaunchHostFunc`).
    pub fn launch_host(&self, f: impl FnOnce() + Send + 'static) {
        self.queue.push(Box::new(move || {
            f();
            Ok(())
        }));
    }

    /// Enqueues a device failure (tests): like a kernel fault, it reaches every event recorded
    /// after it and every later `synchronize`.
    #[cfg(test)]
    pub(crate) fn fail(&self, message: &str) {
        let message = message.to_string();
        self.queue.push(Box::new(move || Err(message)));
    }

    /// An event that completes when everything enqueued so far has (`cudaEventRecord`).
    pub fn record(&self) -> FakeEvent {
        let target = self.queue.lock().submitted;
        FakeEvent {
            queue: Arc::clone(&self.queue),
            target,
        }
    }

    /// Waits for everything enqueued so far (`cudaStreamSynchronize`).
    ///
    /// # Errors
    /// The first failure of the stream's work.
    pub fn synchronize(&self) -> Result<(), String> {
        self.record().synchronize()
    }

    /// The queue behind a handle from [`FakeStream::raw`].
    ///
    /// # Safety
    /// `raw` must come from [`FakeStream::raw`] of a stream that is still alive for `'a`.
    pub(crate) unsafe fn queue<'a>(raw: *mut c_void) -> &'a Queue {
        // SAFETY: the caller vouches that `raw` is `Arc::as_ptr` of a live queue.
        unsafe { &*raw.cast_const().cast::<Queue>() }
    }
}

/// A point in a fake stream's order (`cudaEvent_t` after `cudaEventRecord`).
#[derive(Clone)]
pub struct FakeEvent {
    queue: Arc<Queue>,
    target: u64,
}

impl FakeEvent {
    /// Whether the work before the event has finished; never blocks (`cudaEventQuery`).
    pub fn query(&self) -> bool {
        self.queue.done(self.target)
    }

    /// Waits for the work before the event (`cudaEventSynchronize`).
    ///
    /// # Errors
    /// The first failure among that work.
    pub fn synchronize(&self) -> Result<(), String> {
        self.queue.wait_for(self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn work_runs_in_order_and_events_mark_points() {
        let stream = FakeStream::new().unwrap();
        let (release, gate) = mpsc::channel::<()>();
        let log = Arc::new(Mutex::new(Vec::new()));
        stream.launch_host(move || gate.recv().unwrap());
        for i in 0..3 {
            let log = Arc::clone(&log);
            stream.launch_host(move || log.lock().unwrap().push(i));
        }
        let event = stream.record();
        assert!(!event.query(), "the gate holds the stream");
        release.send(()).unwrap();
        event.synchronize().unwrap();
        assert!(event.query());
        assert_eq!(*log.lock().unwrap(), [0, 1, 2]);
    }

    #[test]
    fn a_failure_reaches_later_events_only() {
        let stream = FakeStream::new().unwrap();
        let before = stream.record();
        stream
            .queue
            .push(Box::new(|| Err("device fell over".to_string())));
        let after = stream.record();
        before.synchronize().unwrap();
        assert_eq!(after.synchronize().unwrap_err(), "device fell over");
        stream.queue.push(Box::new(|| panic!("boom")));
        assert_eq!(stream.synchronize().unwrap_err(), "device fell over");
    }
}

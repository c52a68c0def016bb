//! After start-up, live audio takes nothing from the heap per period: the capture thread (device,
//! clock-paced and pipe paths), the consumer's `pop`, ALSA reads and delayed playback.
//!
//! This binary counts every allocation in the process; its one test runs the phases one after
//! the other, and while it measures, the only threads at work are the one being measured and
//! the test thread, which only polls atomics, moves a manual clock and pops.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moda_edge::audio::capture::{CaptureInput, DeviceOpener};
use moda_edge::audio::{
    AlsaCapture, AlsaSettings, AudioSource, Capture, CaptureSettings, Captured, PcmEncoding,
    PipeFormat, PipeSource, Playback, PlaybackSettings, PlaybackUri, SourceError, SourceUri,
    Timing,
};
use moda_edge::clock::{Clock, ManualClock, MonotonicClock, Pts};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A 48 kHz device (resampled to 16 kHz) with its own timeline on a manual clock that it moves;
/// delivers `left` chunks, then waits.
struct Device {
    clock: Arc<ManualClock>,
    left: Arc<AtomicI64>,
    waiting: Arc<AtomicBool>,
    halt: Arc<AtomicBool>,
    time: u64,
    phase: f32,
}

impl AudioSource for Device {
    fn read(&mut self, out: &mut [f32]) -> Result<Captured, SourceError> {
        while self.left.load(Ordering::SeqCst) <= 0 {
            if self.halt.load(Ordering::SeqCst) {
                return Err(SourceError::Unavailable {
                    name: "sim://".into(),
                    source: "halted".into(),
                });
            }
            self.waiting.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_micros(200));
        }
        self.waiting.store(false, Ordering::SeqCst);
        self.left.fetch_sub(1, Ordering::SeqCst);
        for v in out.iter_mut() {
            *v = self.phase.sin() * 0.5;
            self.phase = (self.phase + 0.13) % std::f32::consts::TAU;
        }
        let first = self.time;
        self.time += out.len() as u64 * 1_000_000_000 / 48_000;
        self.clock.set(Pts::from_nanos(self.time));
        let age = self.clock.now().nanos() - first;
        Ok(Captured {
            samples: out.len(),
            timestamp: Pts::from_nanos(MonotonicClock::read().nanos() - age),
            lost: 0,
        })
    }

    fn sample_rate(&self) -> u32 {
        48_000
    }
}

struct Opener(Option<Device>);

impl DeviceOpener for Opener {
    fn name(&self) -> &str {
        "sim://"
    }

    fn open(&mut self) -> Result<Box<dyn AudioSource>, SourceError> {
        match self.0.take() {
            Some(d) => Ok(Box::new(d)),
            None => Err(SourceError::Unavailable {
                name: "sim://".into(),
                source: "gone".into(),
            }),
        }
    }
}

fn device_capture() {
    let clock = Arc::new(ManualClock::new(Pts::from_nanos(1_000_000_000)));
    let left = Arc::new(AtomicI64::new(0));
    let waiting = Arc::new(AtomicBool::new(false));
    let halt = Arc::new(AtomicBool::new(false));
    let device = Device {
        clock: Arc::clone(&clock),
        left: Arc::clone(&left),
        waiting: Arc::clone(&waiting),
        halt: Arc::clone(&halt),
        time: 1_000_000_000,
        phase: 0.0,
    };
    let settings = CaptureSettings::new(SourceUri::parse("alsa://sim").unwrap());
    let input = CaptureInput::Device(Box::new(Opener(Some(device))));
    let mut cap = Capture::start_input(input, &settings, clock).unwrap();
    let mut buf = vec![0.0f32; 4096];
    let mut run = |chunks: i64, cap: &mut Capture| {
        waiting.store(false, Ordering::SeqCst);
        left.store(chunks, Ordering::SeqCst);
        let mut popped = 0u64;
        wait_for("the chunks", || {
            popped += cap.pop(&mut buf).samples as u64;
            left.load(Ordering::SeqCst) == 0 && waiting.load(Ordering::SeqCst)
        });
        while cap.pop(&mut buf).samples > 0 {}
    };
    run(200, &mut cap); // warm-up
    let before = allocations();
    run(2000, &mut cap); // 10.7 s of audio
    let after = allocations();
    let stats = cap.stats();
    assert!(stats.produced > 170_000, "{stats:?}");
    assert_eq!(
        after - before,
        0,
        "allocations on the device path: {stats:?}"
    );
    halt.store(true, Ordering::SeqCst);
    cap.stop();
}

fn paced_capture() {
    let clock = Arc::new(ManualClock::new(Pts::from_nanos(3_000_000_000)));
    let mut cap = Capture::start(&CaptureSettings::new(SourceUri::Silence), clock.clone()).unwrap();
    let mut buf = vec![0.0f32; 4096];
    let mut step = |cap: &mut Capture, n: u64| {
        for _ in 0..n {
            clock.advance(Duration::from_millis(16));
            let target = clock.now().since(cap.t0().unwrap()).as_nanos() as u64 * 16 / 1_000_000;
            wait_for("silence", || cap.stats().produced >= target);
            while cap.pop(&mut buf).samples > 0 {}
        }
    };
    step(&mut cap, 20);
    let before = allocations();
    step(&mut cap, 300);
    assert_eq!(allocations() - before, 0, "allocations on the paced path");
    cap.stop();
}

fn pipe_capture() {
    use std::io::Write;
    let (reader, mut writer) = std::io::pipe().unwrap();
    let format = PipeFormat {
        rate: 8000,
        encoding: PcmEncoding::S16Le,
        channels: 2,
    };
    let clock = Arc::new(ManualClock::new(Pts::from_nanos(5_000_000_000)));
    let settings = CaptureSettings::new(SourceUri::Pipe(format));
    let input = CaptureInput::Pipe {
        name: "pipe://".into(),
        source: PipeSource::from_fd(reader.into(), format, 256),
    };
    let mut cap = Capture::start_input(input, &settings, clock.clone()).unwrap();
    let bytes = vec![0x11u8; 128 * 4]; // 16 ms of 8 kHz stereo s16le
    let mut buf = vec![0.0f32; 4096];
    let mut step = |cap: &mut Capture, n: u64| {
        for _ in 0..n {
            writer.write_all(&bytes).unwrap();
            clock.advance(Duration::from_millis(16));
            let target = clock.now().since(cap.t0().unwrap()).as_nanos() as u64 * 16 / 1_000_000;
            // The samples of this write may still be on their way: at least the earlier ones.
            wait_for("pipe samples", || cap.stats().produced + 512 >= target);
            while cap.pop(&mut buf).samples > 0 {}
        }
    };
    step(&mut cap, 20);
    let before = allocations();
    step(&mut cap, 300);
    assert_eq!(allocations() - before, 0, "allocations on the pipe path");
    cap.stop();
}

fn alsa_null_capture_and_playback() {
    // `null` is in every alsa-lib configuration: capture gives silence, playback takes anything.
    let mut cap = AlsaCapture::open("null", &AlsaSettings::default()).unwrap();
    let mut buf = vec![0.0f32; 256];
    for _ in 0..10 {
        cap.read(&mut buf).unwrap();
    }
    let before = allocations();
    for _ in 0..500 {
        assert_eq!(cap.read(&mut buf).unwrap().samples, 256);
    }
    assert_eq!(
        allocations() - before,
        0,
        "allocations in AlsaCapture::read"
    );
    drop(cap);

    let clock = Arc::new(ManualClock::new(Pts::from_nanos(4_000_000_000)));
    let settings = PlaybackSettings {
        alsa: AlsaSettings {
            rate: 48_000,
            channels: 2,
            ..AlsaSettings::default()
        },
    };
    let uri = PlaybackUri::parse("alsa://null").unwrap();
    let mut play = Playback::open(&uri, &settings, clock.clone()).unwrap();
    let timing = Timing {
        t0: clock.now(),
        budget: Duration::from_millis(100),
    };
    let chunk = vec![0.25f32; 533];
    let mut n = 0u64;
    let write = |play: &mut Playback, n: &mut u64| {
        let r = play.write(&chunk, *n, timing).unwrap();
        *n += 533;
        clock.advance(Duration::from_nanos(r.to_device() * 62_500));
    };
    for _ in 0..20 {
        write(&mut play, &mut n);
    }
    let before = allocations();
    for _ in 0..500 {
        write(&mut play, &mut n);
    }
    assert_eq!(allocations() - before, 0, "allocations in Playback::write");
    assert!(play.stats().totals.played > 400 * 533, "{:?}", play.stats());
}

#[test]
fn live_audio_does_not_allocate_per_period() {
    device_capture();
    paced_capture();
    pipe_capture();
    alsa_null_capture_and_playback();
}

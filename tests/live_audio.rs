//! Live audio without sound hardware: the capture thread's stream contract (continuous index,
//! real-time pacing, silence while a device is away, drift correction, a ring that never blocks
//! the producer) with files, pipes and simulated devices on a manual clock.
//!
//! ALSA itself (the `file` plugin) is exercised in `tests/live_audio_alsa.rs`.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moda_edge::audio::capture::{CaptureInput, DeviceOpener};
use moda_edge::audio::{
    AudioSource, Capture, CaptureSettings, Captured, ClockMode, PcmEncoding, PipeFormat,
    PipeSource, SourceError, SourceUri,
};
use moda_edge::clock::{Clock, ManualClock, MonotonicClock, Pts};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `cond` every millisecond; panics with `what` after [`TIMEOUT`].
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Everything the capture has produced so far, as (first index, samples) runs; waits until the
/// producer reached `upto` samples first.
fn drain(cap: &mut Capture, upto: u64) -> Vec<(u64, Vec<f32>)> {
    wait_for("the producer", || cap.stats().produced >= upto);
    let mut runs: Vec<(u64, Vec<f32>)> = Vec::new();
    let mut buf = vec![0.0f32; 4096];
    loop {
        let p = cap.pop(&mut buf);
        if p.samples == 0 {
            return runs;
        }
        match runs.last_mut() {
            Some((first, v)) if *first + v.len() as u64 == p.first_index => {
                v.extend_from_slice(&buf[..p.samples])
            }
            _ => runs.push((p.first_index, buf[..p.samples].to_vec())),
        }
    }
}

fn manual(start_s: u64) -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Pts::from_nanos(start_s * 1_000_000_000)))
}

fn write_wav(path: &Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn a_file_is_paced_by_the_clock_and_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ramp.wav");
    let ramp: Vec<i16> = (0..4000).map(|i| (i * 8) as i16).collect();
    write_wav(&path, &ramp);
    let clock = manual(100);
    let settings =
        CaptureSettings::new(SourceUri::parse(&format!("file://{}", path.display())).unwrap());
    let mut cap = Capture::start(&settings, clock.clone()).unwrap();
    assert_eq!(cap.t0(), Some(Pts::from_nanos(100_000_000_000)));
    assert_eq!(
        &*cap.stats().device_name,
        format!("file://{}", path.display())
    );
    // Nothing before time passes, then exactly the samples whose time has passed.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(cap.stats().produced, 0);
    clock.advance(Duration::from_millis(100));
    let runs = drain(&mut cap, 1600);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(cap.stats().produced, 1600, "no sample ahead of the clock");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].0, 0);
    let want: Vec<f32> = ramp[..1600]
        .iter()
        .map(|&v| f32::from(v) / 32_768.0)
        .collect();
    assert_eq!(runs[0].1, want);
    // The rest, then the end of the stream.
    clock.advance(Duration::from_secs(1));
    let runs = drain(&mut cap, 4000);
    assert_eq!(runs[0].0, 1600);
    assert_eq!(runs[0].1.len(), 2400);
    let mut buf = [0.0f32; 16];
    wait_for("the end of the stream", || cap.pop(&mut buf).end_of_stream);
    cap.stop();
}

#[test]
fn a_looped_file_repeats_with_a_continuous_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loop.wav");
    let x: Vec<i16> = (0..1000).map(|i| i as i16).collect();
    write_wav(&path, &x);
    let clock = manual(5);
    let uri = SourceUri::parse(&format!("file://{}?loop=true", path.display())).unwrap();
    let mut cap = Capture::start(&CaptureSettings::new(uri), clock.clone()).unwrap();
    clock.advance(Duration::from_millis(250)); // 4000 samples: the file four times
    let runs = drain(&mut cap, 4000);
    assert_eq!(runs.len(), 1);
    let got = &runs[0].1;
    assert_eq!(got.len(), 4000);
    for (i, v) in got.iter().enumerate() {
        assert_eq!(*v, (i % 1000) as f32 / 32_768.0, "sample {i}");
    }
    cap.stop();
}

#[test]
fn a_file_in_virtual_mode_goes_as_fast_as_it_is_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.wav");
    // 10 s of audio: more than the ring holds, so the producer has to wait for the consumer.
    let x: Vec<i16> = (0..160_000).map(|i| (i % 30_000) as i16).collect();
    write_wav(&path, &x);
    let clock = manual(7);
    let mut settings =
        CaptureSettings::new(SourceUri::parse(&format!("file://{}", path.display())).unwrap());
    settings.mode = ClockMode::Virtual;
    let mut cap = Capture::start(&settings, clock).unwrap();
    assert_eq!(cap.t0(), Some(Pts::from_nanos(7_000_000_000)));
    let mut buf = vec![0.0f32; 1000];
    let mut next = 0u64;
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < TIMEOUT, "timed out");
        let p = cap.pop(&mut buf);
        if p.end_of_stream {
            break;
        }
        if p.samples > 0 {
            assert_eq!(p.first_index, next, "nothing dropped in a simulation");
            for (k, v) in buf[..p.samples].iter().enumerate() {
                assert_eq!(*v, ((next as usize + k) % 30_000) as f32 / 32_768.0);
            }
            next += p.samples as u64;
        }
    }
    assert_eq!(next, 160_000);
    assert_eq!(cap.stats().ring_overruns, 0);
    cap.stop();
}

#[test]
fn silence_is_paced_and_the_ring_never_blocks_the_producer() {
    let clock = manual(1);
    let mut cap = Capture::start(&CaptureSettings::new(SourceUri::Silence), clock.clone()).unwrap();
    // Nobody reads: 10 s is more than the ring holds. The producer keeps going.
    for _ in 0..10 {
        clock.advance(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(2));
    }
    wait_for("10 s of silence", || cap.stats().produced == 160_000);
    let stats = cap.stats();
    assert!(stats.ring_overruns > 0, "{stats:?}");
    assert_eq!(
        stats.ring_overruns,
        stats.ring_dropped_samples / 128,
        "{stats:?}"
    );
    // The consumer finds the oldest samples, then a jump to samples written after it made room.
    let runs = drain(&mut cap, 160_000);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].0, 0);
    assert!(runs[0].1.iter().all(|&v| v == 0.0));
    let kept = runs[0].1.len() as u64;
    assert_eq!(kept + stats.ring_dropped_samples, 160_000);
    clock.advance(Duration::from_millis(16));
    let runs = drain(&mut cap, 160_256);
    assert_eq!(runs, vec![(160_000, vec![0.0; 256])]);
    let t = Instant::now();
    cap.stop();
    assert!(t.elapsed() < Duration::from_secs(1));
}

fn pipe_format(rate: u32) -> PipeFormat {
    PipeFormat {
        rate,
        encoding: PcmEncoding::S16Le,
        channels: 1,
    }
}

fn s16_bytes(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|s| s.to_le_bytes()).collect()
}

#[test]
fn a_pipe_plays_what_arrives_no_faster_than_real_time_then_silence_then_ends() {
    use std::io::Write;
    let (reader, mut writer) = std::io::pipe().unwrap();
    let clock = manual(50);
    let mut settings = CaptureSettings::new(SourceUri::Pipe(pipe_format(8000)));
    settings.period_frames = 256;
    let input = CaptureInput::Pipe {
        name: "pipe://".into(),
        source: PipeSource::from_fd(OwnedFd::from(reader), pipe_format(8000), 256),
    };
    let mut cap = Capture::start_input(input, &settings, clock.clone()).unwrap();
    // Half a second of a constant at 8 kHz, written at once.
    writer.write_all(&s16_bytes(&[8192i16; 4000])).unwrap();
    clock.advance(Duration::from_millis(100));
    let runs = drain(&mut cap, 1600);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(cap.stats().produced, 1600, "not ahead of the clock");
    let got = &runs[0].1;
    assert_eq!((runs[0].0, got.len()), (0, 1600));
    // After the resampler's start-up the constant comes through (8 kHz → 16 kHz).
    for (i, v) in got.iter().enumerate().skip(100) {
        assert!((v - 0.25).abs() < 1e-3, "sample {i}: {v}");
    }
    // The writer goes quiet: its samples run out at 0.5 s, then silence follows once it has
    // been idle for the grace time.
    clock.advance(Duration::from_millis(900));
    let grace = 16 * moda_edge::audio::capture::PIPE_GRACE.as_millis() as u64;
    let runs = drain(&mut cap, 16_000 - grace);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(cap.stats().produced, 16_000 - grace);
    let got = &runs[0].1;
    assert_eq!(runs.len(), 1, "one continuous run");
    let data_end = 8000 - 1600 - 60; // minus the resampler's last outputs (still inside it)
    for (i, v) in got[..data_end].iter().enumerate().skip(10) {
        assert!((v - 0.25).abs() < 1e-3, "sample {}: {v}", 1600 + i);
    }
    assert!(got[8000 - 1600 + 10..].iter().all(|&v| v == 0.0), "silence");
    // Closing the pipe ends the stream after what is left.
    writer.write_all(&s16_bytes(&[-8192i16; 800])).unwrap();
    drop(writer);
    clock.advance(Duration::from_secs(1));
    let mut buf = vec![0.0f32; 4096];
    let mut tail = Vec::new();
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < TIMEOUT, "timed out");
        let p = cap.pop(&mut buf);
        if p.end_of_stream {
            break;
        }
        tail.extend_from_slice(&buf[..p.samples]);
        if p.samples == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let negative = tail.iter().filter(|&&v| (v + 0.25).abs() < 1e-3).count();
    assert!(
        (1500..=1600).contains(&negative),
        "{negative} samples of the last write"
    );
    cap.stop();
}

#[test]
fn a_child_process_stdout_as_pipe_in_virtual_and_real_time() {
    let spawn = |bytes: u32| {
        let mut child = std::process::Command::new("head")
            .args(["-c", &bytes.to_string(), "/dev/zero"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = OwnedFd::from(child.stdout.take().unwrap());
        (child, out)
    };
    let collect = |cap: &mut Capture| {
        let mut buf = vec![1.0f32; 4096];
        let (mut n, mut next) = (0u64, 0u64);
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < TIMEOUT, "timed out");
            let p = cap.pop(&mut buf);
            if p.end_of_stream {
                return n;
            }
            assert_eq!(p.first_index, next);
            assert!(buf[..p.samples].iter().all(|&v| v == 0.0));
            n += p.samples as u64;
            next += p.samples as u64;
            if p.samples == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    // Virtual: 2 s of zeros (16 kHz s16le) as fast as we take them.
    let (mut child, fd) = spawn(64_000);
    let mut settings = CaptureSettings::new(SourceUri::Pipe(pipe_format(16_000)));
    settings.mode = ClockMode::Virtual;
    let input = CaptureInput::Pipe {
        name: "pipe://".into(),
        source: PipeSource::from_fd(fd, pipe_format(16_000), 256),
    };
    let start = Instant::now();
    let mut cap = Capture::start_input(input, &settings, Arc::new(MonotonicClock)).unwrap();
    assert_eq!(collect(&mut cap), 32_000);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "faster than real time"
    );
    cap.stop();
    child.wait().unwrap();
    // Real time: 0.3 s takes at least 0.3 s.
    let (mut child, fd) = spawn(9_600);
    settings.mode = ClockMode::RealTime;
    let input = CaptureInput::Pipe {
        name: "pipe://".into(),
        source: PipeSource::from_fd(fd, pipe_format(16_000), 256),
    };
    let start = Instant::now();
    let mut cap = Capture::start_input(input, &settings, Arc::new(MonotonicClock)).unwrap();
    let n = collect(&mut cap);
    let took = start.elapsed();
    assert!((4800..=4800 + 16 * 60).contains(&n), "{n} samples");
    assert!(took >= Duration::from_millis(290), "took {took:?}");
    cap.stop();
    child.wait().unwrap();
}

/// What a simulated device does next; shared between the test and the device.
#[derive(Default)]
struct SimControl {
    present: AtomicBool,
    /// Chunks to deliver before waiting for more.
    chunks_left: AtomicI64,
    /// The device is waiting for `chunks_left` (everything before was processed).
    waiting: AtomicBool,
    /// Next read fails as if unplugged.
    unplug: AtomicBool,
    /// Reads fail (to let the capture thread stop).
    halt: AtomicBool,
    opened: AtomicU64,
    /// The next chunk comes after an overrun that lost this many samples.
    xrun_lost: AtomicU64,
    /// Sample value of the current connection.
    value_bits: AtomicU64,
}

/// A device at a nominal 16 kHz whose clock runs at `actual_rate` and that keeps its own
/// timeline: each chunk is stamped at the device time of its first sample, and the manual clock
/// is moved to the end of the chunk (the device "captured" it in real time).
struct SimDevice {
    ctl: Arc<SimControl>,
    clock: Arc<ManualClock>,
    actual_rate: f64,
    /// Device time of the next sample, in ns on the manual clock.
    time: f64,
    value: f32,
}

impl AudioSource for SimDevice {
    fn read(&mut self, out: &mut [f32]) -> Result<Captured, SourceError> {
        loop {
            if self.ctl.halt.load(Ordering::SeqCst) || self.ctl.unplug.swap(false, Ordering::SeqCst)
            {
                self.ctl.present.store(false, Ordering::SeqCst);
                return Err(SourceError::Unavailable {
                    name: "sim://".into(),
                    source: "unplugged".into(),
                });
            }
            if self.ctl.chunks_left.load(Ordering::SeqCst) > 0 {
                self.ctl.waiting.store(false, Ordering::SeqCst);
                self.ctl.chunks_left.fetch_sub(1, Ordering::SeqCst);
                break;
            }
            self.ctl.waiting.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_micros(200));
        }
        out.fill(self.value);
        let lost = self.ctl.xrun_lost.swap(0, Ordering::SeqCst);
        self.time += lost as f64 * 1e9 / self.actual_rate;
        let first = self.time;
        self.time += out.len() as f64 * 1e9 / self.actual_rate;
        self.clock.set(Pts::from_nanos(self.time as u64));
        // The same instant on CLOCK_MONOTONIC: by its age on the manual clock.
        let age = self.clock.now().nanos() as f64 - first;
        let stamp = MonotonicClock::read().nanos() as f64 - age;
        Ok(Captured {
            samples: out.len(),
            timestamp: Pts::from_nanos(stamp as u64),
            lost,
        })
    }

    fn sample_rate(&self) -> u32 {
        16_000
    }
}

struct SimOpener {
    ctl: Arc<SimControl>,
    clock: Arc<ManualClock>,
    actual_rate: f64,
}

impl DeviceOpener for SimOpener {
    fn name(&self) -> &str {
        "sim://"
    }

    fn open(&mut self) -> Result<Box<dyn AudioSource>, SourceError> {
        if !self.ctl.present.load(Ordering::SeqCst) {
            return Err(SourceError::Unavailable {
                name: "sim://".into(),
                source: "not plugged in".into(),
            });
        }
        self.ctl.opened.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(SimDevice {
            ctl: Arc::clone(&self.ctl),
            clock: Arc::clone(&self.clock),
            actual_rate: self.actual_rate,
            time: self.clock.now().nanos() as f64,
            value: f32::from_bits(self.ctl.value_bits.load(Ordering::SeqCst) as u32),
        }))
    }
}

fn sim(
    clock: &Arc<ManualClock>,
    actual_rate: f64,
    present: bool,
) -> (Arc<SimControl>, CaptureInput) {
    let ctl = Arc::new(SimControl::default());
    ctl.present.store(present, Ordering::SeqCst);
    ctl.value_bits
        .store(u64::from(0.5f32.to_bits()), Ordering::SeqCst);
    let opener = SimOpener {
        ctl: Arc::clone(&ctl),
        clock: Arc::clone(clock),
        actual_rate,
    };
    (ctl, CaptureInput::Device(Box::new(opener)))
}

/// Lets the device deliver `chunks` chunks and waits until the capture thread has placed them.
fn deliver(ctl: &SimControl, chunks: i64) {
    ctl.waiting.store(false, Ordering::SeqCst);
    ctl.chunks_left.store(chunks, Ordering::SeqCst);
    wait_for("the device's chunks", || {
        ctl.chunks_left.load(Ordering::SeqCst) == 0 && ctl.waiting.load(Ordering::SeqCst)
    });
}

fn stop(cap: Capture, ctl: &SimControl) {
    ctl.halt.store(true, Ordering::SeqCst);
    cap.stop();
}

#[test]
fn a_device_100_ppm_fast_stays_on_the_clock_for_an_hour() {
    let clock = manual(1000);
    let rate = 16_000.0 * (1.0 + 100e-6);
    let (ctl, input) = sim(&clock, rate, true);
    let settings = CaptureSettings::new(SourceUri::parse("alsa://sim").unwrap());
    let cap = Capture::start_input(input, &settings, clock.clone()).unwrap();
    // One simulated hour in chunks of 256 device samples (nobody reads: the ring overflows,
    // which does not matter for the index).
    let chunks = (3600.0 * rate / 256.0) as i64;
    deliver(&ctl, chunks);
    let stats = cap.stats();
    let t0 = cap.t0().unwrap();
    let expected = clock.now().since(t0).as_secs_f64() * 16_000.0;
    // The device delivered 5760 samples more than an hour holds: all dropped, one at a time
    // (at most one per 1000).
    assert!((5740..=5780).contains(&stats.drift_dropped), "{stats:?}");
    assert_eq!(stats.drift_inserted, 0, "{stats:?}");
    assert_eq!(
        (stats.gap_filled, stats.overlap_skipped),
        (0, 0),
        "{stats:?}"
    );
    let err = stats.produced as f64 - expected;
    assert!(
        err.abs() < 12.0,
        "index {} vs clock {expected}: {stats:?}",
        stats.produced
    );
    assert!(stats.device_connected);
    stop(cap, &ctl);
}

#[test]
fn a_device_missing_at_start_then_lost_leaves_no_hole_in_the_index() {
    let clock = manual(200);
    let (ctl, input) = sim(&clock, 16_000.0, false);
    let mut settings = CaptureSettings::new(SourceUri::parse("alsa://sim").unwrap());
    settings.retry = Duration::from_millis(500);
    let mut cap = Capture::start_input(input, &settings, clock.clone()).unwrap();
    assert!(!cap.stats().device_connected);
    assert_eq!(&*cap.stats().device_name, "sim://");
    // Silence in real time while it is missing (a period behind the clock).
    for _ in 0..25 {
        clock.advance(Duration::from_millis(16));
        std::thread::sleep(Duration::from_millis(1));
    }
    wait_for("silence", || cap.stats().produced == 25 * 256 - 256);
    assert_eq!(cap.t0(), Some(Pts::from_nanos(200_000_000_000)));
    // Plugged in: found at the next retry (every 500 ms), then it delivers 0.5 s of 0.5.
    ctl.present.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_millis(200));
    wait_for("the reconnection", || cap.stats().device_connected);
    let back_at = clock.now();
    deliver(&ctl, 31);
    let stats = cap.stats();
    assert_eq!(stats.reconnects, 1, "{stats:?}");
    assert_eq!(ctl.opened.load(Ordering::SeqCst), 1);
    // Unplugged, and back 300 ms later with another value.
    ctl.unplug.store(true, Ordering::SeqCst);
    ctl.value_bits
        .store(u64::from(0.25f32.to_bits()), Ordering::SeqCst);
    ctl.chunks_left.store(0, Ordering::SeqCst);
    wait_for("the loss", || !cap.stats().device_connected);
    for _ in 0..19 {
        clock.advance(Duration::from_millis(16));
        std::thread::sleep(Duration::from_millis(1));
    }
    ctl.present.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_millis(250));
    wait_for("the second reconnection", || cap.stats().device_connected);
    let second_at = clock.now();
    deliver(&ctl, 10);
    let stats = cap.stats();
    assert_eq!(stats.reconnects, 2, "{stats:?}");
    let t0 = cap.t0().unwrap();
    let runs = drain(&mut cap, stats.produced);
    assert_eq!(runs.len(), 1, "one continuous run from index 0");
    assert_eq!(runs[0].0, 0);
    let x = &runs[0].1;
    assert_eq!(x.len() as u64, stats.produced);
    let index_of = |t: Pts| (t.since(t0).as_nanos() * 16 / 1_000_000) as usize;
    // Zeros until the device came back, its samples from the index of their capture time.
    let first_half = x.iter().position(|&v| v == 0.5).unwrap();
    assert_eq!(first_half, index_of(back_at));
    assert!(x[..first_half].iter().all(|&v| v == 0.0));
    assert!(x[first_half..first_half + 31 * 256]
        .iter()
        .all(|&v| v == 0.5));
    // Silence across the gap, then the second connection where its time says.
    let first_quarter = x.iter().position(|&v| v == 0.25).unwrap();
    assert_eq!(first_quarter, index_of(second_at));
    assert!(x[first_half + 31 * 256..first_quarter]
        .iter()
        .all(|&v| v == 0.0));
    assert!(x[first_quarter..].iter().all(|&v| v == 0.25));
    assert_eq!(x.len() - first_quarter, 10 * 256);
    stop(cap, &ctl);
}

#[test]
fn an_xrun_is_counted_and_its_lost_samples_become_silence() {
    let clock = manual(300);
    let (ctl, input) = sim(&clock, 16_000.0, true);
    let settings = CaptureSettings::new(SourceUri::parse("alsa://sim").unwrap());
    let mut cap = Capture::start_input(input, &settings, clock.clone()).unwrap();
    deliver(&ctl, 10);
    // 100 samples (6.25 ms) lost in an overrun: less than the gap threshold, still placed
    // exactly (an xrun resynchronizes at once).
    ctl.xrun_lost.store(100, Ordering::SeqCst);
    deliver(&ctl, 10);
    let stats = cap.stats();
    assert_eq!(stats.xruns, 1, "{stats:?}");
    assert_eq!(stats.gap_filled, 100, "{stats:?}");
    let runs = drain(&mut cap, 20 * 256 + 100);
    assert_eq!(runs.len(), 1);
    let x = &runs[0].1;
    assert_eq!(x.len(), 20 * 256 + 100);
    assert!(x[..2560].iter().all(|&v| v == 0.5));
    assert!(
        x[2560..2660].iter().all(|&v| v == 0.0),
        "the lost samples are silence"
    );
    assert!(x[2660..].iter().all(|&v| v == 0.5));
    stop(cap, &ctl);
}

#[test]
fn bad_sources_fail_at_start_with_one_sentence() {
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock);
    let settings = CaptureSettings::new(SourceUri::parse("file:///nonexistent/x.wav").unwrap());
    let e = Capture::start(&settings, Arc::clone(&clock)).err().unwrap();
    assert!(e.to_string().contains("/nonexistent/x.wav"), "{e}");
    assert_eq!(e.kind(), moda_edge::audio::SourceErrorKind::Fatal);
    let mut settings = CaptureSettings::new(SourceUri::parse("alsa://default").unwrap());
    settings.mode = ClockMode::Virtual;
    let e = Capture::start(&settings, clock).err().unwrap();
    assert_eq!(
        e.to_string(),
        "audio source alsa://default: the virtual clock mode needs file://, pipe:// or silence://"
    );
}

/// The scheduler moves these handles to its own threads (checked at compile time).
#[test]
fn capture_and_playback_handles_are_send() {
    fn send<T: Send>() {}
    send::<Capture>();
    send::<moda_edge::audio::Playback>();
    send::<moda_edge::audio::AlsaCapture>();
    send::<PipeSource>();
}

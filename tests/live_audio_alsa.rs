//! ALSA capture and playback without sound hardware, through alsa-lib's `file` plugin over the
//! `null` device: capture reads the plugin's `infile`, playback writes its `file`.
//!
//! The PCMs are defined in a configuration written by this test and loaded after the system's
//! `alsa.conf` through `ALSA_CONFIG_PATH`. The variable is process-wide, so this test has its own
//! `main` (`harness = false` in Cargo.toml): it sets the variable before any thread exists and
//! runs the cases one after the other. `cargo test --test live_audio_alsa -- NAME` runs the
//! cases whose name contains NAME.
//!
//! The `file` plugin over `null` delivers and accepts audio as fast as it is asked (it does not
//! pace in real time), so timing is checked with a manual clock (playback) or a pacing wrapper
//! (capture through the capture thread).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moda_edge::audio::capture::{AlsaOpener, CaptureInput, DeviceOpener};
use moda_edge::audio::playback::PlayReport;
use moda_edge::audio::{
    AlsaCapture, AlsaSettings, AudioSource, Capture, CaptureSettings, Captured, Playback,
    PlaybackSettings, PlaybackUri, SourceError, SourceUri, Timing,
};
use moda_edge::clock::{Clock, ManualClock, MonotonicClock, Pts};

const TIMEOUT: Duration = Duration::from_secs(20);

/// The system configuration every PCM definition builds on.
const SYSTEM_CONF: &str = "/usr/share/alsa/alsa.conf";

struct Env {
    dir: PathBuf,
}

impl Env {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn write_conf(dir: &Path) -> PathBuf {
    let p = |n: &str| dir.join(n).display().to_string();
    let conf = format!(
        r#"
pcm.mtest_cap {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{cap}"
    format "raw"
}}
pcm.mtest_stereo48 {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{stereo}"
    format "raw"
}}
pcm.mtest_late {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{late}"
    format "raw"
}}
pcm.mtest_play {{
    type file
    slave.pcm "null"
    file "{play}"
    format "raw"
}}
pcm.mtest_play48 {{
    type file
    slave.pcm "null"
    file "{play48}"
    format "raw"
}}
"#,
        cap = p("cap.raw"),
        stereo = p("stereo48.raw"),
        late = p("late.raw"),
        play = p("play.raw"),
        play48 = p("play48.raw"),
    );
    let path = dir.join("asound.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn s16(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn read_s16(path: &Path) -> Vec<i16> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Amplitude of the `freq` component of `x` at `rate`, and the rms of what remains.
fn tone_fit(x: &[f32], rate: f64, freq: f64) -> (f64, f64) {
    let w = std::f64::consts::TAU * freq / rate;
    let (mut s, mut c) = (0.0, 0.0);
    for (i, &v) in x.iter().enumerate() {
        s += f64::from(v) * (w * i as f64).sin();
        c += f64::from(v) * (w * i as f64).cos();
    }
    let n = x.len() as f64;
    let (a, b) = (2.0 * s / n, 2.0 * c / n);
    let resid: f64 = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let fit = a * (w * i as f64).sin() + b * (w * i as f64).cos();
            (f64::from(v) - fit).powi(2)
        })
        .sum::<f64>()
        / n;
    ((a * a + b * b).sqrt(), resid.sqrt())
}

fn capture_reads_the_infile_with_timestamps(env: &Env) {
    let ramp: Vec<i16> = (0..4000).map(|i| (i * 8 - 16_000) as i16).collect();
    std::fs::write(env.path("cap.raw"), s16(&ramp)).unwrap();
    let mut cap = AlsaCapture::open("mtest_cap", &AlsaSettings::default()).unwrap();
    assert_eq!(cap.name(), "alsa://mtest_cap");
    assert_eq!((cap.sample_rate(), cap.channels()), (16_000, 1));
    let mut got = Vec::new();
    let mut buf = vec![0.0f32; 256];
    let mut last = Pts::ZERO;
    while got.len() < 4000 {
        let before = MonotonicClock::read();
        let c = cap.read(&mut buf).unwrap();
        assert_eq!(c.samples, 256);
        assert_eq!(c.lost, 0);
        assert!(
            c.timestamp <= MonotonicClock::read(),
            "captured in the past"
        );
        assert!(
            c.timestamp.after(Duration::from_secs(2)) >= before,
            "not older than the buffer and a second"
        );
        assert!(c.timestamp >= last, "timestamps do not go back");
        last = c.timestamp;
        got.extend_from_slice(&buf[..c.samples]);
    }
    let want: Vec<f32> = ramp.iter().map(|&v| f32::from(v) / 32_768.0).collect();
    assert_eq!(got[..4000], want[..]);
    assert_eq!(cap.xruns(), 0);
}

/// Paces an unpaced device to real time (the `file` plugin returns at once) and stamps each
/// chunk with the time its first frame was due, as a sound card's timestamps would.
struct Paced {
    inner: Box<dyn AudioSource>,
    start: Pts,
    frames: u64,
}

impl AudioSource for Paced {
    fn read(&mut self, out: &mut [f32]) -> Result<Captured, SourceError> {
        let c = self.inner.read(out)?;
        let rate = u64::from(self.inner.sample_rate());
        let at = |frames: u64| {
            self.start
                .after(Duration::from_nanos(frames * 1_000_000_000 / rate))
        };
        let first = at(self.frames);
        self.frames += c.samples as u64;
        MonotonicClock.sleep_until(at(self.frames));
        Ok(Captured {
            timestamp: first,
            ..c
        })
    }

    fn sample_rate(&self) -> u32 {
        self.inner.sample_rate()
    }
}

struct PacedOpener(AlsaOpener);

impl DeviceOpener for PacedOpener {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn open(&mut self) -> Result<Box<dyn AudioSource>, SourceError> {
        Ok(Box::new(Paced {
            inner: self.0.open()?,
            start: MonotonicClock::read(),
            frames: 0,
        }))
    }
}

fn capture_converts_a_48k_stereo_device_to_16k_mono(env: &Env) {
    // 1 s of a 1 kHz tone at 48 kHz in both channels (right at half the level of the left:
    // the mono mix is their mean).
    let frames: Vec<i16> = (0..48_000)
        .flat_map(|i| {
            let v = (std::f64::consts::TAU * 1000.0 * f64::from(i) / 48_000.0).sin();
            [(v * 0.6 * 32_767.0) as i16, (v * 0.3 * 32_767.0) as i16]
        })
        .collect();
    std::fs::write(env.path("stereo48.raw"), s16(&frames)).unwrap();
    let alsa = AlsaSettings {
        rate: 48_000,
        channels: 2,
        ..AlsaSettings::default()
    };
    let settings = CaptureSettings::new(SourceUri::parse("alsa://mtest_stereo48").unwrap());
    let input = CaptureInput::Device(Box::new(PacedOpener(AlsaOpener::new(
        "mtest_stereo48",
        alsa,
    ))));
    let mut cap = Capture::start_input(input, &settings, Arc::new(MonotonicClock)).unwrap();
    let mut x = Vec::new();
    let mut buf = vec![0.0f32; 1024];
    let mut next = None;
    wait_for("0.9 s of audio", || {
        let p = cap.pop(&mut buf);
        if p.samples > 0 {
            assert_eq!(
                *next.get_or_insert(p.first_index),
                p.first_index,
                "continuous"
            );
            next = Some(p.first_index + p.samples as u64);
            x.extend_from_slice(&buf[..p.samples]);
        }
        x.len() >= 14_400
    });
    let stats = cap.stats();
    assert!(stats.device_connected && stats.xruns == 0, "{stats:?}");
    // The device's timestamps are exact: nothing to correct.
    assert_eq!(
        (
            stats.drift_dropped,
            stats.drift_inserted,
            stats.gap_filled,
            stats.overlap_skipped
        ),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    // Skip the resampler's start; the tone is there at 0.45 (the mean of 0.6 and 0.3).
    let (amp, resid) = tone_fit(&x[400..14_400], 16_000.0, 1000.0);
    assert!(
        (amp - 0.45).abs() < 0.005,
        "amplitude {amp} residual {resid} {stats:?}"
    );
    assert!(resid < 0.005, "residual {resid}");
    cap.stop();
}

fn a_device_that_appears_is_picked_up_and_the_stream_keeps_time(env: &Env) {
    let late = env.path("late.raw");
    let _ = std::fs::remove_file(&late);
    let mut settings = CaptureSettings::new(SourceUri::parse("alsa://mtest_late").unwrap());
    settings.retry = Duration::from_millis(200);
    let start = Instant::now();
    let mut cap = Capture::start(&settings, Arc::new(MonotonicClock)).unwrap();
    let stats = cap.stats();
    assert!(
        !stats.device_connected,
        "the infile is missing: the device is not there"
    );
    assert_eq!(&*stats.device_name, "alsa://mtest_late");
    std::thread::sleep(Duration::from_millis(300));
    assert!(cap.stats().produced > 0, "silence while it is missing");
    std::fs::write(&late, s16(&[1000i16; 16_000])).unwrap();
    wait_for("the device", || cap.stats().device_connected);
    let stats = cap.stats();
    assert_eq!(stats.reconnects, 1, "{stats:?}");
    // The plugin delivers far faster than real time; the stream still follows the clock
    // (what would land ahead of it is skipped).
    std::thread::sleep(Duration::from_millis(300));
    let t0 = cap.t0().unwrap();
    let stats = cap.stats();
    let clock_index = MonotonicClock::read().since(t0).as_secs_f64() * 16_000.0;
    assert!(
        (stats.produced as f64) <= clock_index + 1.0
            && (stats.produced as f64) > clock_index - 3200.0,
        "index {} vs clock {clock_index}: {stats:?}",
        stats.produced
    );
    assert!(stats.overlap_skipped > 0, "{stats:?}");
    // Everything from index 0 on, in one piece.
    let mut buf = vec![0.0f32; 65_536];
    let p = cap.pop(&mut buf);
    assert_eq!(p.first_index, 0);
    assert!(start.elapsed() < TIMEOUT);
    cap.stop();
}

fn an_unknown_device_is_retried_not_fatal(_env: &Env) {
    let mut settings = CaptureSettings::new(SourceUri::parse("alsa://mtest_no_such_pcm").unwrap());
    settings.retry = Duration::from_millis(100);
    let cap = Capture::start(&settings, Arc::new(MonotonicClock)).unwrap();
    std::thread::sleep(Duration::from_millis(250));
    let stats = cap.stats();
    assert!(!stats.device_connected);
    assert!(stats.produced >= 16 * 100, "{stats:?}");
    assert_eq!(stats.reconnects, 0);
    cap.stop();
}

/// Runs `f` with standard error going to a file and returns what was written there.
fn stderr_of(env: &Env, f: impl FnOnce()) -> String {
    use std::os::fd::AsRawFd;
    let path = env.path("stderr.txt");
    let file = std::fs::File::create(&path).unwrap();
    // SAFETY: dup/dup2 on descriptor 2 and a file we own; no other thread is running (the
    // cases run one after the other), and descriptor 2 is restored below.
    let saved = unsafe { libc::dup(2) };
    assert!(saved >= 0);
    // SAFETY: as above.
    assert!(unsafe { libc::dup2(file.as_raw_fd(), 2) } >= 0);
    f();
    // SAFETY: restores the saved descriptor and closes the duplicate.
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
    }
    std::fs::read_to_string(&path).unwrap()
}

fn alsa_error_printing_is_silenced(env: &Env) {
    // alsa-lib prints its errors to stderr...
    let raw = stderr_of(env, || {
        assert!(alsa::pcm::PCM::new("mtest_no_such_pcm", alsa::Direction::Capture, true).is_err());
    });
    assert!(raw.contains("ALSA lib"), "{raw:?}");
    // ...but not while we open devices (a retry every few seconds must not flood the log).
    let ours = stderr_of(env, || {
        let e = AlsaCapture::open("mtest_no_such_pcm", &AlsaSettings::default())
            .err()
            .unwrap();
        assert!(matches!(e, SourceError::Unavailable { .. }), "{e:?}");
    });
    assert_eq!(ours, "");
}

/// Index-coded samples: sample `n` carries `(n mod 4000 + 1) / 8000`, readable back from S16.
fn coded(n: u64) -> f32 {
    ((n % 4000) as f32 + 1.0) / 8000.0
}

fn decode(v: i16) -> Option<u64> {
    let x = f64::from(v) / 32_767.0 * 8000.0 - 1.0;
    (x > -0.5).then(|| x.round() as u64)
}

fn playback_pads_early_samples_and_drops_late_ones(env: &Env) {
    let clock = Arc::new(ManualClock::new(Pts::from_nanos(50_000_000_000)));
    let uri = PlaybackUri::parse("alsa://mtest_play").unwrap();
    let mut play = Playback::open(&uri, &PlaybackSettings::default(), clock.clone()).unwrap();
    assert_eq!(play.device_format(), (16_000, 1));
    let timing = Timing {
        t0: clock.now(),
        budget: Duration::from_millis(100),
    };
    // The device "plays" what it was given: the clock moves by that much after each write.
    let played = |clock: &ManualClock, r: &PlayReport, extra_ns: u64| {
        clock.advance(Duration::from_nanos(r.to_device() * 62_500 + extra_ns));
    };
    let mut n = 0u64;
    let mut chunk = [0.0f32; 2 * 533];
    let mut push = |play: &mut Playback, n: &mut u64, len: usize| {
        for (k, v) in chunk[..len].iter_mut().enumerate() {
            *v = coded(*n + k as u64);
        }
        let r = play.write(&chunk[..len], *n, timing).unwrap();
        *n += len as u64;
        r
    };
    // At t0 the samples are a whole budget early: 1600 samples of silence go first.
    let r = push(&mut play, &mut n, 533);
    assert_eq!(r.padded, 1600, "{r:?}");
    played(&clock, &r, 0);
    for _ in 0..20 {
        let r = push(&mut play, &mut n, 533);
        assert_eq!((r.padded, r.dropped, r.filled), (0, 0, 0), "{r:?}");
        played(&clock, &r, 0);
    }
    // The caller stalls for 50 ms, then hands two frames' worth: 800 samples are late and
    // skipped.
    clock.advance(Duration::from_millis(50));
    let r = push(&mut play, &mut n, 2 * 533);
    assert_eq!(
        (r.dropped, r.played, r.filled),
        (800, 2 * 533 - 800, 0),
        "{r:?}"
    );
    played(&clock, &r, 0);
    // A device that is slow by one sample per write: single samples skipped, spaced out.
    for _ in 0..60 {
        let r = push(&mut play, &mut n, 533);
        played(&clock, &r, 62_500);
    }
    let stats = play.stats();
    assert!(stats.drift_dropped >= 10, "{stats:?}");
    assert!(stats.drift_dropped <= 60 * 533 / 1000 + 1, "{stats:?}");
    assert_eq!(stats.xruns, 0);
    drop(play);

    // What arrived: 1600 zeros, then samples 0, 1, 2, … each at its time, with the late ones
    // missing.
    let out = read_s16(&env.path("play.raw"));
    assert!(out[..1600].iter().all(|&v| v == 0));
    let idx: Vec<u64> = out[1600..].iter().map(|&v| decode(v).unwrap()).collect();
    let stall_at = 21 * 533;
    for (p, &i) in idx[..stall_at].iter().enumerate() {
        assert_eq!(i, p as u64 % 4000, "file position {}", 1600 + p);
    }
    // At the stall the index jumps by the 800 late samples.
    assert_eq!(idx[stall_at], (stall_at as u64 + 800) % 4000);
    for w in idx[stall_at..stall_at + 2 * 533 - 800].windows(2) {
        assert_eq!((w[0] + 1) % 4000, w[1]);
    }
    let jumps = idx[stall_at..]
        .windows(2)
        .filter(|w| (w[0] + 1) % 4000 != w[1])
        .count() as u64;
    assert_eq!(
        jumps, stats.drift_dropped,
        "each drift fix skips one sample"
    );
}

fn playback_converts_to_a_48k_stereo_device(env: &Env) {
    let clock = Arc::new(ManualClock::new(Pts::from_nanos(9_000_000_000)));
    let uri = PlaybackUri::parse("alsa://mtest_play48").unwrap();
    let settings = PlaybackSettings {
        alsa: AlsaSettings {
            rate: 48_000,
            channels: 2,
            ..AlsaSettings::default()
        },
    };
    let mut play = Playback::open(&uri, &settings, clock.clone()).unwrap();
    assert_eq!(play.device_format(), (48_000, 2));
    let timing = Timing {
        t0: clock.now(),
        budget: Duration::ZERO,
    };
    let tone: Vec<f32> = (0..16_000)
        .map(|i| (0.5 * (std::f64::consts::TAU * 1000.0 * f64::from(i) / 16_000.0).sin()) as f32)
        .collect();
    for (k, chunk) in tone.chunks(400).enumerate() {
        let r = play.write(chunk, k as u64 * 400, timing).unwrap();
        clock.advance(Duration::from_nanos(r.to_device() * 62_500));
    }
    drop(play);
    let out = read_s16(&env.path("play48.raw"));
    assert!(out.len() >= 2 * 47_000, "{} samples", out.len());
    let (left, right): (Vec<f32>, Vec<f32>) = out
        .chunks_exact(2)
        .map(|f| (f32::from(f[0]) / 32_768.0, f32::from(f[1]) / 32_768.0))
        .unzip();
    assert_eq!(left, right, "the same signal on both channels");
    let (amp, resid) = tone_fit(&left[1000..46_000], 48_000.0, 1000.0);
    assert!((amp - 0.5).abs() < 0.005, "amplitude {amp}");
    assert!(resid < 0.005, "residual {resid}");
}

type Case = (&'static str, fn(&Env));

fn main() {
    let cases: [Case; 7] = [
        (
            "alsa_error_printing_is_silenced",
            alsa_error_printing_is_silenced,
        ),
        (
            "capture_reads_the_infile_with_timestamps",
            capture_reads_the_infile_with_timestamps,
        ),
        (
            "capture_converts_a_48k_stereo_device_to_16k_mono",
            capture_converts_a_48k_stereo_device_to_16k_mono,
        ),
        (
            "a_device_that_appears_is_picked_up_and_the_stream_keeps_time",
            a_device_that_appears_is_picked_up_and_the_stream_keeps_time,
        ),
        (
            "an_unknown_device_is_retried_not_fatal",
            an_unknown_device_is_retried_not_fatal,
        ),
        (
            "playback_pads_early_samples_and_drops_late_ones",
            playback_pads_early_samples_and_drops_late_ones,
        ),
        (
            "playback_converts_to_a_48k_stereo_device",
            playback_converts_to_a_48k_stereo_device,
        ),
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &cases {
            println!("{name}: test");
        }
        return;
    }
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !Path::new(SYSTEM_CONF).exists() {
        println!("skipping ALSA tests: {SYSTEM_CONF} not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(dir.path());
    // Set while this is the only thread, before anything reads the environment.
    std::env::set_var(
        "ALSA_CONFIG_PATH",
        format!("{SYSTEM_CONF}:{}", conf.display()),
    );
    let env = Env {
        dir: dir.path().to_owned(),
    };
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, case) in cases {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&env))).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

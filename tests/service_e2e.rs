//! The `moda-edged` binary end to end, started as systemd starts it: a notification socket
//! and a watchdog in its environment, signals to stop and reload; and as a simulation, a WAV
//! file through the whole live pipeline into a y4m file. Tiny seeded networks and the
//! synthetic demo avatar, every process under a timeout.

mod common;

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A command that starts the `moda-edged` binary built with the tests (through
/// `$MODA_TEST_EXE_WRAPPER` when the tests are cross-built).
fn daemon() -> Command {
    let exe = env!("CARGO_BIN_EXE_moda-edged");
    match std::env::var_os("MODA_TEST_EXE_WRAPPER") {
        Some(wrapper) => {
            let mut c = Command::new(wrapper);
            c.arg(exe);
            c
        }
        None => Command::new(exe),
    }
}

/// Tiny networks, the demo avatar and a config using them with silent audio into `null://`.
fn fixture(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    common::write_tiny_models(&models);
    let avatar = dir.join("avatar");
    moda_edge::face::avatar::write_synthetic(&models.join("renderer.onnx"), 256, &avatar).unwrap();
    let config = dir.join("moda-edge.toml");
    std::fs::write(&config, config_text(&models, &avatar)).unwrap();
    config
}

fn config_text(models: &Path, avatar: &Path) -> String {
    format!(
        "models = {models:?}\navatar = {avatar:?}\nlatency_ms = 600\n\
         [audio]\nsource = \"silence://\"\n\
         [video]\nsink = \"null://\"\n\
         [service]\nstatus_interval_s = 0.5\n"
    )
}

/// Messages on the notification socket until one starts with `prefix` (60 s at most), all of
/// them in order.
fn until(socket: &UnixDatagram, prefix: &str, child: &mut Child) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "no {prefix} within 60 s; got {seen:?}"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("moda-edged exited ({status}) before {prefix}; got {seen:?}");
        }
        match socket.recv(&mut buf) {
            Ok(n) => {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = m.lines().any(|l| l.starts_with(prefix));
                seen.push(m);
                if done {
                    return seen;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("notification socket: {e}"),
        }
    }
}

#[test]
fn under_systemd_it_is_ready_pings_reports_survives_a_broken_reload_and_stops_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let config = fixture(dir.path());
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = dir.path().join("stderr.log");
    let status_file = dir.path().join("status.json");
    let mut child = daemon()
        .arg("--config")
        .arg(&config)
        .arg("--status-file")
        .arg(&status_file)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .env_remove("MODA_EDGED_DEBUG_STALL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let kill_on_panic = KillOnDrop(Some(child.id()));

    until(&socket, "READY=1", &mut child);
    // WATCHDOG_USEC = 1 s: a ping every 0.5 s (half the interval, as sd_watchdog_enabled(3)
    // advises), not more often, and never a second without one (systemd would restart).
    let mut pings = Vec::new();
    while pings.len() < 5 {
        until(&socket, "WATCHDOG=1", &mut child);
        pings.push(Instant::now());
    }
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(400) && gap < Duration::from_millis(1000),
            "pings {:?} apart",
            gap
        );
    }
    let status = until(&socket, "STATUS=", &mut child);
    let line = status.last().unwrap();
    assert!(
        line.contains("frames") && line.contains("fps") && line.contains("late"),
        "{line}"
    );
    // The status file is written before STATUS= is sent, atomically: a JSON object with the fields
    // a kiosk's monitoring reads.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&status_file).unwrap()).unwrap();
    for key in [
        "state",
        "frames",
        "fps",
        "late_frames",
        "xruns",
        "audio_device",
    ] {
        assert!(json.get(key).is_some(), "{key} missing: {json}");
    }
    for key in ["p50", "p99", "max"] {
        assert!(
            json["latency_ms"][key].is_number(),
            "latency_ms.{key}: {json}"
        );
    }
    assert_eq!(json["audio_device"], "silence://", "{json}");

    // A config that does not validate: the reload is refused and the service keeps running
    // on the old one, still pinging the watchdog.
    std::fs::write(&config, "latency_ms = \"soon\"\n").unwrap();
    common::cli::signal(&child, libc::SIGHUP);
    until(&socket, "RELOADING=1", &mut child);
    until(&socket, "READY=1", &mut child);
    until(&socket, "WATCHDOG=1", &mut child);
    assert!(child.try_wait().unwrap().is_none(), "still running");

    // SIGTERM: STOPPING=1 and a clean exit within 2 s.
    let t = Instant::now();
    common::cli::signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, 10);
    let took = t.elapsed();
    drop(kill_on_panic);
    let mut buf = [0u8; 4096];
    let mut after = Vec::new();
    while let Ok(n) = socket.recv(&mut buf) {
        after.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        after.iter().any(|m| m.contains("STOPPING=1")),
        "STOPPING=1 after SIGTERM: {after:?}"
    );
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}; stderr: {stderr}");
    assert!(took < Duration::from_secs(2), "stopped in {took:?}");
    assert!(
        stderr.contains("reload refused") && stderr.contains("latency_ms"),
        "the refused reload names the key: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Waits for `child` to exit, failing the test after `secs` seconds.
fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "no exit within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills the process if the test fails before it ends.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(pid) = self.0 {
                // SAFETY: kill(2) on our own child's pid touches no memory.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

/// Frames of a YUV4MPEG2 C444 file, each checked for its marker and its size.
fn y4m_frames(path: &Path) -> (u64, u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    let header_end = bytes.iter().position(|&b| b == b'\n').unwrap();
    let header = std::str::from_utf8(&bytes[..header_end]).unwrap();
    let field = |tag: char| -> u32 {
        header
            .split(' ')
            .find_map(|f| f.strip_prefix(tag))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (w, h) = (field('W'), field('H'));
    assert!(header.contains("C444"), "{header}");
    let frame = 6 + 3 * (w as usize) * (h as usize);
    let body = &bytes[header_end + 1..];
    assert_eq!(body.len() % frame, 0, "whole frames only");
    for k in 0..body.len() / frame {
        assert!(body[k * frame..].starts_with(b"FRAME\n"), "frame {k}");
    }
    ((body.len() / frame) as u64, w, h)
}

#[test]
fn a_file_simulated_through_the_live_pipeline_gives_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let config = fixture(dir.path());
    let wav = dir.path().join("speech.wav");
    let samples = 16_000 * 3 + 123;
    common::write_speechlike_wav(&wav, samples, 16_000, 1);
    let out = dir.path().join("out.y4m");
    let mut c = daemon();
    c.arg("--config")
        .arg(&config)
        .args(["--clock", "virtual", "--set"])
        .arg(format!("audio.source=file://{}", wav.display()))
        .arg("--set")
        .arg(format!("video.sink=y4m://{}", out.display()))
        .env_remove("NOTIFY_SOCKET");
    let f = common::run_with_timeout(c, 300);
    assert_eq!(f.code, Some(0), "stderr: {}", f.stderr);
    let (frames, w, h) = y4m_frames(&out);
    assert_eq!((w, h), (256, 256));
    assert_eq!(
        frames,
        moda_edge::motion::frame_count(samples) as u64,
        "one frame per 1/30 s of the file; stderr: {}",
        f.stderr
    );
}

#[test]
fn a_config_that_does_not_validate_is_one_line_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = fixture(dir.path());
    let mut c = daemon();
    c.arg("--config")
        .arg(&config)
        .args(["--check", "--set", "video.sink=v4l2://nowhere"]);
    let f = common::run_with_timeout(c, 120);
    common::assert_one_line_error(&f, &["video.sink", "v4l2://nowhere"]);
}

#[test]
fn a_pipe_simulated_through_the_live_pipeline_gives_every_frame() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let config = fixture(dir.path());
    let samples = 16_000 * 2 + 777;
    let pcm: Vec<u8> = (0..samples)
        .flat_map(|i| {
            let t = i as f64 / 16_000.0;
            let v = 9000.0 * (std::f64::consts::TAU * 140.0 * t).sin();
            (v as i16).to_le_bytes()
        })
        .collect();
    let out = dir.path().join("out.y4m");
    let mut child = daemon()
        .arg("--config")
        .arg(&config)
        .args([
            "--clock",
            "virtual",
            "--set",
            "audio.source=pipe://?rate=16000&format=s16le",
            "--set",
        ])
        .arg(format!("video.sink=y4m://{}", out.display()))
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let kill_on_panic = KillOnDrop(Some(child.id()));
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // The service may refuse before reading: a broken pipe is its exit status's business.
        let _ = stdin.write_all(&pcm);
    });
    let status = wait_exit(&mut child, 300);
    writer.join().unwrap();
    drop(kill_on_panic);
    let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(status.success(), "{status}; stderr: {stderr}");
    let (frames, _, _) = y4m_frames(&out);
    assert_eq!(
        frames,
        moda_edge::motion::frame_count(samples) as u64,
        "stderr: {stderr}"
    );
}

/// `backend = "tensorrt"` in a test build, where the TensorRT backend runs over the fake shim
/// (tract on the CPU, the same FFI calls and in-order streams): the live simulation of a file
/// gives the CPU backend's frames byte for byte, and the engines it needed are written beside
/// the ONNX files with their sidecars.
#[cfg(feature = "tensorrt-fake")]
#[test]
fn the_tensorrt_backend_gives_the_cpu_backends_frames_through_the_live_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let config = fixture(dir.path());
    let wav = dir.path().join("speech.wav");
    common::write_speechlike_wav(&wav, 16_000 * 2 + 500, 16_000, 1);
    let run = |backend: &str| {
        let out = dir.path().join(format!("{backend}.y4m"));
        let mut c = daemon();
        c.arg("--config")
            .arg(&config)
            .args(["--clock", "virtual", "--set"])
            .arg(format!("backend={backend}"))
            .arg("--set")
            .arg(format!("audio.source=file://{}", wav.display()))
            .arg("--set")
            .arg(format!("video.sink=y4m://{}", out.display()))
            .env_remove("NOTIFY_SOCKET");
        let f = common::run_with_timeout(c, 300);
        assert_eq!(f.code, Some(0), "{backend}: stderr: {}", f.stderr);
        std::fs::read(out).unwrap()
    };
    let cpu = run("cpu");
    let trt = run("tensorrt");
    assert_eq!(
        y4m_frames(&dir.path().join("tensorrt.y4m")).0,
        moda_edge::motion::frame_count(16_000 * 2 + 500) as u64
    );
    assert!(cpu == trt, "the two backends' frames differ");
    for onnx in ["models/moda", "models/faco", "avatar/renderer"] {
        let engine = dir.path().join(format!("{onnx}.engine"));
        assert!(engine.is_file(), "{} missing", engine.display());
        assert!(dir.path().join(format!("{onnx}.engine.json")).is_file());
    }
}

//! Running `moda-edge render` as a user would in tests: a demo set-up, the command line, one
//! error line, signals, and waiting with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::Finished;
use std::time::{Duration, Instant};

use super::{write_speechlike_wav, write_tiny_models};

/// Tiny models, the demo avatar at 256² and `seconds` of speech-like audio in `dir`.
pub fn setup(dir: &Path, seconds: usize) -> (PathBuf, PathBuf, PathBuf) {
    let models = dir.join("models");
    write_tiny_models(&models);
    let avatar = dir.join("avatar");
    moda_edge::face::avatar::write_synthetic(&models.join("renderer.onnx"), 256, &avatar).unwrap();
    let wav = dir.join("speech.wav");
    write_speechlike_wav(&wav, seconds * 16_000, 16_000, 1);
    (models, avatar, wav)
}

pub fn render_args<'a>(
    models: &'a Path,
    avatar: &'a Path,
    wav: &'a Path,
    out: &'a str,
) -> Vec<String> {
    [
        "render",
        wav.to_str().unwrap(),
        "--avatar",
        avatar.to_str().unwrap(),
        "--models",
        models.to_str().unwrap(),
        "--seed",
        "1",
        "-o",
        out,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `moda-edge ARGS` run to completion within `secs` seconds.
pub fn cli<S: AsRef<std::ffi::OsStr>>(args: &[S], secs: u64) -> Finished {
    let mut c = super::moda_edge_command();
    c.args(args);
    super::run_with_timeout(c, secs)
}

/// Files in `dir` (names).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Starts a render of 20 s (600 frames) of speech into `out` and waits until the temporary
/// output holds more than `bytes` bytes.
pub fn start_render(dir: &Path, out: &Path, bytes: u64) -> Child {
    let (models, avatar, wav) = setup(dir, 20);
    let mut child = Command::new(env!("CARGO_BIN_EXE_moda-edge"))
        .args(render_args(&models, &avatar, &wav, out.to_str().unwrap()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let name = out.file_name().unwrap().to_string_lossy();
    let temp = out.with_file_name(format!(".{name}.{}.partial", child.id()));
    let deadline = Instant::now() + Duration::from_secs(300);
    while std::fs::metadata(&temp).map_or(0, |m| m.len()) <= bytes {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("render ended ({status}) before it wrote {bytes} bytes");
        }
        assert!(Instant::now() < deadline, "no progress within 300 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

pub fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with a pid of our own child and a valid signal number touches no memory.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill {sig}");
}

/// Waits for `child` for at most 120 s.
pub fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the render did not end within 120 s of the signal");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// The frame count in "interrupted: wrote the N of M frames …".
pub fn written_frames(stdout: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("interrupted: wrote the "))
        .unwrap_or_else(|| panic!("no interruption line in {stdout:?}"));
    let words: Vec<&str> = line.split(' ').collect();
    (words[3].parse().unwrap(), words[5].parse().unwrap())
}

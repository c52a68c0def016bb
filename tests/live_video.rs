//! The live video outputs through `sink::open`, as the service opens them: `display://` with a
//! test sink end to end, V4L2 nodes that are missing or are not devices (one sentence each, no
//! panic), and offline `render` refusing live URIs in one line.
//!
//! This machine has no V4L2 device (no v4l2loopback, no vivid): writing to a real output node is
//! left to the device tests under qemu.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use moda_edge::clock::{FrameClock, Pts};
use moda_edge::sink::{self, Frame, SinkError, SinkErrorKind, SinkSettings, SinkUri, WriteOutcome};

mod common;

/// Runs `f` on its own thread and fails the test when it takes longer than `secs`.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        // The worker panicked: fail with its message.
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends before it ends"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("did not finish within {secs} s"),
    }
}

fn open_err(uri: &str, settings: &SinkSettings) -> SinkError {
    let uri = SinkUri::parse(uri).expect("a sink URI");
    sink::open(&uri, settings).err().expect("open must fail")
}

/// One sentence: one line, no cause repeated after a colon-separated chain.
fn assert_one_sentence(err: &SinkError, needles: &[&str]) {
    let msg = err.to_string();
    assert_eq!(msg.lines().count(), 1, "{msg}");
    for n in needles {
        assert!(msg.contains(n), "{n:?} missing in: {msg}");
    }
}

#[cfg(feature = "gstreamer")]
#[test]
fn display_with_fakesink_shows_frames_and_finishes() {
    sink::init_gstreamer().expect("GStreamer initialises");
    within(60, || {
        let (w, h) = (96u32, 64u32);
        let settings = SinkSettings::new(w, h).with_audio(16_000);
        let uri = SinkUri::parse("display://?sink=fakesink").expect("uri");
        let mut out = sink::open(&uri, &settings).expect("open display://?sink=fakesink");
        let clock = FrameClock::MODA;
        let origin = Pts::from_nanos(1_000_000_000);
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        let (mut written, mut dropped) = (0u64, 0u64);
        for k in 0..60u64 {
            rgb.iter_mut().for_each(|v| *v = (k * 4) as u8);
            assert!(sink::stamp::write(
                &mut rgb,
                w,
                h,
                k as u32,
                clock.first_sample(k)
            ));
            // Audio is not the display's: accepted and ignored.
            out.write_audio(&[0.0; 533], clock.frame_pts(origin, k))
                .expect("audio");
            match out
                .write_frame(&Frame::rgb(k, clock.frame_pts(origin, k), &rgb))
                .expect("write")
            {
                WriteOutcome::Written => written += 1,
                WriteOutcome::Dropped => dropped += 1,
                WriteOutcome::Late => panic!("the display sink does not judge lateness"),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // fakesink takes frames as fast as they come; a machine loaded by other builds may
        // starve its thread for a moment and drop a few, never most of them.
        assert_eq!(written + dropped, 60);
        assert!(written >= 30, "{written} written, {dropped} dropped");
        let err = out
            .write_frame(&Frame::rgb(60, origin, &rgb[1..]))
            .expect_err("a short frame");
        assert!(matches!(err, SinkError::FrameSize { .. }), "{err}");
        let summary = out.finish().expect("finish");
        assert_eq!(summary.frames, written);
        assert!((summary.video_seconds - written as f64 / 30.0).abs() < 1e-9);
        assert_eq!(summary.audio_seconds, None);
        assert_eq!(summary.path, None);
    });
}

#[cfg(feature = "gstreamer")]
#[test]
fn display_with_an_element_that_is_not_installed_is_one_sentence() {
    sink::init_gstreamer().expect("GStreamer initialises");
    let err = open_err(
        "display://?sink=nosuchvideosink",
        &SinkSettings::new(64, 64),
    );
    assert!(matches!(err, SinkError::UnknownElement { .. }), "{err}");
    assert_eq!(err.kind(), SinkErrorKind::Fatal);
    assert_one_sentence(
        &err,
        &["`nosuchvideosink`", "display://?sink=nosuchvideosink"],
    );
}

#[cfg(feature = "v4l2")]
#[test]
fn v4l2_missing_device_is_one_sentence() {
    let err = open_err(
        "v4l2:///dev/video-moda-edge-missing",
        &SinkSettings::new(64, 64),
    );
    assert!(matches!(err, SinkError::DeviceMissing { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "the V4L2 device /dev/video-moda-edge-missing does not exist; load v4l2loopback or \
         name an existing /dev/videoN"
    );
    assert_eq!(err.kind(), SinkErrorKind::RebuildStream);
    assert!(std::error::Error::source(&err).is_none());
}

#[cfg(feature = "v4l2")]
#[test]
fn v4l2_paths_that_are_not_devices_are_one_sentence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("video0");
    std::fs::write(&file, b"not a device").expect("write");
    let settings = SinkSettings::new(64, 64);
    for (path, what) in [
        (file.as_path(), "it is a regular file"),
        (dir.path(), "it is a directory"),
        // A character device that is not V4L2: VIDIOC_QUERYCAP fails with ENOTTY.
        (Path::new("/dev/null"), "it is not a V4L2 device"),
    ] {
        let err = open_err(&format!("v4l2://{}", path.display()), &settings);
        assert!(matches!(err, SinkError::NotVideoOutput { .. }), "{err}");
        assert_eq!(err.kind(), SinkErrorKind::Fatal);
        assert_one_sentence(
            &err,
            &[
                &format!("{} is not a V4L2 video output device", path.display()),
                what,
            ],
        );
    }
    assert_eq!(
        std::fs::read(&file).expect("still there"),
        b"not a device",
        "the file was not touched"
    );
}

#[test]
fn offline_render_refuses_live_outputs_in_one_line() {
    for uri in ["v4l2:///dev/video10", "display://"] {
        let args = [
            "render",
            "speech.wav",
            "--avatar",
            "no-avatar",
            "--models",
            "no-models",
            "--seed",
            "1",
            "-o",
            uri,
        ];
        let out = common::cli::cli(&args, 60);
        common::assert_one_line_error(
            &out,
            &[&format!("`{uri}`"), "live output", "offline render writes"],
        );
    }
}

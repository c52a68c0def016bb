//! The display pipeline with test sinks in place of a screen: frames arrive intact and on
//! time, a stalled display drops frames without blocking the writer, errors are reported.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;
use crate::sink::SinkErrorKind;

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

fn init() {
    crate::sink::init_gstreamer().expect("GStreamer initialises");
}

/// A frame whose every byte encodes its index and position.
fn frame(k: u64, w: usize, h: usize) -> Vec<u8> {
    (0..w * h * 3)
        .map(|i| (i as u64 * 7 + k * 31) as u8)
        .collect()
}

fn ms(n: u64) -> Pts {
    Pts::from_nanos(n * 1_000_000)
}

#[test]
fn the_platform_sink_is_chosen_by_what_is_installed_and_the_display() {
    let only = |names: &'static [&'static str]| move |n: &str| names.contains(&n);
    let pick = |forced, display, installed: &dyn Fn(&str) -> bool| {
        choose_sink("display://", forced, display, installed)
    };
    let all = only(&[
        "nv3dsink",
        "nveglglessink",
        "kmssink",
        "autovideosink",
        "fakesink",
    ]);
    assert_eq!(
        pick(Some("fakesink"), true, &all).expect("forced"),
        "fakesink"
    );
    assert_eq!(pick(None, false, &all).expect("jetson console"), "nv3dsink");
    assert_eq!(pick(None, true, &all).expect("jetson desktop"), "nv3dsink");
    let egl = only(&["nveglglessink", "kmssink", "autovideosink"]);
    assert_eq!(
        pick(None, true, &egl).expect("egl desktop"),
        "nveglglessink"
    );
    assert_eq!(pick(None, false, &egl).expect("console"), "kmssink");
    let desktop = only(&["kmssink", "autovideosink"]);
    assert_eq!(
        pick(None, true, &desktop).expect("desktop"),
        "autovideosink"
    );

    let none = only(&[]);
    let err = pick(None, false, &none).expect_err("nothing installed");
    assert_eq!(err.kind(), SinkErrorKind::Fatal);
    let msg = err.to_string();
    for part in ["kmssink", "nv3dsink", "gstreamer1.0-plugins-bad"] {
        assert!(msg.contains(part), "{msg} lacks {part}");
    }
    let msg = pick(None, true, &none)
        .expect_err("no desktop sink")
        .to_string();
    for part in [
        "autovideosink",
        "nveglglessink",
        "gstreamer1.0-plugins-good",
    ] {
        assert!(msg.contains(part), "{msg} lacks {part}");
    }
    let err = pick(Some("glimagesink"), true, &none).expect_err("forced, missing");
    assert!(matches!(err, SinkError::UnknownElement { .. }), "{err}");
    assert!(err.to_string().contains("`glimagesink`"), "{err}");
}

#[test]
fn frames_arrive_intact_with_their_times() {
    init();
    within(30, || {
        let (w, h) = (64usize, 48usize);
        let appsink = gst_app::AppSink::builder().build();
        let chain = [appsink.clone().upcast::<gst::Element>()];
        let settings = SinkSettings::new(w as u32, h as u32);
        let mut sink =
            DisplaySink::with_chain("display://?sink=appsink", &settings, &chain).expect("start");
        let origin = Pts::from_nanos(5_000_000_000);
        for k in 0..5u64 {
            let data = frame(k, w, h);
            let pts = origin.after(Duration::from_nanos(k * 33_333_333));
            let out = sink.write_frame(&Frame::rgb(k, pts, &data)).expect("write");
            assert_eq!(out, WriteOutcome::Written, "frame {k}");
            let sample = appsink
                .try_pull_sample(gst::ClockTime::from_seconds(5))
                .unwrap_or_else(|| panic!("frame {k} reached the sink"));
            let buffer = sample.buffer().expect("buffer");
            assert_eq!(
                buffer.pts(),
                Some(gst::ClockTime::from_nseconds(k * 33_333_333))
            );
            let map = buffer.map_readable().expect("readable");
            assert_eq!(map.as_slice(), data.as_slice(), "frame {k} content");
        }
        let summary = Box::new(sink).finish().expect("finish");
        assert_eq!(summary.frames, 5);
        assert_eq!(summary.path, None);
    });
}

#[test]
fn a_stalled_display_drops_frames_without_blocking() {
    init();
    within(30, || {
        let (w, h) = (32usize, 32usize);
        // Holds one sample and then blocks its streaming thread: a display that hangs.
        let appsink = gst_app::AppSink::builder()
            .max_buffers(1)
            .drop(false)
            .build();
        let chain = [appsink.upcast::<gst::Element>()];
        let mut sink = DisplaySink::with_chain("display://", &SinkSettings::new(32, 32), &chain)
            .expect("start");
        let data = frame(0, w, h);
        let (mut written, mut dropped, mut slowest) = (0, 0, Duration::ZERO);
        for k in 0..40u64 {
            let start = Instant::now();
            match sink
                .write_frame(&Frame::rgb(k, ms(33 * k), &data))
                .expect("write")
            {
                WriteOutcome::Written => written += 1,
                WriteOutcome::Dropped => dropped += 1,
                WriteOutcome::Late => panic!("the display sink does not judge lateness"),
            }
            slowest = slowest.max(start.elapsed());
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(dropped >= 30, "{written} written, {dropped} dropped");
        assert!(
            (1..=2 + POOL_BUFFERS).contains(&written),
            "{written} written"
        );
        assert_eq!(sink.dropped, dropped as u64);
        assert!(
            slowest < Duration::from_millis(250),
            "a write took {slowest:?}"
        );
        // Stopping a stalled pipeline must not hang either.
        drop(sink);
    });
}

#[test]
fn a_sink_that_cannot_start_is_one_error() {
    init();
    let fakesink = gst::ElementFactory::make("fakesink")
        .property_from_str("state-error", "ready-to-paused")
        .build()
        .expect("fakesink");
    let err = DisplaySink::with_chain(
        "display://?sink=fakesink",
        &SinkSettings::new(8, 8),
        &[fakesink],
    )
    .err()
    .expect("must fail");
    assert!(matches!(err, SinkError::Live { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("the GStreamer pipeline showing display://?sink=fakesink failed"),
        "{err}"
    );
}

#[test]
fn an_element_error_mid_stream_asks_for_a_rebuild() {
    init();
    within(30, || {
        let identity = gst::ElementFactory::make("identity")
            .property("error-after", 3i32)
            .build()
            .expect("identity");
        let fakesink = gst::ElementFactory::make("fakesink")
            .build()
            .expect("fakesink");
        let mut sink = DisplaySink::with_chain(
            "display://",
            &SinkSettings::new(8, 8),
            &[identity, fakesink],
        )
        .expect("start");
        let data = [0u8; 8 * 8 * 3];
        let err = (0..200u64)
            .find_map(|k| {
                std::thread::sleep(Duration::from_millis(5));
                sink.write_frame(&Frame::rgb(k, ms(33 * k), &data)).err()
            })
            .expect("the error reaches the writer");
        assert!(matches!(err, SinkError::Live { .. }), "{err}");
        assert_eq!(err.kind(), SinkErrorKind::RebuildStream);
    });
}

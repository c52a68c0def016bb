//! The mp4 sink, checked by decoding its file again with GStreamer: stream count, decoded
//! frames (count, timing, content), audio duration and pitch.
#![cfg(feature = "gstreamer")]

use std::path::Path;
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use moda_edge::clock::{FrameClock, Pts};
use moda_edge::sink::{self, Frame, FrameSink, SinkError, SinkSettings, SinkUri, WriteOutcome};

mod common;

const W: u32 = 256;
const H: u32 = 256;
const FRAMES: u64 = 45;
const RATE: u32 = 16_000;
const SQUARE: usize = 32;
/// Where the test tone starts, in seconds.
const ONSET: f64 = 0.5;

/// Top-left corner of the white square in frame `k`.
fn square_at(k: u64) -> (usize, usize) {
    (10 + 4 * k as usize, 20 + 2 * k as usize)
}

/// A gradient background (R = x, G = y, B = 64) with a white square moving down-right.
fn pattern(k: u64) -> Vec<u8> {
    let (sx, sy) = square_at(k);
    let mut rgb = vec![0u8; (W * H * 3) as usize];
    for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
        let (x, y) = (i % W as usize, i / W as usize);
        let inside = (sx..sx + SQUARE).contains(&x) && (sy..sy + SQUARE).contains(&y);
        px.copy_from_slice(&if inside {
            [255, 255, 255]
        } else {
            [x as u8, y as u8, 64]
        });
    }
    rgb
}

/// `seconds` of audio: silence until `onset` s, then a 440 Hz tone of amplitude 0.5.
fn tone(seconds: f64, onset: f64) -> Vec<f32> {
    let n = (seconds * f64::from(RATE)).round() as usize;
    let start = (onset * f64::from(RATE)).round() as usize;
    let w = 2.0 * std::f64::consts::PI * 440.0 / f64::from(RATE);
    (0..n)
        .map(|i| {
            if i < start {
                0.0
            } else {
                (0.5 * (w * i as f64).sin()) as f32
            }
        })
        .collect()
}

/// Seconds to the first sample louder than 0.1.
fn onset_s(samples: &[f32], rate: f64) -> f64 {
    samples
        .iter()
        .position(|s| s.abs() > 0.1)
        .expect("the tone is audible") as f64
        / rate
}

#[derive(Default)]
struct Decoded {
    /// Caps names of the streams decodebin exposed.
    streams: Vec<String>,
    /// (pts ns, duration ns, RGB bytes) per decoded frame.
    frames: Vec<(u64, u64, Vec<u8>)>,
    /// (first pts ns, samples, rate) of the audio, mono F32.
    audio: Vec<f32>,
    audio_pts: Option<u64>,
    audio_rate: u32,
}

/// Decodes every stream of `path` to RGB frames and mono F32 samples.
fn decode(path: &Path) -> Decoded {
    let out = Arc::new(Mutex::new(Decoded::default()));
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", path.to_str().expect("utf-8 path"))
        .build()
        .expect("filesrc");
    let decodebin = gst::ElementFactory::make("decodebin")
        .build()
        .expect("decodebin");
    pipeline.add_many([&src, &decodebin]).expect("add");
    src.link(&decodebin).expect("link");
    let weak = pipeline.downgrade();
    let shared = out.clone();
    decodebin.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().expect("decoded pad has caps");
        let name = caps.structure(0).expect("structure").name().to_string();
        shared.lock().expect("lock").streams.push(name.clone());
        let video = name.starts_with("video/");
        let (convert, want) = if video {
            (
                "videoconvert",
                gst::Caps::builder("video/x-raw")
                    .field("format", "RGB")
                    .build(),
            )
        } else {
            let caps = gst::Caps::builder("audio/x-raw")
                .field("format", "F32LE")
                .field("channels", 1i32)
                .field("layout", "interleaved")
                .build();
            ("audioconvert", caps)
        };
        let convert = gst::ElementFactory::make(convert).build().expect("convert");
        let appsink = gst_app::AppSink::builder().caps(&want).sync(false).build();
        let shared = shared.clone();
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    let pts = buffer.pts().map(|t| t.nseconds()).unwrap_or(u64::MAX);
                    let mut d = shared.lock().expect("lock");
                    if video {
                        let dur = buffer.duration().map(|t| t.nseconds()).unwrap_or(0);
                        d.frames.push((pts, dur, map.as_slice().to_vec()));
                    } else {
                        let caps = sample.caps().ok_or(gst::FlowError::Error)?;
                        let s = caps.structure(0).ok_or(gst::FlowError::Error)?;
                        d.audio_rate =
                            s.get::<i32>("rate").map_err(|_| gst::FlowError::Error)? as u32;
                        d.audio_pts.get_or_insert(pts);
                        d.audio.extend(
                            map.chunks_exact(4)
                                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                        );
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        let sink = appsink.upcast::<gst::Element>();
        pipeline.add_many([&convert, &sink]).expect("add branch");
        convert.link(&sink).expect("link branch");
        convert.sync_state_with_parent().expect("sync");
        sink.sync_state_with_parent().expect("sync");
        pad.link(&convert.static_pad("sink").expect("sink pad"))
            .expect("link decoded pad");
    });
    pipeline.set_state(gst::State::Playing).expect("play");
    let bus = pipeline.bus().expect("bus");
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("decoding finishes within 60 s");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!(
            "decoding {} failed: {} ({:?})",
            path.display(),
            e.error(),
            e.debug()
        );
    }
    pipeline.set_state(gst::State::Null).expect("stop");
    drop(pipeline);
    let decoded = std::mem::take(&mut *out.lock().expect("lock"));
    decoded
}

/// Centre of the pixels brighter than 200 in every channel.
fn bright_centroid(rgb: &[u8]) -> (f64, f64) {
    let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        if px.iter().all(|&v| v > 200) {
            sx += (i % W as usize) as f64;
            sy += (i / W as usize) as f64;
            n += 1.0;
        }
    }
    assert!(
        n > 0.5 * (SQUARE * SQUARE) as f64,
        "the square is missing ({n} bright pixels)"
    );
    (sx / n, sy / n)
}

/// Settings for W×H frames with 16 kHz audio when `audio` is given.
fn settings(audio: bool) -> SinkSettings {
    let s = SinkSettings::new(W, H);
    if audio {
        s.with_audio(16_000)
    } else {
        s
    }
}

/// Frame `k` of the test pattern, stamped at k/30 s.
fn write(out: &mut dyn FrameSink, k: u64) {
    let rgb = pattern(k);
    let pts = FrameClock::MODA.frame_pts(Pts::ZERO, k);
    let outcome = out
        .write_frame(&Frame::rgb(k, pts, &rgb))
        .expect("write frame");
    assert_eq!(outcome, WriteOutcome::Written);
}

/// Writes `frames` frames, handing over the audio in 0.1 s pieces half a second ahead of the
/// frame being written, as `render` does.
fn write_mp4(path: &Path, frames: u64, audio: Option<&[f32]>) -> sink::SinkSummary {
    sink::init_gstreamer().expect("GStreamer initialises");
    let uri = SinkUri::parse(&format!("file://{}", path.display())).expect("uri");
    let mut out = sink::open(&uri, &settings(audio.is_some())).expect("open mp4 sink");
    let clock = FrameClock::MODA;
    let mut sent = 0usize;
    let mut send = |out: &mut Box<dyn FrameSink>, until: usize| {
        let Some(a) = audio else { return };
        while sent < until.min(a.len()) {
            let end = (sent + 1600).min(until).min(a.len());
            out.write_audio(&a[sent..end], clock.sample_pts(Pts::ZERO, sent as u64))
                .expect("write audio");
            sent = end;
        }
    };
    for k in 0..frames {
        send(&mut out, clock.first_sample(k + 1) as usize + 8000);
        write(out.as_mut(), k);
    }
    send(&mut out, usize::MAX);
    out.finish().expect("finish mp4")
}

#[test]
fn mp4_with_speech_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.mp4");
    let speech = tone(1.5, ONSET);
    let summary = write_mp4(&path, FRAMES, Some(&speech));
    assert_eq!(summary.frames, FRAMES);
    assert_eq!(summary.audio_seconds, Some(1.5));

    let d = decode(&path);
    let videos = d.streams.iter().filter(|s| s.starts_with("video/")).count();
    let audios = d.streams.iter().filter(|s| s.starts_with("audio/")).count();
    assert_eq!((videos, audios), (1, 1), "streams: {:?}", d.streams);

    // Video: 45 frames at k/30 s, lasting 1.5 s, showing the square where it was drawn.
    assert_eq!(d.frames.len() as u64, FRAMES);
    let frame_ns = 1e9 / 30.0;
    for (k, (pts, _, rgb)) in d.frames.iter().enumerate() {
        let want = k as f64 * frame_ns;
        assert!(
            (*pts as f64 - want).abs() < 1e6,
            "frame {k} pts {pts} ns, want {want}"
        );
        let (cx, cy) = bright_centroid(rgb);
        let (sx, sy) = square_at(k as u64);
        let half = (SQUARE as f64 - 1.0) / 2.0;
        assert!(
            (cx - sx as f64 - half).abs() < 1.0 && (cy - sy as f64 - half).abs() < 1.0,
            "frame {k}: square centre ({cx:.1}, {cy:.1}), drawn at ({sx}, {sy})"
        );
        let src = pattern(k as u64);
        let mad = rgb
            .iter()
            .zip(&src)
            .map(|(&a, &b)| a.abs_diff(b) as f64)
            .sum::<f64>()
            / src.len() as f64;
        assert!(
            mad < 4.0,
            "frame {k}: mean absolute difference {mad:.2} after H.264"
        );
    }
    let (last_pts, last_dur, _) = d.frames.last().expect("frames");
    let video_s = (last_pts + last_dur) as f64 / 1e9;
    assert!(
        (video_s - 1.5).abs() <= 1.0 / 30.0 + 1e-6,
        "video lasts {video_s} s"
    );

    // Audio: starts at 0, lasts 1.5 s, the tone starts in sync with the picture, at 440 Hz.
    let rate = f64::from(d.audio_rate);
    let start = d.audio_pts.expect("audio decoded") as f64 / 1e9;
    let audio_s = d.audio.len() as f64 / rate;
    let onset = onset_s(&d.audio, rate);
    eprintln!(
        "audio: starts {start:.4} s, {} samples at {rate} Hz = {audio_s:.4} s, onset {onset:.4} s",
        d.audio.len()
    );
    assert!(
        (onset - ONSET).abs() < 0.005,
        "the tone starts at {onset} s, in the input at {ONSET} s"
    );
    assert!(start.abs() < 0.05, "audio starts at {start} s");
    assert!((audio_s - 1.5).abs() <= 0.05, "audio lasts {audio_s} s");
    let mid = &d.audio[d.audio.len() / 2..d.audio.len() * 7 / 8];
    let crossings = mid
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count() as f64;
    let hz = crossings / 2.0 / (mid.len() as f64 / rate);
    assert!((hz - 440.0).abs() < 5.0, "decoded tone is {hz:.1} Hz");
}

#[test]
fn mp4_without_audio_has_only_video() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("silent.mp4");
    let summary = write_mp4(&path, 10, None);
    assert_eq!((summary.frames, summary.audio_seconds), (10, None));
    let d = decode(&path);
    assert_eq!(d.streams.len(), 1, "streams: {:?}", d.streams);
    assert_eq!(d.frames.len(), 10);
}

#[test]
fn missing_directory_is_a_clear_error() {
    sink::init_gstreamer().expect("GStreamer initialises");
    let uri = SinkUri::parse("file:///nonexistent-dir/x.mp4").expect("uri");
    let err = sink::open(&uri, &settings(true)).err().expect("must fail");
    assert!(matches!(err, SinkError::Create { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent-dir/x.mp4") && msg.contains("cannot create"),
        "{msg}"
    );
}

#[test]
fn odd_sizes_and_bad_uris_are_refused() {
    sink::init_gstreamer().expect("GStreamer initialises");
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = SinkUri::File(dir.path().join("odd.mp4"));
    let err = sink::open(&uri, &SinkSettings::new(255, 256))
        .err()
        .expect("odd width");
    assert!(matches!(err, SinkError::Settings { .. }), "{err}");
    let err = SinkUri::parse("out.mkv").expect_err("mkv is not supported");
    assert!(err.to_string().contains("file://PATH.mp4"), "{err}");
}

#[test]
fn audio_longer_than_video_is_kept_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("long_audio.mp4");
    let speech = tone(1.5, ONSET);
    let summary = write_mp4(&path, 15, Some(&speech));
    assert_eq!((summary.frames, summary.audio_seconds), (15, Some(1.5)));
    let d = decode(&path);
    assert_eq!(d.frames.len(), 15);
    let audio_s = d.audio.len() as f64 / f64::from(d.audio_rate);
    assert!((audio_s - 1.5).abs() <= 0.05, "audio lasts {audio_s} s");
}

#[test]
fn dropping_an_unfinished_sink_does_not_hang_and_leaves_the_old_file() {
    sink::init_gstreamer().expect("GStreamer initialises");
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("dropped.mp4");
    std::fs::write(&target, b"the previous video").unwrap();
    let uri = SinkUri::File(target.clone());
    let speech = tone(1.0, 0.0);
    let mut out = sink::open(&uri, &settings(true)).expect("open");
    out.write_audio(&speech, Pts::ZERO).expect("audio");
    for k in 0..3 {
        write(out.as_mut(), k);
    }
    drop(out);
    assert_eq!(std::fs::read(&target).unwrap(), b"the previous video");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "the temporary file is removed: {left:?}");
}

/// `render` end to end into an mp4: 208 frames of 30 fps video and the whole speech as audio.
#[test]
fn render_writes_an_mp4_with_the_speech_in_sync() {
    use moda_edge::motion::Noise;
    use moda_edge::offline::{render, Layout, Models, RenderOptions};
    sink::init_gstreamer().expect("GStreamer initialises");
    let dir = tempfile::tempdir().unwrap();
    let (avatar_dir, models_dir) = common::golden_render_fixture(dir.path());
    let out = dir.path().join("render.mp4");
    let opts = RenderOptions {
        noise: Noise::Seeded(3),
        layout: Layout::Frame,
        dump: None,
        dump_frames: vec![],
        stop: None,
    };
    let summary = render(
        &moda_edge::backend::tract::TractBackend::default(),
        &Models::load(&models_dir).unwrap(),
        &moda_edge::face::avatar::Avatar::load(&avatar_dir).unwrap(),
        &common::golden("e2e/speech.wav"),
        &SinkUri::File(out.clone()),
        &opts,
        |_, _| {},
    )
    .unwrap();
    assert_eq!(summary.frames, 208);
    let d = decode(&out);
    assert_eq!(
        d.streams.iter().filter(|s| s.starts_with("video/")).count(),
        1,
        "{:?}",
        d.streams
    );
    assert_eq!(
        d.streams.iter().filter(|s| s.starts_with("audio/")).count(),
        1,
        "{:?}",
        d.streams
    );
    assert_eq!(d.frames.len(), 208, "decoded video frames");
    let (last_pts, last_dur, _) = d.frames.last().unwrap();
    let video_s = (last_pts + last_dur) as f64 / 1e9;
    assert!(
        (video_s - 208.0 / 30.0).abs() < 1.0 / 30.0,
        "video duration {video_s}"
    );
    let audio_s = d.audio.len() as f64 / d.audio_rate as f64;
    let speech_s = 111_449.0 / 16_000.0;
    assert!(
        (audio_s - speech_s).abs() < 0.05,
        "audio duration {audio_s} s, speech {speech_s} s"
    );
    assert!(
        d.audio_pts.unwrap_or(u64::MAX) < 1_000_000,
        "audio starts at 0"
    );
}

/// SIGINT during `render` into an mp4: the file is finalized (EOS through the pipeline) and
/// holds exactly the frames the summary line reports.
#[test]
fn sigint_finalizes_a_playable_mp4_with_the_frames_so_far() {
    use common::cli::{finish, listing, signal, start_render, written_frames};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("talk.mp4");
    let child = start_render(dir.path(), &out, 40_000);
    signal(&child, libc::SIGINT);
    let o = finish(child);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(130),
        "{stdout} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (n, total) = written_frames(&stdout);
    assert!(n > 0 && n < total, "{n} of {total}");
    sink::init_gstreamer().expect("GStreamer initialises");
    let d = decode(&out);
    assert_eq!(d.frames.len() as u64, n, "decoded frames");
    assert_eq!(
        listing(dir.path()),
        ["avatar", "models", "speech.wav", "talk.mp4"]
    );
}

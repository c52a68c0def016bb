//! URI parsing, settings validation and the null sink.

use super::*;

fn parse(s: &str) -> SinkUri {
    SinkUri::parse(s).unwrap_or_else(|e| panic!("{s} should parse: {e}"))
}

#[test]
fn accepted_forms() {
    assert_eq!(parse("y4m://out.y4m"), SinkUri::Y4m("out.y4m".into()));
    assert_eq!(parse("y4m:///tmp/a/out"), SinkUri::Y4m("/tmp/a/out".into()));
    assert_eq!(parse("file://out.mp4"), SinkUri::File("out.mp4".into()));
    assert_eq!(
        parse("file:///abs/dir/x.MP4"),
        SinkUri::File("/abs/dir/x.MP4".into())
    );
    assert_eq!(parse("file://clip.y4m"), SinkUri::Y4m("clip.y4m".into()));
    assert_eq!(parse("out.mp4"), SinkUri::File("out.mp4".into()));
    assert_eq!(
        parse("dir/sub/out.y4m"),
        SinkUri::Y4m("dir/sub/out.y4m".into())
    );
    assert_eq!(parse("null://"), SinkUri::Null);
    assert_eq!(parse("NULL://"), SinkUri::Null);
}

#[test]
fn display_round_trips() {
    for s in [
        "y4m://out.y4m",
        "file://out.mp4",
        "file:///abs/x.mp4",
        "null://",
    ] {
        assert_eq!(parse(s).to_string(), s);
        assert_eq!(parse(&parse(s).to_string()), parse(s));
    }
}

#[test]
fn rejected_forms_list_the_accepted_ones() {
    for s in [
        "",
        "out.avi",
        "out",
        ".mp4",
        "file://out.avi",
        "y4m://",
        "null://x",
        "rtsp://h/x",
        "mp4",
    ] {
        let err = SinkUri::parse(s).expect_err(s);
        assert!(matches!(err, SinkError::BadUri { .. }), "{s}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("`{s}`")), "{msg}");
        for form in [
            "y4m://",
            "file://",
            ".mp4",
            "null://",
            "v4l2://",
            "display://",
        ] {
            assert!(msg.contains(form), "{msg} lacks {form}");
        }
        assert_eq!(err.kind(), SinkErrorKind::Fatal);
    }
}

#[test]
fn live_forms() {
    assert_eq!(
        parse("v4l2:///dev/video10"),
        SinkUri::V4l2("/dev/video10".into())
    );
    assert_eq!(
        parse("V4L2:///dev/video0"),
        SinkUri::V4l2("/dev/video0".into())
    );
    assert_eq!(parse("display://"), SinkUri::Display { sink: None });
    assert_eq!(
        parse("display://?sink=fakesink"),
        SinkUri::Display {
            sink: Some("fakesink".into())
        }
    );
    for s in [
        "v4l2:///dev/video10",
        "display://",
        "display://?sink=nv3dsink",
        "display://?sink=gtk-sink_2",
    ] {
        assert_eq!(parse(s).to_string(), s);
        assert!(parse(s).is_live(), "{s}");
        assert_eq!(parse(s).path(), None, "{s} writes no file");
    }
    for s in ["y4m://a.y4m", "file://a.mp4", "a.mp4", "null://"] {
        assert!(!parse(s).is_live(), "{s}");
    }
}

#[test]
fn malformed_live_forms_are_bad_uris() {
    for s in [
        "v4l2://",
        "v4l2://video0",
        "v4l2://dev/video0",
        "v4l2:///dev/video0?fmt=yuyv",
        "v4l2:///dev/vid\0eo0",
        "display://0",
        "display://?sink=",
        "display://?sink=a b",
        "display://?sink=x!y",
        "display://?foo=bar",
        "display://?sink=fakesink&x=1",
    ] {
        let err = SinkUri::parse(s).expect_err(s);
        assert!(matches!(err, SinkError::BadUri { .. }), "{s}: {err}");
        assert!(err.to_string().contains("v4l2:///dev/videoN"), "{err}");
    }
}

#[test]
fn offline_render_refuses_live_outputs_in_one_sentence() {
    for s in [
        "v4l2:///dev/video10",
        "display://",
        "display://?sink=fakesink",
    ] {
        let err = SinkUri::parse_offline(s).expect_err(s);
        assert!(matches!(err, SinkError::NotAvailable { .. }), "{s}: {err}");
        assert_eq!(
            err.to_string(),
            format!(
                "sink `{s}` is a live output of the service moda-edged; offline render writes \
                 y4m://PATH.y4m, file://PATH.mp4, PATH.mp4, PATH.y4m or null://"
            )
        );
        assert_eq!(err.kind(), SinkErrorKind::Fatal);
    }
    assert_eq!(
        SinkUri::parse_offline("out.y4m").expect("offline"),
        parse("out.y4m")
    );
    let err = SinkUri::parse_offline("out.avi").expect_err("not a sink");
    assert_eq!(
        err.to_string(),
        format!("`out.avi` is not a sink URI; use {OFFLINE_FORMS}")
    );
}

#[test]
fn settings_are_validated_at_open() {
    let bad = [
        SinkSettings::new(0, 10),
        SinkSettings::new(10, 20_000),
        SinkSettings {
            fps: 0,
            ..SinkSettings::new(8, 8)
        },
        SinkSettings::new(8, 8).with_audio(0),
        SinkSettings::new(8, 8).with_audio(200_000),
    ];
    for s in &bad {
        let err = open(&SinkUri::Null, s)
            .err()
            .expect("invalid settings must fail");
        assert!(matches!(err, SinkError::Settings { .. }), "{err}");
    }
}

#[test]
fn null_sink_counts_frames() {
    let audio = vec![0.0f32; 12_000];
    let settings = SinkSettings::new(4, 2).with_audio(16_000);
    let mut sink = open(&SinkUri::Null, &settings).expect("null sink");
    sink.write_audio(&audio, Pts::ZERO).expect("audio");
    sink.write_audio(&audio, Pts::from_nanos(750_000_000))
        .expect("audio");
    for k in 0..45 {
        let out = sink
            .write_frame(&Frame::rgb(k, Pts::ZERO, &[7; 24]))
            .expect("24-byte frame");
        assert_eq!(out, WriteOutcome::Written);
    }
    let err = sink
        .write_frame(&Frame::rgb(45, Pts::ZERO, &[7; 25]))
        .expect_err("25 bytes is not 4x2x3");
    assert!(
        matches!(
            err,
            SinkError::FrameSize {
                index: 45,
                got: 25,
                expected: 24,
                ..
            }
        ),
        "{err}"
    );
    let summary = sink.finish().expect("finish");
    assert_eq!(summary.frames, 45);
    assert!((summary.video_seconds - 1.5).abs() < 1e-12);
    assert_eq!(summary.audio_seconds, Some(1.5));
    assert_eq!(summary.path, None);
}

#[test]
fn y4m_via_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.y4m");
    let uri = parse(&format!("y4m://{}", path.display()));
    let mut sink = open(&uri, &SinkSettings::new(2, 2)).expect("open y4m");
    sink.write_frame(&Frame::rgb(0, Pts::ZERO, &[0; 12]))
        .expect("frame");
    let summary = sink.finish().expect("finish");
    assert_eq!(summary.frames, 1);
    assert_eq!(summary.path.as_deref(), Some(path.as_path()));
    let len = std::fs::metadata(&path).expect("written").len() as usize;
    assert_eq!(len, y4m::header(2, 2, 30).len() + 6 + 12);
}

//! `moda-edge render` and `infer` against bad models, bad options and interruption: one error
//! line and exit code 1 (no panic, no hang), nothing left behind, an earlier output intact; a
//! signal finalizes the frames rendered so far, a second one aborts and removes the partial
//! file. Every process runs under a timeout.

mod common;

use std::path::Path;

use common::cli::{cli, finish, listing, render_args, setup, signal, start_render, written_frames};
use common::{assert_one_line_error, write_tiny_models};
use moda_edge::model::onnx::{a_int, Dim, Graph};

#[test]
fn option_mistakes_get_one_line_and_leave_the_old_output() {
    let dir = tempfile::tempdir().unwrap();
    let (models, avatar, wav) = setup(dir.path(), 2);
    let outdir = dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let target = outdir.join("video.y4m");
    std::fs::write(&target, b"the previous video").unwrap();
    let out = target.to_str().unwrap();

    let mut args = render_args(&models, &avatar, &wav, out);
    args.extend(["--threads".into(), "10000".into()]);
    let o = cli(&args, 60);
    assert_one_line_error(&o, &["--threads 10000", "1 to 64"]);

    // 2 s give 59 frames (0..=58): frame 999 does not exist. Found after the motion stage,
    // before any frame is written.
    let mut args = render_args(&models, &avatar, &wav, out);
    args.extend([
        "--dump".into(),
        dir.path().join("dump").to_str().unwrap().into(),
    ]);
    args.extend(["--dump-frames".into(), "0,999".into()]);
    let o = cli(&args, 120);
    assert_one_line_error(&o, &["--dump-frames 999", "59 frames"]);
    assert!(!dir.path().join("dump").exists(), "no dump of a failed run");

    assert_eq!(std::fs::read(&target).unwrap(), b"the previous video");
    assert_eq!(listing(&outdir), ["video.y4m"]);
}

/// A FaCo graph whose `mesh` output does not follow the frames of its inputs: always 5 frames.
fn faco_with_five_frames() -> Vec<u8> {
    let mut g = Graph::new();
    let lip = g.input("lip", &[Dim::Fixed(1), Dim::Sym("F"), Dim::Fixed(120)]);
    g.input("eye", &[Dim::Fixed(1), Dim::Sym("F"), Dim::Fixed(180)]);
    g.input("template", &[Dim::Fixed(1), Dim::Fixed(1434)]);
    let zeros = g.init_f32("zeros", &[1, 5, 1434], vec![0.0; 5 * 1434]);
    let sum = g.op("ReduceSum", &[&lip], vec![a_int("keepdims", 0)]);
    let zero = g.scalar(0.0);
    let none = g.mul(&sum, &zero);
    let mesh = g.add(&zeros, &none);
    g.output(
        &mesh,
        "mesh",
        &[Dim::Fixed(1), Dim::Fixed(5), Dim::Fixed(1434)],
    );
    let meta = [("moda.kind".to_string(), "faco".to_string())];
    moda_edge::model::onnx::encode(&g.into_model("faco", &meta))
}

/// A renderer whose `image` is its `mesh_image` input passed through.
fn renderer_passthrough() -> Vec<u8> {
    let mut g = Graph::new();
    let s = [
        Dim::Fixed(1),
        Dim::Fixed(3),
        Dim::Fixed(256),
        Dim::Fixed(256),
    ];
    let mesh = g.input("mesh_image", &s);
    g.input("reference", &s);
    g.input("time_code", &[Dim::Fixed(1), Dim::Fixed(13)]);
    g.output(&mesh, "image", &s);
    let meta = [("moda.kind".to_string(), "renderer".to_string())];
    moda_edge::model::onnx::encode(&g.into_model("renderer", &meta))
}

#[test]
fn models_that_break_a_stage_are_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (models, avatar, wav) = setup(dir.path(), 2);
    let out = dir.path().join("x.y4m");
    let out = out.to_str().unwrap();

    std::fs::write(models.join("faco.onnx"), faco_with_five_frames()).unwrap();
    let o = cli(&render_args(&models, &avatar, &wav, out), 120);
    assert_one_line_error(
        &o,
        &[
            "faco.onnx",
            "output `mesh` has shape [1, 5, 1434], expected [1, 59, 1434]",
        ],
    );
    write_tiny_models(&models);

    std::fs::write(avatar.join("renderer.onnx"), renderer_passthrough()).unwrap();
    let o = cli(&render_args(&models, &avatar, &wav, out), 120);
    assert_one_line_error(
        &o,
        &[
            "renderer.onnx",
            "output `image` is a graph input passed through unchanged",
        ],
    );
    assert!(!Path::new(out).exists());
    assert_eq!(listing(dir.path()), ["avatar", "models", "speech.wav"]);
}

#[test]
fn infer_refuses_short_waveforms_and_repeated_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    write_tiny_models(&models);
    let npy = |name: &str, shape: Vec<usize>| {
        let path = dir.path().join(format!("{name}.npy"));
        let n = shape.iter().product();
        let t = moda_edge::model::Tensor::f32(shape, vec![0.1; n]);
        moda_edge::util::npy::write(&path, &t).unwrap();
        format!("{name}={}", path.display())
    };
    let wave = npy("waveform", vec![1, 399]);
    let template = npy("template", vec![1, 1434]);
    let noise = npy("noise", vec![1, 2, 128]);
    let moda = models.join("moda.onnx");
    let outdir = dir.path().join("outs");
    let run = |inputs: &[&str]| {
        let mut args: Vec<String> = vec![
            "infer".into(),
            moda.to_str().unwrap().into(),
            "-o".into(),
            outdir.to_str().unwrap().into(),
        ];
        for i in inputs {
            args.extend(["-i".to_string(), i.to_string()]);
        }
        cli(&args, 60)
    };
    let o = run(&[&wave, &template, &noise]);
    assert_one_line_error(
        &o,
        &["moda.onnx", "`waveform` has 399 samples", "at least 400"],
    );
    let o = run(&[&template, &template, &noise]);
    assert_one_line_error(&o, &["--input template= is given twice"]);
    assert!(!outdir.exists());
}

#[test]
fn sigint_finalizes_the_y4m_with_every_frame_rendered_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("talk.y4m");
    let header = moda_edge::sink::y4m::header(256, 256, 30).len() as u64;
    let frame = 6 + 256 * 256 * 3;
    let child = start_render(dir.path(), &out, header + 10 * frame);
    signal(&child, libc::SIGINT);
    let o = finish(child);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(130),
        "{stdout} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    let (n, total) = written_frames(&stdout);
    assert_eq!(total, 600, "20 s of audio");
    assert!((10..total).contains(&n), "{n} frames");
    // Complete to its last frame: the header and exactly n whole frames.
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes.len() as u64, header + n * frame);
    assert_eq!(
        bytes.windows(6).filter(|w| w == b"FRAME\n").count() as u64,
        n
    );
    assert_eq!(
        listing(dir.path()),
        ["avatar", "models", "speech.wav", "talk.y4m"]
    );
}

#[test]
fn a_second_signal_aborts_and_removes_the_partial_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("talk.y4m");
    std::fs::write(&out, b"the previous video").unwrap();
    let header = moda_edge::sink::y4m::header(256, 256, 30).len() as u64;
    let child = start_render(dir.path(), &out, header);
    // Two different signals, microseconds apart: standard signals of one kind do not queue.
    signal(&child, libc::SIGINT);
    signal(&child, libc::SIGTERM);
    let o = finish(child);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let code = o.status.code().unwrap_or(0);
    assert!(
        code == 128 + libc::SIGINT || code == 128 + libc::SIGTERM,
        "exit {code}: {stderr}"
    );
    assert!(
        stderr.contains("aborted; the partial output was removed"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous video");
    assert_eq!(
        listing(dir.path()),
        ["avatar", "models", "speech.wav", "talk.y4m"]
    );
}

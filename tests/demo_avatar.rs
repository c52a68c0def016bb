//! The fresh-clone demo without `../shared`: seeded `models init` networks, the synthetic demo
//! avatar, and a recording made here, rendered end to end.

mod common;

use common::{write_speechlike_wav, write_tiny_models};
use moda_edge::backend::tract::TractBackend;
use moda_edge::face::avatar::{write_synthetic, Avatar};
use moda_edge::offline::{render, Layout, Models, Noise, RenderOptions};
use moda_edge::sink::SinkUri;

#[test]
fn demo_avatar_renders_end_to_end_from_nothing_but_the_crate() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    write_tiny_models(&models);
    let avatar_dir = dir.path().join("avatar");
    let config = write_synthetic(&models.join("renderer.onnx"), 256, &avatar_dir).unwrap();
    assert_eq!(config.renderer_size, 256);
    let avatar = Avatar::load(&avatar_dir).unwrap();
    assert_eq!(avatar.template.len(), 478 * 3);
    assert_eq!(avatar.reference.len(), 512 * 512 * 3);

    let wav = dir.path().join("speech.wav");
    // 1.5 s at 22.05 kHz stereo, so the demo path also resamples and mixes down.
    write_speechlike_wav(&wav, 33_075, 22_050, 2);
    let out = dir.path().join("demo.y4m");
    let summary = render(
        &TractBackend::default(),
        &Models::load(&models).unwrap(),
        &avatar,
        &wav,
        &SinkUri::Y4m(out.clone()),
        &RenderOptions {
            noise: Noise::Seeded(1),
            layout: Layout::Panel,
            dump: None,
            dump_frames: Vec::new(),
            stop: None,
        },
        |_, _| {},
    )
    .unwrap();
    // 1.5 s at 30 frames/s, truncated as the official frame count.
    assert_eq!(summary.frames, 45);
    let y4m = std::fs::read(&out).unwrap();
    let header_end = y4m.iter().position(|&b| b == b'\n').unwrap();
    let header = String::from_utf8_lossy(&y4m[..header_end]);
    assert!(header.contains("W768 H256"), "{header}");
    let frames = y4m.windows(6).filter(|w| w == b"FRAME\n").count();
    assert_eq!(frames, 45);
}

#[test]
fn demo_avatar_refuses_a_model_that_is_not_a_renderer() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    write_tiny_models(&models);
    let err = write_synthetic(&models.join("faco.onnx"), 512, &dir.path().join("a")).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("faco.onnx") && msg.contains("expected a renderer"),
        "{msg}"
    );

    let err = write_synthetic(&dir.path().join("none.onnx"), 512, &dir.path().join("a"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("none.onnx"), "{err}");

    let err = write_synthetic(&models.join("renderer.onnx"), 384, &dir.path().join("a"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("renderer_size = 384"), "{err}");
}

#[test]
fn models_swapped_by_name_are_refused_before_rendering() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    write_tiny_models(&models);
    std::fs::copy(models.join("faco.onnx"), models.join("moda.onnx")).unwrap();
    let err = Models::load(&models).expect_err("faco.onnx saved as moda.onnx");
    let msg = err.to_string();
    assert!(
        msg.contains("moda.onnx is a faco model") && msg.contains("expected a moda model"),
        "{msg}"
    );
}

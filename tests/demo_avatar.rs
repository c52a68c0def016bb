//! The fresh-clone demo without `../shared`: seeded `models init` networks, the synthetic demo
//! avatar, and a recording made here, rendered end to end.

use std::path::Path;

use moda_edge::backend::tract::TractBackend;
use moda_edge::face::avatar::{write_synthetic, Avatar};
use moda_edge::model::import::{init, Network};
use moda_edge::model::{onnx, Preset};
use moda_edge::offline::{render, Layout, Models, Noise, RenderOptions};
use moda_edge::sink::SinkUri;

fn write_tiny_models(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for network in [Network::Moda, Network::Faco, Network::Renderer] {
        let path = dir.join(format!("{}.onnx", network.name()));
        std::fs::write(path, onnx::encode(&init(network, Preset::Tiny, 1))).unwrap();
    }
}

/// 1.5 s of a vowel-like tone with a syllable envelope, 22.05 kHz stereo 16-bit (so the demo
/// path also resamples and mixes down).
fn write_speechlike_wav(path: &Path) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 22_050,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for k in 0..33_075 {
        let t = k as f64 / 22_050.0;
        let envelope = (std::f64::consts::PI * 4.0 * t).sin().abs();
        let voice = (std::f64::consts::TAU * 140.0 * t).sin()
            + 0.5 * (std::f64::consts::TAU * 700.0 * t).sin();
        let s = (8_000.0 * envelope * voice) as i16;
        w.write_sample(s).unwrap();
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

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
    write_speechlike_wav(&wav);
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

//! `render` on golden/e2e/speech.wav with the public golden checkpoints, --noise zero, every
//! intermediate dumped and compared with the official run within the tolerances of
//! golden/e2e/README.md.

mod common;

use common::{golden, golden_npy, max_abs_diff};
use moda_edge::backend::tract::TractBackend;
use moda_edge::face::avatar::Avatar;
use moda_edge::model::TensorData;
use moda_edge::motion::Noise;
use moda_edge::offline::{render, Layout, Models, RenderOptions};
use moda_edge::sink::SinkUri;
use moda_edge::util::npy;

#[test]
fn render_matches_the_official_pipeline_stage_by_stage() {
    let dir = tempfile::tempdir().unwrap();
    let (avatar_dir, models_dir) = common::golden_render_fixture(dir.path());

    let indices = golden_npy("e2e/indices.npy");
    let TensorData::I64(idx) = &indices.data else {
        panic!("indices are int64")
    };
    let dump = dir.path().join("dump");
    let options = RenderOptions {
        noise: Noise::Zero,
        layout: Layout::Panel,
        dump: Some(dump.clone()),
        dump_frames: idx.iter().map(|&i| i as usize).collect(),
        stop: None,
    };
    let avatar = Avatar::load(&avatar_dir).unwrap();
    let out = dir.path().join("out.y4m");
    let summary = render(
        &TractBackend::default(),
        &Models::load(&models_dir).unwrap(),
        &avatar,
        &golden("e2e/speech.wav"),
        &SinkUri::Y4m(out.clone()),
        &options,
        |_, _| {},
    )
    .unwrap();
    assert_eq!(summary.frames, 208);
    let y4m_len = std::fs::metadata(&out).unwrap().len() as usize;
    assert_eq!(
        y4m_len,
        moda_edge::sink::y4m::header(768, 256, 30).len() + 208 * (6 + 768 * 256 * 3),
        "panel y4m holds 208 frames of 768×256"
    );

    let read = |name: &str| npy::read(&dump.join(format!("{name}.npy"))).unwrap();
    let check = |name: &str, tol: f64| {
        let err = max_abs_diff(&read(name), &golden_npy(&format!("e2e/{name}.npy")));
        eprintln!("{name}: max abs {err:.3e} (tolerance {tol:e})");
        assert!(err <= tol, "{name}: {err} > {tol}");
    };
    check("waveform_normalized", 1e-5);
    for s in ["lip", "eye", "head", "torso"] {
        check(&format!("moda_merged_{s}"), 5e-4);
        check(&format!("moda_smoothed_{s}"), 5e-4);
    }
    check("faco_raw", 1e-4);
    check("faco_smoothed", 1e-4);
    check("face_px", 0.02);
    check("shoulder_px", 0.02);
    assert_eq!(read("indices"), indices);

    let (cond, gcond) = (read("frames_cond"), golden_npy("e2e/frames_cond.npy"));
    let (outs, gouts) = (read("frames_out"), golden_npy("e2e/frames_out.npy"));
    assert_eq!(cond.shape, gcond.shape);
    assert_eq!(outs.shape, gouts.shape);
    let (TensorData::U8(c), TensorData::U8(gc)) = (&cond.data, &gcond.data) else {
        panic!("uint8")
    };
    let (TensorData::U8(o), TensorData::U8(go)) = (&outs.data, &gouts.data) else {
        panic!("uint8")
    };
    let (cpx, opx) = (512 * 512 * 3, 256 * 256 * 3);
    let mut identical = 0;
    for f in 0..idx.len() {
        let differing = c[f * cpx..(f + 1) * cpx]
            .chunks_exact(3)
            .zip(gc[f * cpx..(f + 1) * cpx].chunks_exact(3))
            .filter(|(a, b)| a != b)
            .count();
        let worst = o[f * opx..(f + 1) * opx]
            .iter()
            .zip(&go[f * opx..(f + 1) * opx])
            .map(|(&a, &b)| a.abs_diff(b))
            .max()
            .unwrap();
        eprintln!(
            "frame {}: {differing} condition pixels differ, renderer output max {worst} levels",
            idx[f]
        );
        assert!(
            differing <= 1000,
            "frame {}: {differing} condition pixels differ",
            idx[f]
        );
        if differing == 0 {
            identical += 1;
            assert!(
                worst <= 2,
                "frame {}: renderer output differs by {worst} levels",
                idx[f]
            );
        }
    }
    assert!(
        identical * 2 > idx.len(),
        "most condition images identical: {identical} of {}",
        idx.len()
    );
}

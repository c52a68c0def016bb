//! Golden conformance of the audio front end and the motion maths (decode, normalization,
//! window arithmetic, merge-free smoothing, FaCo vertex smoothing) against
//! `reference/golden/e2e` and `reference/golden/moda_w2v_tiny`.

mod common;

use common::{golden, golden_meta, golden_npy, max_abs_diff, reference_dir};
use moda_edge::audio::{load_wav_16k, normalize, read_wav};
use moda_edge::model::Tensor;
use moda_edge::motion::{
    frame_count, smooth_moda_streams, smooth_vertices, windows, SmoothingSettings,
};

fn f32_data(t: &Tensor) -> Vec<f32> {
    t.as_f32().expect("golden array is float32").to_vec()
}

fn report(what: &str, err: f64, tol: f64) {
    eprintln!("{what}: max abs error {err:e} (tolerance {tol:e})");
    assert!(err <= tol, "{what}: max abs error {err:e} exceeds {tol:e}");
}

#[test]
fn speech_wav_decodes_and_normalizes_like_the_reference() {
    let path = golden("e2e/speech.wav");
    let wav = read_wav(&path).unwrap();
    assert_eq!(
        (wav.sample_rate, wav.channels, wav.samples.len()),
        (16_000, 1, 111_449)
    );
    let samples = load_wav_16k(&path).unwrap();
    assert_eq!(
        samples, wav.samples,
        "16 kHz input must pass through unchanged"
    );

    let want = golden_npy("e2e/waveform_normalized.npy");
    assert_eq!(want.shape, vec![1, 111_449]);
    let got = Tensor::f32(vec![1, samples.len()], normalize(&samples));
    report("e2e waveform_normalized", max_abs_diff(&got, &want), 1e-5);
}

#[test]
fn tiny_model_waveform_normalizes_like_the_reference() {
    let raw = golden_npy("moda_w2v_tiny/input_waveform_raw.npy");
    let want = golden_npy("moda_w2v_tiny/input_waveform.npy");
    let got = Tensor::f32(raw.shape.clone(), normalize(&f32_data(&raw)));
    report(
        "moda_w2v_tiny input_waveform",
        max_abs_diff(&got, &want),
        1e-5,
    );
}

#[test]
fn frame_count_and_windows_match_meta() {
    let meta = golden_meta("e2e");
    let n = meta["audio"]["n_samples"]
        .as_u64()
        .expect("audio.n_samples") as usize;
    assert_eq!(frame_count(n) as u64, meta["frame_count"].as_u64().unwrap());
    let w = windows(n);
    let golden_windows = meta["windows"].as_array().unwrap();
    assert_eq!(w.len(), golden_windows.len());
    for (r, g) in w.iter().zip(golden_windows) {
        assert_eq!(r.start as u64, g["start_sample"].as_u64().unwrap());
        assert_eq!(r.end as u64, g["end_sample_exclusive"].as_u64().unwrap());
        assert_eq!(
            frame_count(r.len()) as u64,
            g["frame_num"].as_u64().unwrap()
        );
    }
    let tiny = golden_meta("moda_w2v_tiny");
    assert_eq!(
        frame_count(tiny["n_samples"].as_u64().unwrap() as usize) as u64,
        tiny["frame_num"].as_u64().unwrap()
    );
}

#[test]
fn moda_streams_smooth_like_scipy() {
    let load = |name: &str| golden_npy(&format!("e2e/moda_merged_{name}.npy"));
    let (mut lip, mut eye, mut head, mut torso) = (
        f32_data(&load("lip")),
        f32_data(&load("eye")),
        f32_data(&load("head")),
        f32_data(&load("torso")),
    );
    smooth_moda_streams(
        &SmoothingSettings::default(),
        &mut lip,
        &mut eye,
        &mut head,
        &mut torso,
    )
    .unwrap();
    for (name, got) in [("lip", lip), ("eye", eye), ("head", head), ("torso", torso)] {
        let want = golden_npy(&format!("e2e/moda_smoothed_{name}.npy"));
        let got = Tensor::f32(want.shape.clone(), got);
        report(&format!("smoothed {name}"), max_abs_diff(&got, &want), 1e-6);
    }
    // The scale column is not smoothed at all.
    let merged = f32_data(&load("head"));
    let smoothed = f32_data(&golden_npy("e2e/moda_smoothed_head.npy"));
    assert!((0..208).all(|t| merged[t * 7 + 6] == smoothed[t * 7 + 6]));
}

#[test]
fn faco_non_semantic_vertices_smooth_like_scipy() {
    let tables: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(reference_dir().join("moda_tables.json")).unwrap(),
    )
    .unwrap();
    let indices: Vec<usize> = tables["non_semantic_indices_smoothed_sigma5"]
        .as_array()
        .expect("non_semantic_indices_smoothed_sigma5 list")
        .iter()
        .map(|v| v.as_u64().expect("index") as usize)
        .collect();
    assert_eq!(indices.len(), 376);
    let raw = golden_npy("e2e/faco_raw.npy");
    let want = golden_npy("e2e/faco_smoothed.npy");
    assert_eq!(raw.shape, vec![208, 478, 3]);
    let mut mesh = f32_data(&raw);
    smooth_vertices(
        &mut mesh,
        478,
        &indices,
        SmoothingSettings::default().faco_others,
    )
    .unwrap();
    let got = Tensor::f32(raw.shape.clone(), mesh);
    report("faco_smoothed", max_abs_diff(&got, &want), 1e-6);
}

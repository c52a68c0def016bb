//! The official checkpoint reader against the golden checkpoints and `reference.pth`
//! (synthetic zips and error paths are in `checkpoint_synthetic.rs`).

mod common;

use std::path::Path;

use moda_edge::model::{load_checkpoint, load_reference_image, DType, TensorData};

use common::golden;

// ---------------------------------------------------------------------------------------------
// Golden checkpoints

/// One line of keys.tsv: key, shape, dtype, element count.
struct KeyLine {
    key: String,
    shape: Vec<usize>,
    dtype: String,
    numel: usize,
}

fn keys_tsv(path: &Path) -> Vec<KeyLine> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("key\tshape\tdtype\tnumel"));
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "{l}");
            let dims = f[1].trim_start_matches('[').trim_end_matches(']');
            KeyLine {
                key: f[0].into(),
                shape: dims
                    .split(',')
                    .filter(|d| !d.trim().is_empty())
                    .map(|d| d.trim().parse().unwrap())
                    .collect(),
                dtype: f[2].into(),
                numel: f[3].parse().unwrap(),
            }
        })
        .collect()
}

fn meta_sha256(variant: &str) -> String {
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(golden(&format!("{variant}/meta.json"))).unwrap(),
    )
    .unwrap();
    meta["checkpoint"]["sha256"].as_str().unwrap().to_owned()
}

/// Loads a golden checkpoint and checks it against keys.tsv and meta.json exactly.
fn check_golden(variant: &str, n_keys: usize) -> moda_edge::model::Checkpoint {
    let ckpt = load_checkpoint(&golden(&format!("{variant}/checkpoint.pkl"))).unwrap();
    let lines = keys_tsv(&golden(&format!("{variant}/keys.tsv")));
    assert_eq!(lines.len(), n_keys);
    assert_eq!(ckpt.tensors.len(), n_keys, "{variant}: keys loaded");
    for line in &lines {
        let t = ckpt
            .tensors
            .get(&line.key)
            .unwrap_or_else(|| panic!("{variant}: missing {}", line.key));
        assert_eq!(t.shape, line.shape, "{variant}: shape of {}", line.key);
        assert_eq!(
            t.dtype().to_string(),
            line.dtype,
            "{variant}: dtype of {}",
            line.key
        );
        assert_eq!(t.len(), line.numel, "{variant}: numel of {}", line.key);
        let stored = match &t.data {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
            TensorData::U8(v) => v.len(),
        };
        assert_eq!(
            stored, line.numel,
            "{variant}: stored elements of {}",
            line.key
        );
        if let Some(v) = t.as_f32() {
            assert!(
                v.iter().all(|x| !x.is_nan()),
                "{variant}: NaN in {}",
                line.key
            );
            if !line.key.ends_with("biased_mask") {
                assert!(
                    v.iter().all(|x| x.is_finite()),
                    "{variant}: inf in {}",
                    line.key
                );
            }
            if v.len() > 1 {
                assert!(
                    v.iter().any(|&x| x != v[0]),
                    "{variant}: {} is constant",
                    line.key
                );
            }
        }
    }
    assert_eq!(ckpt.sha256, meta_sha256(variant), "{variant}: sha256");
    ckpt
}

/// Element 0, last element and float64 sum of a float32 tensor (values from NumPy on the raw records).
fn spot(ckpt: &moda_edge::model::Checkpoint, key: &str, first: f32, last: f32, sum: f64) {
    let v = ckpt.f32(key);
    assert_eq!((v[0], v[v.len() - 1]), (first, last), "{key}");
    let s: f64 = v.iter().map(|&x| f64::from(x)).sum();
    assert!(
        (s - sum).abs() < 1e-9 * v.len() as f64,
        "{key}: sum {s} vs {sum}"
    );
}

fn scalar_i64(ckpt: &moda_edge::model::Checkpoint, key: &str) -> i64 {
    match &ckpt.get(key).unwrap().data {
        TensorData::I64(v) => v[0],
        other => panic!("{key}: {other:?}"),
    }
}

#[test]
fn golden_moda_mel_matches_keys_tsv_and_documented_buffers() {
    let ckpt = check_golden("moda_mel", 252);
    spot(
        &ckpt,
        "audio_encoder_head.layers.0.weight",
        -0.011690385,
        -0.009235321,
        5.143912061534138,
    );
    spot(
        &ckpt,
        "torsomotion_tail.layers.6.bias",
        -0.039757214,
        -0.05941946,
        -0.9924032522831112,
    );
    assert_eq!(
        scalar_i64(&ckpt, "audio_encoder_head.layers.1.num_batches_tracked"),
        68263
    );
    assert_eq!(
        ckpt.shape("audio_encoder_head.layers.1.num_batches_tracked"),
        Some(&[][..])
    );

    // memory_mask: every off-diagonal entry masked (README, "Short branch cross-attention mask").
    let mask = ckpt.get("temporal_body.short_layer.memory_mask").unwrap();
    assert_eq!(mask.dtype(), DType::Bool);
    let TensorData::Bool(m) = &mask.data else {
        panic!()
    };
    for i in 0..600 {
        for j in 0..600 {
            assert_eq!(m[i * 600 + j], i != j, "memory_mask[{i}, {j}]");
        }
    }
    // biased_mask: -inf above the diagonal, -floor((i - j) / 30) / 256 elsewhere.
    let b = ckpt.f32("temporal_body.short_layer.biased_mask");
    for i in 0..600 {
        for j in 0..600 {
            let want = if j > i {
                f32::NEG_INFINITY
            } else {
                -(((i - j) / 30) as f32) / 256.0
            };
            assert_eq!(b[i * 600 + j], want, "biased_mask[0, {i}, {j}]");
        }
    }
    // Sinusoid tables: ppe periodic in t mod 30, embedding.pe the standard table (sin even, cos odd).
    let freq = |k: usize| (-(2.0 * k as f64) * 10000f64.ln() / 128.0).exp();
    let ppe = ckpt.f32("temporal_body.short_layer.ppe.pe");
    let pe = ckpt.f32("temporal_body.long_layer.embedding.pe");
    for t in 0..630 {
        for k in 0..64 {
            let a = (t % 30) as f64 * freq(k);
            assert!((f64::from(ppe[t * 128 + 2 * k]) - a.sin()).abs() < 1e-5);
            assert!((f64::from(ppe[t * 128 + 2 * k + 1]) - a.cos()).abs() < 1e-5);
            if t < 600 {
                let a = t as f64 * freq(k);
                assert!((f64::from(pe[t * 128 + 2 * k]) - a.sin()).abs() < 1e-4);
                assert!((f64::from(pe[t * 128 + 2 * k + 1]) - a.cos()).abs() < 1e-4);
            }
        }
    }
}

#[test]
fn golden_moda_w2v_tiny_keeps_legacy_weight_norm_names() {
    let ckpt = check_golden("moda_w2v_tiny", 289);
    spot(
        &ckpt,
        "audio_encoder.masked_spec_embed",
        0.07947332,
        0.99332374,
        27.317380249500275,
    );
    spot(
        &ckpt,
        "torsomotion_tail.layers.6.bias",
        -0.104730844,
        -0.0044459426,
        -0.4292545727221295,
    );
    assert_eq!(
        scalar_i64(&ckpt, "subject_encoder_head.layers.4.num_batches_tracked"),
        82336
    );
    assert!(ckpt
        .tensors
        .keys()
        .any(|k| k.ends_with("pos_conv_embed.conv.weight_g")));
    assert!(ckpt
        .tensors
        .keys()
        .any(|k| k.ends_with("pos_conv_embed.conv.weight_v")));
}

#[test]
fn golden_faco_matches_keys_tsv() {
    let ckpt = check_golden("faco", 26);
    spot(
        &ckpt,
        "subject_encoder.layers.0.weight",
        0.02119244,
        -0.001785146,
        2.620850472742788,
    );
    spot(
        &ckpt,
        "decoder.layers.6.bias",
        0.0047067,
        0.037259918,
        0.012822888278606115,
    );
}

#[test]
fn golden_render_small_matches_keys_tsv() {
    let ckpt = check_golden("render_small", 261);
    spot(
        &ckpt,
        "netG.model.model.0.weight",
        0.023371523,
        0.016671691,
        -0.8626061342511093,
    );
    spot(
        &ckpt,
        "netG.model.model.5.weight",
        -0.002691903,
        4.9802708e-05,
        0.5043753654463217,
    );
    assert_eq!(
        scalar_i64(&ckpt, "netG.model.model.3.model.1.num_batches_tracked"),
        69208
    );
}

#[test]
fn reference_pth_equals_reference_png() {
    let (h, w, rgb) = load_reference_image(&golden("e2e/reference.pth")).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(golden("e2e/reference.png")).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Rgb, png::BitDepth::Eight)
    );
    assert_eq!((h, w), (info.height as usize, info.width as usize));
    assert_eq!((h, w), (512, 512));
    assert!(
        rgb == buf[..info.buffer_size()],
        "pixels differ from reference.png"
    );
}

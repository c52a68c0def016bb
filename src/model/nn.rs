//! Building blocks shared by the three networks, each as a pair: the parameter specs it
//! expects in a checkpoint, and the graph it emits from those parameters.
//!
//! Eval-mode BatchNorm that follows a Linear or a bias-free conv is folded into that layer's
//! weights at import (y = γ(Wx + b − μ)/√(σ² + ε) + β is again affine), which is exact up to
//! float32 rounding and saves TensorRT and tract a pass over the activations.

use super::checkpoint::Checkpoint;
use super::onnx::{Graph, V};
use super::spec::{counter, Init, ParamSpec};

/// BatchNorm epsilon of every official network.
pub const BN_EPS: f32 = 1e-5;

/// Specs of `torch.nn.Linear(d_in, d_out)` at `prefix`.
pub fn linear_specs(prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Vec<ParamSpec> {
    let mut v = vec![ParamSpec::new(
        format!("{prefix}.weight"),
        &[d_out, d_in],
        Init::Weight {
            fan_in: d_in,
            gain: 1.0,
        },
    )];
    if bias {
        v.push(ParamSpec::new(
            format!("{prefix}.bias"),
            &[d_out],
            Init::Bias,
        ));
    }
    v
}

/// Specs of an eval-mode `BatchNorm1d/2d(c)` at `prefix`, including `num_batches_tracked`.
pub fn batch_norm_specs(prefix: &str, c: usize) -> Vec<ParamSpec> {
    vec![
        ParamSpec::new(format!("{prefix}.weight"), &[c], Init::NormScale),
        ParamSpec::new(format!("{prefix}.bias"), &[c], Init::NormShift),
        ParamSpec::new(format!("{prefix}.running_mean"), &[c], Init::NormShift),
        ParamSpec::new(format!("{prefix}.running_var"), &[c], Init::RunningVar),
        ParamSpec::new(format!("{prefix}.num_batches_tracked"), &[], counter()),
    ]
}

/// Specs of `torch.nn.LayerNorm(c)` at `prefix`.
pub fn layer_norm_specs(prefix: &str, c: usize) -> Vec<ParamSpec> {
    vec![
        ParamSpec::new(format!("{prefix}.weight"), &[c], Init::NormScale),
        ParamSpec::new(format!("{prefix}.bias"), &[c], Init::NormShift),
    ]
}

/// Per-channel (scale, shift) of an eval-mode BatchNorm at `prefix`.
pub fn batch_norm_affine(ck: &Checkpoint, prefix: &str) -> (Vec<f32>, Vec<f32>) {
    let (scale, shift) = batch_norm_affine_f64(ck, prefix);
    let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (f32s(scale), f32s(shift))
}

/// [`batch_norm_affine`] before rounding: folding it into a bias rounds only once.
fn batch_norm_affine_f64(ck: &Checkpoint, prefix: &str) -> (Vec<f64>, Vec<f64>) {
    let gamma = ck.f32(&format!("{prefix}.weight"));
    let beta = ck.f32(&format!("{prefix}.bias"));
    let mean = ck.f32(&format!("{prefix}.running_mean"));
    let var = ck.f32(&format!("{prefix}.running_var"));
    let scale: Vec<f64> = gamma
        .iter()
        .zip(var)
        .map(|(&g, &v)| g as f64 / (v as f64 + BN_EPS as f64).sqrt())
        .collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((&b, &m), &s)| b as f64 - m as f64 * s)
        .collect();
    (scale, shift)
}

/// A Linear's weight transposed to [d_in, d_out] (row-major) with a following BatchNorm folded
/// in, and its bias in float64 (rounded once by the caller).
struct Folded {
    d_in: usize,
    d_out: usize,
    wt: Vec<f32>,
    bias: Vec<f64>,
}

fn fold_linear(ck: &Checkpoint, prefix: &str, bn: Option<&str>) -> Folded {
    let w = ck.f32(&format!("{prefix}.weight"));
    let shape = ck
        .shape(&format!("{prefix}.weight"))
        .expect("validated")
        .to_vec();
    let (d_out, d_in) = (shape[0], shape[1]);
    let bias_key = format!("{prefix}.bias");
    let mut bias: Vec<f64> = if ck.tensors.contains_key(&bias_key) {
        ck.f32(&bias_key).iter().map(|&b| b as f64).collect()
    } else {
        vec![0.0; d_out]
    };
    let (scale, shift) = match bn {
        Some(bn) => batch_norm_affine_f64(ck, bn),
        None => (vec![1.0; d_out], vec![0.0; d_out]),
    };
    let mut wt = vec![0f32; d_in * d_out];
    for o in 0..d_out {
        for i in 0..d_in {
            wt[i * d_out + o] = (w[o * d_in + i] as f64 * scale[o]) as f32;
        }
        bias[o] = bias[o] * scale[o] + shift[o];
    }
    Folded {
        d_in,
        d_out,
        wt,
        bias,
    }
}

/// `x @ Wᵀ + b` for a Linear at `prefix`, optionally followed by a folded BatchNorm at `bn`.
/// Works on any rank: the last axis is the feature axis.
pub fn linear(g: &mut Graph, ck: &Checkpoint, prefix: &str, bn: Option<&str>, x: &V) -> V {
    let f = fold_linear(ck, prefix, bn);
    // Stored transposed, [in, out], so MatMul needs no Transpose node.
    let wv = g.init_f32(&format!("{prefix}.weight"), &[f.d_in, f.d_out], f.wt);
    let b = f.bias.iter().map(|&b| b as f32).collect();
    let bv = g.init_f32(&format!("{prefix}.bias"), &[f.d_out], b);
    let y = g.matmul(x, &wv);
    g.add(&y, &bv)
}

/// [`linear`] for a single row `x` [1, K] of large values around `centre` (the subject template:
/// 1434 canvas-pixel coordinates, 0…512). A plain float32 dot product over such a row rounds
/// partial sums in the hundreds, and the folded BatchNorm then cancels most of the result:
/// tract's single running sum left 2.5e-4 of error in the first subject-encoder layer, ONNX
/// Runtime 1.0e-4, which reached the MODA outputs as a 1.1e-4 disagreement between them.
///
/// Here the row is shifted by `centre` (exact in float32 for values within a factor two of it)
/// and the product is summed in ⌈√K⌉ chunks of ⌈K/chunks⌉ terms (the row zero-padded to fill
/// them), added by `ReduceSum`; `centre·ΣW` goes into the bias, folded in float64. The same
/// affine map, with float32 rounding errors about ten times smaller on either runtime.
pub fn linear_centred(
    g: &mut Graph,
    ck: &Checkpoint,
    prefix: &str,
    bn: Option<&str>,
    centre: f32,
    x: &V,
) -> V {
    let f = fold_linear(ck, prefix, bn);
    let (k, n) = (f.d_in, f.d_out);
    let chunks = (k as f64).sqrt().ceil().max(1.0) as usize;
    let len = k.div_ceil(chunks);
    let pad = chunks * len - k;
    let mut w = f.wt.clone();
    w.resize(chunks * len * n, 0.0);
    let bias = (0..n)
        .map(|o| {
            let colsum: f64 = (0..k).map(|i| f.wt[i * n + o] as f64).sum();
            (f.bias[o] + centre as f64 * colsum) as f32
        })
        .collect();
    let c = g.scalar(centre);
    let xc = g.op("Sub", &[x, &c], vec![]);
    let xc = if pad > 0 {
        let pads = g.ints(&[0, 0, 0, pad as i64]);
        g.op("Pad", &[&xc, &pads], vec![])
    } else {
        xc
    };
    let xc = g.reshape(&xc, &[chunks as i64, 1, len as i64]);
    let wv = g.init_f32(&format!("{prefix}.weight"), &[chunks, len, n], w);
    let parts = g.matmul(&xc, &wv); // [chunks, 1, n]
    let axes = g.ints(&[0]);
    let y = g.op(
        "ReduceSum",
        &[&parts, &axes],
        vec![super::onnx::a_int("keepdims", 0)],
    );
    let bv = g.init_f32(&format!("{prefix}.bias"), &[n], bias);
    g.add(&y, &bv)
}

/// Specs of the official `networks.MLP(dims[0] → … → dims[last], norm)` at `prefix`
/// (`prefix.layers.{i}` Sequential: Linear, [BatchNorm1d], LeakyReLU(0.2), …, Linear).
pub fn mlp_specs(prefix: &str, dims: &[usize], norm: bool) -> Vec<ParamSpec> {
    let mut v = Vec::new();
    let step = if norm { 3 } else { 2 };
    let n = dims.len() - 1;
    for layer in 0..n {
        let idx = layer * step;
        v.extend(linear_specs(
            &format!("{prefix}.layers.{idx}"),
            dims[layer],
            dims[layer + 1],
            true,
        ));
        if norm && layer + 1 < n {
            v.extend(batch_norm_specs(
                &format!("{prefix}.layers.{}", idx + 1),
                dims[layer + 1],
            ));
        }
    }
    v
}

/// The official MLP at `prefix` with `n_layers` Linear layers; BatchNorm (when `norm`) folded.
pub fn mlp(g: &mut Graph, ck: &Checkpoint, prefix: &str, n_layers: usize, norm: bool, x: &V) -> V {
    mlp_impl(g, ck, prefix, n_layers, norm, None, x)
}

/// [`mlp`] on a single row [1, K] of large values around `centre`: its first layer is
/// [`linear_centred`].
pub fn mlp_centred(
    g: &mut Graph,
    ck: &Checkpoint,
    prefix: &str,
    n_layers: usize,
    norm: bool,
    centre: f32,
    x: &V,
) -> V {
    mlp_impl(g, ck, prefix, n_layers, norm, Some(centre), x)
}

fn mlp_impl(
    g: &mut Graph,
    ck: &Checkpoint,
    prefix: &str,
    n_layers: usize,
    norm: bool,
    centre: Option<f32>,
    x: &V,
) -> V {
    let step = if norm { 3 } else { 2 };
    let mut h = x.clone();
    for layer in 0..n_layers {
        let idx = layer * step;
        let last = layer + 1 == n_layers;
        let bn = (norm && !last).then(|| format!("{prefix}.layers.{}", idx + 1));
        let p = format!("{prefix}.layers.{idx}");
        h = match centre {
            Some(c) if layer == 0 => linear_centred(g, ck, &p, bn.as_deref(), c, &h),
            _ => linear(g, ck, &p, bn.as_deref(), &h),
        };
        if !last {
            h = g.leaky_relu(&h, 0.2);
        }
    }
    h
}

/// Width of each layer of the MLP at `prefix`, read from the checkpoint (`None` when its first
/// layer is absent). Used to infer hyper-parameters from tensor shapes.
pub fn mlp_dims(ck: &Checkpoint, prefix: &str, norm: bool) -> Option<Vec<usize>> {
    let step = if norm { 3 } else { 2 };
    let first = ck.shape(&format!("{prefix}.layers.0.weight"))?;
    let mut dims = vec![first[1], first[0]];
    let mut idx = step;
    while let Some(s) = ck.shape(&format!("{prefix}.layers.{idx}.weight")) {
        if s.len() != 2 {
            break;
        }
        dims.push(s[0]);
        idx += step;
    }
    Some(dims)
}

/// `LayerNormalization` over the last axis with the affine parameters at `prefix`.
pub fn layer_norm(g: &mut Graph, ck: &Checkpoint, prefix: &str, eps: f32, x: &V) -> V {
    let wkey = format!("{prefix}.weight");
    let c = ck.shape(&wkey).expect("validated")[0];
    let w = g.init_f32(&wkey, &[c], ck.f32(&wkey).to_vec());
    let b = g.init_f32(
        &format!("{prefix}.bias"),
        &[c],
        ck.f32(&format!("{prefix}.bias")).to_vec(),
    );
    g.op(
        "LayerNormalization",
        &[x, &w, &b],
        vec![
            super::onnx::a_int("axis", -1),
            super::onnx::a_float("epsilon", eps),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::tract::TractBackend;
    use crate::backend::{run_once, OnnxModel};
    use crate::model::onnx::Dim;
    use crate::model::spec::random_checkpoint;
    use crate::model::Tensor;

    /// A Linear(1434 → 64) + BatchNorm whose running statistics were taken on templates close
    /// to `x` (mean near the layer's output), as in the golden MODA checkpoints:
    /// the folded layer cancels a large dot product down to a few units.
    fn ill_conditioned(x: &[f64]) -> Checkpoint {
        let (k, n) = (x.len(), 64);
        let mut specs = linear_specs("l", k, n, true);
        specs.extend(batch_norm_specs("bn", n));
        let mut ck = random_checkpoint(&specs, 7, "linear_centred");
        let (w, b) = (ck.f32("l.weight").to_vec(), ck.f32("l.bias").to_vec());
        let mean = (0..n)
            .map(|o| {
                let z: f64 = (0..k).map(|i| x[i] * w[o * k + i] as f64).sum();
                (z + b[o] as f64 + 0.3 * ((o % 7) as f64 - 3.0)) as f32
            })
            .collect();
        ck.tensors
            .insert("bn.running_mean".into(), Tensor::f32(vec![n], mean));
        ck.tensors
            .insert("bn.running_var".into(), Tensor::f32(vec![n], vec![1.0; n]));
        ck
    }

    /// Runs the [1, K] → [1, n] layer built by `layer` on tract.
    fn run(x: &[f32], layer: impl Fn(&mut Graph, &V) -> V) -> Vec<f32> {
        let mut g = Graph::new();
        let xv = g.input("x", &[Dim::Fixed(1), Dim::Fixed(x.len())]);
        let y = layer(&mut g, &xv);
        g.output(&y, "y", &[Dim::Fixed(1), Dim::Fixed(64)]);
        let model = OnnxModel::from_proto("test", &g.into_model("test", &[]));
        let input = vec![("x".to_string(), Tensor::f32(vec![1, x.len()], x.to_vec()))];
        let out = run_once(&TractBackend::default(), &model, &input).expect("tract runs");
        out[0].1.to_f32_vec()
    }

    #[test]
    fn centred_linear_keeps_a_cancelling_template_product_accurate() {
        // 478 points × xyz in canvas pixels, deterministic and spread over 100…420.
        let x: Vec<f32> = (0..1434)
            .map(|i| 100.0 + ((i * 7919) % 3203) as f32 / 10.0)
            .collect();
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let ck = ill_conditioned(&x64);
        // float64 reference from the raw checkpoint: BN(x·Wᵀ + b).
        let (w, b) = (ck.f32("l.weight"), ck.f32("l.bias"));
        let (gamma, beta) = (ck.f32("bn.weight"), ck.f32("bn.bias"));
        let (mean, var) = (ck.f32("bn.running_mean"), ck.f32("bn.running_var"));
        let truth: Vec<f64> = (0..64)
            .map(|o| {
                let z: f64 = (0..1434).map(|i| x64[i] * w[o * 1434 + i] as f64).sum();
                let s = gamma[o] as f64 / (var[o] as f64 + BN_EPS as f64).sqrt();
                (z + b[o] as f64 - mean[o] as f64) * s + beta[o] as f64
            })
            .collect();
        let err = |y: &[f32]| {
            y.iter()
                .zip(&truth)
                .map(|(&a, &t)| (a as f64 - t).abs())
                .fold(0.0, f64::max)
        };
        let plain = err(&run(&x, |g, v| linear(g, &ck, "l", Some("bn"), v)));
        let centred = err(&run(&x, |g, v| {
            linear_centred(g, &ck, "l", Some("bn"), 256.0, v)
        }));
        eprintln!("max abs error vs float64: plain {plain:.2e}, centred {centred:.2e}");
        assert!(truth.iter().all(|t| t.abs() < 20.0), "outputs cancel");
        assert!(
            centred < 5e-5,
            "centred layer off by {centred} (plain: {plain})"
        );
    }
}

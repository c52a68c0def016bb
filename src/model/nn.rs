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
    let gamma = ck.f32(&format!("{prefix}.weight"));
    let beta = ck.f32(&format!("{prefix}.bias"));
    let mean = ck.f32(&format!("{prefix}.running_mean"));
    let var = ck.f32(&format!("{prefix}.running_var"));
    let scale: Vec<f32> = gamma
        .iter()
        .zip(var)
        .map(|(&g, &v)| (g as f64 / (v as f64 + BN_EPS as f64).sqrt()) as f32)
        .collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((&b, &m), &s)| (b as f64 - m as f64 * s as f64) as f32)
        .collect();
    (scale, shift)
}

/// `x @ Wᵀ + b` for a Linear at `prefix`, optionally followed by a folded BatchNorm at `bn`.
/// Works on any rank: the last axis is the feature axis.
pub fn linear(g: &mut Graph, ck: &Checkpoint, prefix: &str, bn: Option<&str>, x: &V) -> V {
    let w = ck.f32(&format!("{prefix}.weight"));
    let shape = ck
        .shape(&format!("{prefix}.weight"))
        .expect("validated")
        .to_vec();
    let (d_out, d_in) = (shape[0], shape[1]);
    let bias_key = format!("{prefix}.bias");
    let mut b: Vec<f32> = if ck.tensors.contains_key(&bias_key) {
        ck.f32(&bias_key).to_vec()
    } else {
        vec![0.0; d_out]
    };
    // Stored transposed, [in, out], so MatMul needs no Transpose node.
    let mut wt = vec![0f32; d_in * d_out];
    for o in 0..d_out {
        for i in 0..d_in {
            wt[i * d_out + o] = w[o * d_in + i];
        }
    }
    if let Some(bn) = bn {
        let (scale, shift) = batch_norm_affine(ck, bn);
        for i in 0..d_in {
            for o in 0..d_out {
                wt[i * d_out + o] *= scale[o];
            }
        }
        for o in 0..d_out {
            b[o] = b[o] * scale[o] + shift[o];
        }
    }
    let wv = g.init_f32(&format!("{prefix}.weight"), &[d_in, d_out], wt);
    let bv = g.init_f32(&format!("{prefix}.bias"), &[d_out], b);
    let y = g.matmul(x, &wv);
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
    let step = if norm { 3 } else { 2 };
    let mut h = x.clone();
    for layer in 0..n_layers {
        let idx = layer * step;
        let last = layer + 1 == n_layers;
        let bn = (norm && !last).then(|| format!("{prefix}.layers.{}", idx + 1));
        h = linear(g, ck, &format!("{prefix}.layers.{idx}"), bn.as_deref(), &h);
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

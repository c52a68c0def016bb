//! The dual temporal body (`FormerHybrid`): the short branch (`TemporalAlignedBlock`, a
//! transformer decoder over audio + style + periodic positions with an ALiBi-biased causal mask)
//! and the long branch (`TemporalVAEBlock`, encoder → μ, logσ² → z → decoder), concatenated
//! [short ‖ long]. All layers are PyTorch post-LN transformer layers with ReLU feed-forward.

use super::attn::{dense, torch_mha, torch_out_proj};
use super::{slice_to, Hparams};
use crate::model::checkpoint::{Checkpoint, CheckpointError};
use crate::model::nn::{self, layer_norm_specs, linear_specs};
use crate::model::onnx::{a_int, Graph, V};
use crate::model::spec::{Init, ParamSpec};
use crate::model::tensor::{Tensor, TensorData};

const SHORT: &str = "temporal_body.short_layer";
const LONG: &str = "temporal_body.long_layer";
/// LayerNorm epsilon of `nn.Transformer*Layer`.
const EPS: f32 = 1e-5;
/// ALiBi slope of the official mask (`init_biased_mask` with one head: 2⁻⁸).
const ALIBI_SLOPE: f32 = 1.0 / 256.0;

/// The four results of the body.
pub struct BodyOut {
    /// Short branch output [1,F,hidden].
    pub short: V,
    /// Long (VAE) branch output [1,F,hidden].
    pub long: V,
    pub mu: V,
    pub logvar: V,
}

/// The official `short_layer.biased_mask` [1,n,n]: for key j ≤ query i the value
/// −⌊(i−j)/period⌋/256, −∞ for j > i.
pub fn alibi_mask(n: usize, period: usize) -> Tensor {
    let mut m = vec![f32::NEG_INFINITY; n * n];
    for i in 0..n {
        for j in 0..=i {
            m[i * n + j] = -(((i - j) / period) as f32) * ALIBI_SLOPE;
        }
    }
    Tensor::f32(vec![1, n, n], m)
}

/// The official `short_layer.memory_mask` [n,n] (bool, true = blocked): every key except the
/// query's own frame is blocked.
pub fn diagonal_memory_mask(n: usize) -> Tensor {
    let data = (0..n * n).map(|k| k / n != k % n).collect();
    Tensor {
        shape: vec![n, n],
        data: TensorData::Bool(data),
    }
}

/// Sinusoid table rows for positions `positions` (sin in even channels, cos in odd, frequency
/// 10000^(−2i/d)), computed in float32 as PyTorch does: row-major [positions.len(), d].
pub fn sinusoid_table(positions: impl Iterator<Item = usize>, d: usize) -> Vec<f32> {
    let k = -(10000f64.ln() / d as f64) as f32;
    // exp and sin/cos evaluated in f64 and rounded once: within PyTorch's float32 kernels' ulp.
    let div: Vec<f32> = (0..d)
        .step_by(2)
        .map(|i| ((i as f32 * k) as f64).exp() as f32)
        .collect();
    let mut out = Vec::new();
    for p in positions {
        let p = p as f32;
        for (c, &dv) in (0..d).zip(div.iter().flat_map(|x| [x, x])) {
            let a = (p * dv) as f64;
            out.push(if c % 2 == 0 { a.sin() } else { a.cos() } as f32);
        }
    }
    out
}

/// The period of the stored ALiBi mask: the first query row whose bias on key 0 is non-zero.
pub fn infer_period(ck: &Checkpoint) -> Option<usize> {
    let t = ck.tensors.get(&format!("{SHORT}.biased_mask"))?;
    let n = *t.shape.get(1)?;
    let m = t.as_f32()?;
    (1..n).find(|&i| m.get(i * n).is_some_and(|&v| v != 0.0))
}

/// Checks that the stored `memory_mask` is the diagonal mask the official code writes: the
/// graph relies on it (see [`build`]).
///
/// # Errors
/// [`CheckpointError::BadHparams`] naming the first off-pattern entry.
pub fn check_memory_mask(ck: &Checkpoint) -> Result<(), CheckpointError> {
    let key = format!("{SHORT}.memory_mask");
    let Some(Tensor {
        shape,
        data: TensorData::Bool(m),
    }) = ck.tensors.get(&key)
    else {
        return Ok(()); // missing or mistyped: validation reports it
    };
    let n = shape.get(1).copied().unwrap_or(0);
    if let Some(k) = (0..m.len()).find(|&k| m[k] != (k / n.max(1) != k % n.max(1))) {
        return Err(CheckpointError::BadHparams {
            path: ck.path.clone(),
            detail: format!(
                "`{key}` is not the diagonal cross-attention mask of the official code (entry [{}, {}] differs)",
                k / n,
                k % n
            ),
        });
    }
    Ok(())
}

fn attn_specs(prefix: &str, d: usize) -> Vec<ParamSpec> {
    vec![
        ParamSpec::new(
            format!("{prefix}.in_proj_weight"),
            &[3 * d, d],
            Init::Weight {
                fan_in: d,
                gain: 1.0,
            },
        ),
        ParamSpec::new(format!("{prefix}.in_proj_bias"), &[3 * d], Init::Bias),
        ParamSpec::new(
            format!("{prefix}.out_proj.weight"),
            &[d, d],
            Init::Weight {
                fan_in: d,
                gain: 1.0,
            },
        ),
        ParamSpec::new(format!("{prefix}.out_proj.bias"), &[d], Init::Bias),
    ]
}

fn layer_specs(prefix: &str, h: &Hparams, decoder: bool) -> Vec<ParamSpec> {
    let d = h.hidden;
    let mut v = attn_specs(&format!("{prefix}.self_attn"), d);
    if decoder {
        v.extend(attn_specs(&format!("{prefix}.multihead_attn"), d));
    }
    v.extend(linear_specs(
        &format!("{prefix}.linear1"),
        d,
        h.body_ffn,
        true,
    ));
    v.extend(linear_specs(
        &format!("{prefix}.linear2"),
        h.body_ffn,
        d,
        true,
    ));
    for n in 1..=if decoder { 3 } else { 2 } {
        v.extend(layer_norm_specs(&format!("{prefix}.norm{n}"), d));
    }
    v
}

/// The `temporal_body.*` entries in state_dict order, buffers with their official values.
pub fn specs(h: &Hparams) -> Vec<ParamSpec> {
    let (d, n) = (h.hidden, h.max_seq_len);
    let period = h.period.max(1);
    let mut v = vec![
        ParamSpec::new(
            format!("{SHORT}.biased_mask"),
            &[1, n, n],
            Init::Fixed(alibi_mask(n, period)),
        ),
        ParamSpec::new(
            format!("{SHORT}.memory_mask"),
            &[n, n],
            Init::Fixed(diagonal_memory_mask(n)),
        ),
    ];
    for i in 0..h.body_layers {
        v.extend(layer_specs(&format!("{SHORT}.decoder.layers.{i}"), h, true));
    }
    // FaceFormer's periodic table: one period of sinusoids repeated (n / period + 1) times.
    let rows = period * (n / period + 1);
    let ppe = Tensor::f32(
        vec![1, rows, d],
        sinusoid_table((0..rows).map(|r| r % period), d),
    );
    v.push(ParamSpec::new(
        format!("{SHORT}.ppe.pe"),
        &[1, rows, d],
        Init::Fixed(ppe),
    ));
    let pe = Tensor::f32(vec![n, 1, d], sinusoid_table(0..n, d));
    v.push(ParamSpec::new(
        format!("{LONG}.embedding.pe"),
        &[n, 1, d],
        Init::Fixed(pe),
    ));
    for i in 0..h.body_layers {
        v.extend(layer_specs(&format!("{LONG}.encoder.layers.{i}"), h, false));
    }
    for i in 0..h.body_layers {
        v.extend(layer_specs(&format!("{LONG}.decoder.layers.{i}"), h, true));
    }
    for p in ["out.0", "to_mu", "to_logvar", "decode_latent"] {
        v.extend(linear_specs(&format!("{LONG}.{p}"), d, d, true));
    }
    v
}

/// What a decoder layer's cross-attention attends to.
enum Cross<'a> {
    /// Full attention over this memory, no mask.
    Full(&'a V),
    /// The short branch's diagonal-only memory mask: query frame t may attend only to memory
    /// frame t, so the softmax over its single unmasked logit is exactly 1 and the attention
    /// output is out_proj(v_proj(memory[t])). The graph uses that identity.
    Diagonal(&'a V),
}

/// x + W₂·ReLU(W₁x), then `norm`.
fn feed_forward(g: &mut Graph, ck: &Checkpoint, l: &str, norm: &str, x: &V) -> V {
    let f = nn::linear(g, ck, &format!("{l}.linear1"), None, x);
    let f = g.relu(&f);
    let f = nn::linear(g, ck, &format!("{l}.linear2"), None, &f);
    let y = g.add(x, &f);
    nn::layer_norm(g, ck, &format!("{l}.{norm}"), EPS, &y)
}

/// Post-LN `nn.TransformerDecoderLayer`: x = LN1(x + SA(x)); x = LN2(x + CA(x, mem));
/// x = LN3(x + FF(x)).
fn decoder_layer(
    g: &mut Graph,
    ck: &Checkpoint,
    h: &Hparams,
    l: &str,
    x: &V,
    mask: &V,
    cross: Cross,
) -> V {
    let sa = torch_mha(
        g,
        ck,
        &format!("{l}.self_attn"),
        h.body_heads,
        x,
        x,
        Some(mask),
    );
    let y = g.add(x, &sa);
    let x = nn::layer_norm(g, ck, &format!("{l}.norm1"), EPS, &y);
    let p = format!("{l}.multihead_attn");
    let ca = match cross {
        Cross::Full(mem) => torch_mha(g, ck, &p, h.body_heads, &x, mem, None),
        Cross::Diagonal(mem) => {
            let w = ck.f32(&format!("{p}.in_proj_weight"));
            let b = ck.f32(&format!("{p}.in_proj_bias"));
            let d = h.hidden;
            let v = dense(
                g,
                &format!("{p}.v"),
                &w[2 * d * d..],
                &b[2 * d..],
                d,
                1.0,
                mem,
            );
            torch_out_proj(g, ck, &p, &v)
        }
    };
    let y = g.add(&x, &ca);
    let x = nn::layer_norm(g, ck, &format!("{l}.norm2"), EPS, &y);
    feed_forward(g, ck, l, "norm3", &x)
}

/// Post-LN `nn.TransformerEncoderLayer` without mask.
fn encoder_layer(g: &mut Graph, ck: &Checkpoint, h: &Hparams, l: &str, x: &V) -> V {
    let sa = torch_mha(g, ck, &format!("{l}.self_attn"), h.body_heads, x, x, None);
    let y = g.add(x, &sa);
    let x = nn::layer_norm(g, ck, &format!("{l}.norm1"), EPS, &y);
    feed_forward(g, ck, l, "norm2", &x)
}

/// The body on audio embedding `a` [1,F,d], style `s` [1,1,d] and VAE noise ε [1,F,d]; F is
/// `frames` (int64 [1]).
pub fn build(
    g: &mut Graph,
    ck: &Checkpoint,
    h: &Hparams,
    a: &V,
    s: &V,
    noise: &V,
    frames: &V,
) -> BodyOut {
    let (d, n) = (h.hidden, h.max_seq_len);
    // Short branch: tgt = A + S + PPE[:F]; memory = A; self-attention mask = biased_mask[:F,:F].
    let ppe_key = format!("{SHORT}.ppe.pe");
    let rows = ck.shape(&ppe_key).expect("validated")[1];
    let ppe = g.init_f32(&ppe_key, &[rows, d], ck.f32(&ppe_key).to_vec());
    let ppe = slice_to(g, &ppe, frames, &[0]);
    let mask_key = format!("{SHORT}.biased_mask");
    let mask = g.init_f32(&mask_key, &[n, n], ck.f32(&mask_key).to_vec());
    let ends = g.concat(&[frames, frames], 0);
    let mask = slice_to(g, &mask, &ends, &[0, 1]);
    let x = g.add(a, s);
    let mut x = g.add(&x, &ppe);
    for i in 0..h.body_layers {
        x = decoder_layer(
            g,
            ck,
            h,
            &format!("{SHORT}.decoder.layers.{i}"),
            &x,
            &mask,
            Cross::Diagonal(a),
        );
    }
    let short = x;

    // Long branch. Its PositionalEncoding indexes the batch axis, so with batch 1 every frame
    // gets row 0 of the table: (0, 1, 0, 1, …).
    let pe_key = format!("{LONG}.embedding.pe");
    let pe0 = g.init_f32(&pe_key, &[d], ck.f32(&pe_key)[..d].to_vec());
    let u = g.add(s, &pe0);
    let u = g.add(&u, a);
    let mut x = u.clone();
    for i in 0..h.body_layers {
        x = encoder_layer(g, ck, h, &format!("{LONG}.encoder.layers.{i}"), &x);
    }
    let mu = nn::linear(g, ck, &format!("{LONG}.to_mu"), None, &x);
    let logvar = nn::linear(g, ck, &format!("{LONG}.to_logvar"), None, &x);
    let half = g.scalar(0.5);
    let hl = g.mul(&logvar, &half);
    let std = g.op("Exp", &[&hl], vec![]);
    let z = g.mul(noise, &std);
    let z = g.add(&z, &mu);
    let mem = nn::linear(g, ck, &format!("{LONG}.decode_latent"), None, &z);
    // The decoder's "autoregressive" mask is a float tensor with 1.0 strictly above the
    // diagonal: PyTorch adds it to the logits (future frames get +1), nothing is masked.
    let steps = g.init_f32("arange", &[n], (0..n).map(|i| i as f32).collect());
    let t = slice_to(g, &steps, frames, &[0]);
    let col = g.reshape(&t, &[1, -1]);
    let row = g.reshape(&t, &[-1, 1]);
    let future = g.op("Greater", &[&col, &row], vec![]);
    let plus_one = g.op("Cast", &[&future], vec![a_int("to", 1)]);
    let mut x = u;
    for i in 0..h.body_layers {
        x = decoder_layer(
            g,
            ck,
            h,
            &format!("{LONG}.decoder.layers.{i}"),
            &x,
            &plus_one,
            Cross::Full(&mem),
        );
    }
    let long = nn::linear(g, ck, &format!("{LONG}.out.0"), None, &x);
    BodyOut {
        short,
        long,
        mu,
        logvar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alibi_mask_steps_every_period_and_blocks_the_future() {
        let t = alibi_mask(61, 30);
        let m = t.as_f32().expect("f32");
        let at = |i: usize, j: usize| m[i * 61 + j];
        assert_eq!(
            (at(0, 0), at(29, 0), at(30, 0), at(60, 0), at(60, 31)),
            (0.0, 0.0, -1.0 / 256.0, -2.0 / 256.0, -0.0)
        );
        assert_eq!(at(0, 1), f32::NEG_INFINITY);
        assert_eq!(at(59, 60), f32::NEG_INFINITY);
    }

    #[test]
    fn memory_mask_leaves_only_the_diagonal_open() {
        let Tensor {
            data: TensorData::Bool(m),
            ..
        } = diagonal_memory_mask(3)
        else {
            panic!("bool")
        };
        assert_eq!(
            m,
            vec![false, true, true, true, false, true, true, true, false]
        );
    }

    #[test]
    fn sinusoid_rows_alternate_sin_and_cos() {
        let t = sinusoid_table([0, 1].into_iter(), 4);
        assert_eq!(&t[..4], &[0.0, 1.0, 0.0, 1.0]);
        assert!((t[4] - 1f32.sin()).abs() < 1e-7 && (t[7] - 0.01f32.cos()).abs() < 1e-7);
    }
}

//! The wav2vec 2.0 audio encoder of MODANet (HF `Wav2Vec2Model`, `feat_extract_norm` "group",
//! post-LayerNorm encoder) with MODA's change: the conv features are linearly resampled
//! (align_corners) to the F video frames before the feature projection.

use super::attn::{attention, dense};
use super::{slice, slice_to, Wav2VecHparams, DEFAULT_KERNELS, DEFAULT_STRIDES, DEFAULT_W2V_HEADS};
use crate::model::checkpoint::{Checkpoint, CheckpointError};
use crate::model::nn::{self, layer_norm_specs, linear_specs};
use crate::model::onnx::{a_float, a_int, a_ints, Graph, V};
use crate::model::spec::{weight_norm_dim2, Init, ParamSpec};
use crate::model::tensor::Tensor;

const P: &str = "audio_encoder";
/// The first feature-encoder conv; present exactly when the checkpoint has a wav2vec head.
pub const CONV0: &str = "audio_encoder.feature_extractor.conv_layers.0.conv.weight";
const POS: &str = "audio_encoder.encoder.pos_conv_embed.conv";
/// LayerNorm / GroupNorm epsilon of wav2vec2-base.
const EPS: f32 = 1e-5;

fn conv(i: usize) -> String {
    format!("{P}.feature_extractor.conv_layers.{i}")
}

fn layer(i: usize) -> String {
    format!("{P}.encoder.layers.{i}")
}

/// Encoder sizes from tensor shapes; `heads` and `strides` are not stored.
pub fn infer(
    ck: &Checkpoint,
    heads: Option<usize>,
    strides: Option<Vec<usize>>,
) -> Result<Wav2VecHparams, CheckpointError> {
    let bad = |detail: String| CheckpointError::BadHparams {
        path: ck.path.clone(),
        detail,
    };
    let shape = |key: &str, rank: usize| -> Result<Vec<usize>, CheckpointError> {
        let t = ck.get(key)?;
        if t.shape.len() != rank {
            return Err(CheckpointError::ShapeMismatch {
                path: ck.path.clone(),
                key: key.to_string(),
                expected: format!("a rank-{rank} tensor"),
                found: crate::model::checkpoint::shape_string(&t.shape),
            });
        }
        Ok(t.shape.clone())
    };
    let mut conv_channels = Vec::new();
    let mut conv_kernels = Vec::new();
    while ck
        .shape(&format!("{}.conv.weight", conv(conv_channels.len())))
        .is_some()
    {
        let s = shape(&format!("{}.conv.weight", conv(conv_channels.len())), 3)?;
        conv_channels.push(s[0]);
        conv_kernels.push(s[2]);
    }
    let hidden = shape(&format!("{P}.feature_projection.projection.weight"), 2)?[0];
    let layers = (0..)
        .take_while(|&i| {
            ck.shape(&format!("{}.attention.q_proj.weight", layer(i)))
                .is_some()
        })
        .count();
    let ffn = if layers > 0 {
        shape(
            &format!("{}.feed_forward.intermediate_dense.weight", layer(0)),
            2,
        )?[0]
    } else {
        0
    };
    let v_key = if ck.shape(&format!("{POS}.weight_v")).is_none()
        && ck
            .shape(&format!("{POS}.parametrizations.weight.original1"))
            .is_some()
    {
        format!("{POS}.parametrizations.weight.original1")
    } else {
        format!("{POS}.weight_v")
    };
    let v = shape(&v_key, 3)?;
    let heads = heads.unwrap_or(DEFAULT_W2V_HEADS);
    if heads == 0 || hidden % heads != 0 {
        return Err(bad(format!(
            "the wav2vec width {hidden} does not split into {heads} attention heads; pass the head count the \
             encoder was trained with (wav2vec2-base: 12)"
        )));
    }
    let conv_strides = match strides {
        Some(s) => s,
        None if conv_kernels == DEFAULT_KERNELS => DEFAULT_STRIDES.to_vec(),
        None => {
            return Err(bad(format!(
                "{} feature-encoder convs; pass their strides",
                conv_kernels.len()
            )))
        }
    };
    if conv_strides.len() != conv_kernels.len() || conv_strides.contains(&0) {
        return Err(bad(format!(
            "{} conv strides given for {} feature-encoder convs",
            conv_strides.len(),
            conv_kernels.len()
        )));
    }
    if v[1] == 0 || hidden % v[1] != 0 {
        return Err(bad(format!(
            "`{POS}.weight_v` has {} input channels per group, which does not divide {hidden}",
            v[1]
        )));
    }
    Ok(Wav2VecHparams {
        hidden,
        layers,
        heads,
        ffn,
        conv_channels,
        conv_kernels,
        conv_strides,
        pos_conv_kernel: v[2],
        pos_conv_groups: hidden / v[1],
    })
}

/// The `audio_encoder.*` entries in state_dict order (`weight_g` after `weight_v`).
pub fn specs(w: &Wav2VecHparams) -> Vec<ParamSpec> {
    let mut v = vec![ParamSpec::new(
        format!("{P}.masked_spec_embed"),
        &[w.hidden],
        // A trained parameter used only by SpecAugment in training; zeros here (unused).
        Init::Fixed(Tensor::f32(vec![w.hidden], vec![0.0; w.hidden])),
    )];
    let mut c_in = 1;
    for (i, (&c, &k)) in w.conv_channels.iter().zip(&w.conv_kernels).enumerate() {
        v.push(ParamSpec::new(
            format!("{}.conv.weight", conv(i)),
            &[c, c_in, k],
            Init::Weight {
                fan_in: c_in * k,
                gain: 1.0,
            },
        ));
        if i == 0 {
            v.extend(layer_norm_specs(&format!("{}.layer_norm", conv(0)), c));
        }
        c_in = c;
    }
    v.extend(layer_norm_specs(
        &format!("{P}.feature_projection.layer_norm"),
        c_in,
    ));
    v.extend(linear_specs(
        &format!("{P}.feature_projection.projection"),
        c_in,
        w.hidden,
        true,
    ));
    let (k, per_group) = (w.pos_conv_kernel, w.hidden / w.pos_conv_groups.max(1));
    v.push(ParamSpec::new(
        format!("{POS}.bias"),
        &[w.hidden],
        Init::Bias,
    ));
    v.push(ParamSpec::new(
        format!("{POS}.weight_v"),
        &[w.hidden, per_group, k],
        Init::Weight {
            fan_in: per_group * k,
            gain: 1.0,
        },
    ));
    v.push(ParamSpec::new(
        format!("{POS}.weight_g"),
        &[1, 1, k],
        Init::WeightNormG,
    ));
    v.extend(layer_norm_specs(
        &format!("{P}.encoder.layer_norm"),
        w.hidden,
    ));
    for i in 0..w.layers {
        let l = layer(i);
        for p in ["k_proj", "v_proj", "q_proj", "out_proj"] {
            v.extend(linear_specs(
                &format!("{l}.attention.{p}"),
                w.hidden,
                w.hidden,
                true,
            ));
        }
        v.extend(layer_norm_specs(&format!("{l}.layer_norm"), w.hidden));
        v.extend(linear_specs(
            &format!("{l}.feed_forward.intermediate_dense"),
            w.hidden,
            w.ffn,
            true,
        ));
        v.extend(linear_specs(
            &format!("{l}.feed_forward.output_dense"),
            w.ffn,
            w.hidden,
            true,
        ));
        v.extend(layer_norm_specs(&format!("{l}.final_layer_norm"), w.hidden));
    }
    v
}

/// waveform [1,N] → last_hidden_state [1,F,hidden], with F taken from `frames` (int64 [1]).
pub fn build(
    g: &mut Graph,
    ck: &Checkpoint,
    w: &Wav2VecHparams,
    waveform: &V,
    frames: &V,
    max_seq_len: usize,
) -> V {
    // Feature encoder: 7 bias-free convs, GroupNorm(C groups) after the first, GELU after each.
    let mut x = g.reshape(waveform, &[1, 1, -1]);
    for (i, &s) in w.conv_strides.iter().enumerate() {
        let key = format!("{}.conv.weight", conv(i));
        let wt = g.init_f32(
            &key,
            ck.shape(&key).expect("validated"),
            ck.f32(&key).to_vec(),
        );
        x = g.op("Conv", &[&x, &wt], vec![a_ints("strides", &[s as i64])]);
        if i == 0 {
            // GroupNorm with one group per channel is InstanceNormalization.
            let p = format!("{}.layer_norm", conv(0));
            let c = w.conv_channels[0];
            let scale = g.init_f32(
                &format!("{p}.weight"),
                &[c],
                ck.f32(&format!("{p}.weight")).to_vec(),
            );
            let bias = g.init_f32(
                &format!("{p}.bias"),
                &[c],
                ck.f32(&format!("{p}.bias")).to_vec(),
            );
            x = g.op(
                "InstanceNormalization",
                &[&x, &scale, &bias],
                vec![a_float("epsilon", EPS)],
            );
        }
        x = g.gelu(&x);
    }
    let x = interpolate(g, &x, frames, max_seq_len); // [1,C,F]
    let x = g.transpose(&x, &[0, 2, 1]);
    let x = nn::layer_norm(
        g,
        ck,
        &format!("{P}.feature_projection.layer_norm"),
        EPS,
        &x,
    );
    let mut h = nn::linear(
        g,
        ck,
        &format!("{P}.feature_projection.projection"),
        None,
        &x,
    );

    let pos = pos_conv(g, ck, w, &h);
    h = g.add(&h, &pos);
    h = nn::layer_norm(g, ck, &format!("{P}.encoder.layer_norm"), EPS, &h);
    for i in 0..w.layers {
        h = encoder_layer(g, ck, w, &layer(i), &h);
    }
    h
}

/// 1-D linear resampling of [1,C,L] to [1,C,F] with align_corners semantics, as
/// `torch.nn.functional.interpolate(mode="linear", align_corners=True)`: output step t reads
/// input position t·(L−1)/(F−1) (0 when F = 1), lerping its two neighbours. Built from
/// Shape/Floor/Gather so that it works for dynamic L and F.
fn interpolate(g: &mut Graph, x: &V, frames: &V, max_seq_len: usize) -> V {
    let one = g.scalar(1.0);
    let shape = g.op("Shape", &[x], vec![]);
    let len = slice(g, &shape, 2, 3, 0);
    let len = g.op("Cast", &[&len], vec![a_int("to", 1)]);
    let len_m1 = g.sub(&len, &one);
    let f = g.op("Cast", &[frames], vec![a_int("to", 1)]);
    let f_m1 = g.sub(&f, &one);
    let den = g.op("Max", &[&f_m1, &one], vec![]);
    let scale = g.div(&len_m1, &den);
    let steps = g.init_f32(
        "arange",
        &[max_seq_len],
        (0..max_seq_len).map(|i| i as f32).collect(),
    );
    let t = slice_to(g, &steps, frames, &[0]);
    let src = g.mul(&t, &scale);
    let lo = g.op("Floor", &[&src], vec![]);
    let lo = g.op("Min", &[&lo, &len_m1], vec![]);
    let hi = g.add(&lo, &one);
    let hi = g.op("Min", &[&hi, &len_m1], vec![]);
    let frac = g.sub(&src, &lo);
    let lo_i = g.op("Cast", &[&lo], vec![a_int("to", 7)]);
    let hi_i = g.op("Cast", &[&hi], vec![a_int("to", 7)]);
    let x0 = g.op("Gather", &[x, &lo_i], vec![a_int("axis", 2)]);
    let x1 = g.op("Gather", &[x, &hi_i], vec![a_int("axis", 2)]);
    let w0 = g.sub(&one, &frac);
    let a = g.mul(&x0, &w0);
    let b = g.mul(&x1, &frac);
    g.add(&a, &b)
}

/// The positional conv: GELU(Conv1d(k, pad k/2, groups)) with weight norm folded
/// (w = g·v/‖v‖ per tap), dropping the last step when k is even. [1,F,H] → [1,F,H].
fn pos_conv(g: &mut Graph, ck: &Checkpoint, w: &Wav2VecHparams, h: &V) -> V {
    let vk = format!("{POS}.weight_v");
    let shape = ck.shape(&vk).expect("validated").to_vec();
    let v = ck.f32(&vk);
    let norms = weight_norm_dim2(v, &shape);
    let gains = ck.f32(&format!("{POS}.weight_g"));
    let k = shape[2];
    let weight: Vec<f32> = v
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let t = i % k;
            (gains[t] as f64 * x as f64 / norms[t] as f64) as f32
        })
        .collect();
    let wt = g.init_f32(&vk, &shape, weight);
    let bias = g.init_f32(
        &format!("{POS}.bias"),
        &[w.hidden],
        ck.f32(&format!("{POS}.bias")).to_vec(),
    );
    let x = g.transpose(h, &[0, 2, 1]);
    let pad = (k / 2) as i64;
    let y = g.op(
        "Conv",
        &[&x, &wt, &bias],
        vec![
            a_int("group", w.pos_conv_groups as i64),
            a_ints("pads", &[pad, pad]),
            a_ints("kernel_shape", &[k as i64]),
        ],
    );
    let y = if k.is_multiple_of(2) {
        slice(g, &y, 0, -1, 2)
    } else {
        y
    };
    let y = g.gelu(&y);
    g.transpose(&y, &[0, 2, 1])
}

/// Post-LN encoder layer: h = LN(h + MHA(h)); h = LN(h + W₂·GELU(W₁h)).
fn encoder_layer(g: &mut Graph, ck: &Checkpoint, w: &Wav2VecHparams, l: &str, h: &V) -> V {
    let proj = |g: &mut Graph, name: &str, scale: f32, x: &V| {
        let p = format!("{l}.attention.{name}");
        let wts = ck.f32(&format!("{p}.weight"));
        let b = ck.f32(&format!("{p}.bias"));
        dense(g, &p, wts, b, w.hidden, scale, x)
    };
    let scale = 1.0 / ((w.hidden / w.heads) as f32).sqrt();
    let q = proj(g, "q_proj", scale, h);
    let k = proj(g, "k_proj", 1.0, h);
    let v = proj(g, "v_proj", 1.0, h);
    let a = attention(g, &q, &k, &v, w.heads, w.hidden, None);
    let a = proj(g, "out_proj", 1.0, &a);
    let h = g.add(h, &a);
    let h = nn::layer_norm(g, ck, &format!("{l}.layer_norm"), EPS, &h);
    let f = nn::linear(
        g,
        ck,
        &format!("{l}.feed_forward.intermediate_dense"),
        None,
        &h,
    );
    let f = g.gelu(&f);
    let f = nn::linear(g, ck, &format!("{l}.feed_forward.output_dense"), None, &f);
    let h = g.add(&h, &f);
    nn::layer_norm(g, ck, &format!("{l}.final_layer_norm"), EPS, &h)
}

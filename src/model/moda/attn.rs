//! Dense layers from raw weight slices and multi-head attention from MatMul/Softmax, shared by
//! the wav2vec encoder (separate q/k/v projections) and the temporal body (PyTorch's packed
//! `in_proj_weight`, rows q, k, v).

use crate::model::checkpoint::Checkpoint;
use crate::model::onnx::{Graph, V};

/// `x @ (scale·W)ᵀ + scale·b` for a PyTorch weight `w` of shape [d_out, d_in] (row-major).
/// `scale` folds the attention's 1/√dh into the query projection.
pub fn dense(g: &mut Graph, hint: &str, w: &[f32], b: &[f32], d_in: usize, scale: f32, x: &V) -> V {
    let d_out = b.len();
    debug_assert_eq!(w.len(), d_in * d_out);
    let mut wt = vec![0f32; d_in * d_out];
    for o in 0..d_out {
        for i in 0..d_in {
            wt[i * d_out + o] = w[o * d_in + i] * scale;
        }
    }
    let bias = b.iter().map(|&v| v * scale).collect();
    let wv = g.init_f32(&format!("{hint}.weight"), &[d_in, d_out], wt);
    let bv = g.init_f32(&format!("{hint}.bias"), &[d_out], bias);
    let y = g.matmul(x, &wv);
    g.add(&y, &bv)
}

/// Query, key and value projections of a PyTorch `nn.MultiheadAttention` at `prefix`
/// (`in_proj_weight` rows q, k, v), applied to `xq` and `xkv`, followed by attention and
/// `out_proj`. The query is pre-scaled by 1/√dh as PyTorch does.
pub fn torch_mha(
    g: &mut Graph,
    ck: &Checkpoint,
    prefix: &str,
    heads: usize,
    xq: &V,
    xkv: &V,
    mask: Option<&V>,
) -> V {
    let w = ck.f32(&format!("{prefix}.in_proj_weight"));
    let b = ck.f32(&format!("{prefix}.in_proj_bias"));
    let d = b.len() / 3;
    let scale = 1.0 / ((d / heads) as f32).sqrt();
    let q = dense(
        g,
        &format!("{prefix}.q"),
        &w[..d * d],
        &b[..d],
        d,
        scale,
        xq,
    );
    let k = dense(
        g,
        &format!("{prefix}.k"),
        &w[d * d..2 * d * d],
        &b[d..2 * d],
        d,
        1.0,
        xkv,
    );
    let v = dense(
        g,
        &format!("{prefix}.v"),
        &w[2 * d * d..],
        &b[2 * d..],
        d,
        1.0,
        xkv,
    );
    let o = attention(g, &q, &k, &v, heads, d, mask);
    torch_out_proj(g, ck, prefix, &o)
}

/// The `out_proj` Linear of a PyTorch `nn.MultiheadAttention` at `prefix`.
pub fn torch_out_proj(g: &mut Graph, ck: &Checkpoint, prefix: &str, x: &V) -> V {
    let w = ck.f32(&format!("{prefix}.out_proj.weight"));
    let b = ck.f32(&format!("{prefix}.out_proj.bias"));
    dense(g, &format!("{prefix}.out_proj"), w, b, b.len(), 1.0, x)
}

/// Scaled dot-product attention over `heads` heads of width `dim / heads` on [1,T,dim] query
/// (already scaled) and [1,S,dim] key/value; `mask` [T,S] is added to the logits.
pub fn attention(
    g: &mut Graph,
    q: &V,
    k: &V,
    v: &V,
    heads: usize,
    dim: usize,
    mask: Option<&V>,
) -> V {
    let (h, dh) = (heads as i64, (dim / heads) as i64);
    let split = |g: &mut Graph, x: &V, perm: &[i64]| {
        let r = g.reshape(x, &[1, -1, h, dh]);
        g.transpose(&r, perm)
    };
    let qh = split(g, q, &[0, 2, 1, 3]); // [1,h,T,dh]
    let kh = split(g, k, &[0, 2, 3, 1]); // [1,h,dh,S]
    let vh = split(g, v, &[0, 2, 1, 3]); // [1,h,S,dh]
    let mut logits = g.matmul(&qh, &kh);
    if let Some(m) = mask {
        logits = g.add(&logits, m);
    }
    let p = g.softmax(&logits, -1);
    let o = g.matmul(&p, &vh); // [1,h,T,dh]
    let o = g.transpose(&o, &[0, 2, 1, 3]);
    g.reshape(&o, &[1, -1, dim as i64])
}

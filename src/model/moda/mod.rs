//! MODANet, the audio-to-motion network (`models/componments/moda_net.py` of taichuai/MODA):
//! audio head (wav2vec 2.0 on the raw waveform, or an MLP over mel rows) → per-frame audio
//! embedding A; subject head on the template → style S; dual temporal body (short decoder
//! branch ‖ long VAE branch); four MLP tails for lips, eyes, head pose and torso.
//!
//! The graph contract (README.md, "The ONNX contract"): inputs `waveform` [1,N] (or `mel` [1,4F,80]),
//! `template` [1,1434], `noise` [1,F,128]; outputs `lip`, `eye`, `head`, `torso`, `mu`,
//! `logvar`. The frame count F is read from the shape of `noise` inside the graph (it drives
//! the wav2vec interpolation and the slices of the stored masks and tables), so one graph serves
//! every F up to `max_seq_len` with dynamic shapes and folds to constants with concrete ones.
//!
//! `noise` is the VAE's ε: z = μ + exp(½·logσ²)·ε. The official code samples ε at inference
//! too; a zero `noise` gives the deterministic z = μ.

mod attn;
mod body;
mod wav2vec;

use super::checkpoint::{Checkpoint, CheckpointError};
use super::nn;
use super::onnx::{Dim, Graph, V};
use super::spec::ParamSpec;
use super::Preset;

pub use body::{alibi_mask, diagonal_memory_mask, sinusoid_table};

/// Key of the first audio-head layer; every MODA checkpoint has it.
const AUDIO_HEAD0: &str = "audio_encoder_head.layers.0.weight";
/// A temporal-body key; every MODA checkpoint has it.
const BODY_KEY: &str = "temporal_body.short_layer.biased_mask";
/// Rows of the mel input grouped into one video frame (120 rows/s → 30 frames/s).
pub const MEL_ROWS_PER_FRAME: usize = 4;
/// Mel bins per row of the `mel` input.
pub const MEL_BINS: usize = 80;
/// Centre of the official 512 × 512 canvas, in whose pixel units the template is given. The
/// subject encoder's first layer subtracts it before its 1434-term dot product (an exact
/// rewrite, see [`nn::linear_centred`]) so that float32 rounding stays ~1e-5 on any runtime.
const TEMPLATE_CENTRE: f32 = 256.0;
/// Channels of the VAE latent and of the `noise` input: the body's hidden size.
const fn latent(h: &Hparams) -> usize {
    h.hidden
}

/// Sizes of the wav2vec 2.0 audio encoder (HF `Wav2Vec2Model`, post-LayerNorm variant).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Wav2VecHparams {
    /// Transformer width (768 in wav2vec2-base).
    pub hidden: usize,
    pub layers: usize,
    /// Attention heads; not stored in a checkpoint.
    pub heads: usize,
    /// Feed-forward width (3072 in wav2vec2-base).
    pub ffn: usize,
    /// Output channels of each feature-encoder conv.
    pub conv_channels: Vec<usize>,
    pub conv_kernels: Vec<usize>,
    /// Conv strides; not stored in a checkpoint.
    pub conv_strides: Vec<usize>,
    /// Kernel of the weight-normalised positional conv (128 in wav2vec2-base).
    pub pos_conv_kernel: usize,
    pub pos_conv_groups: usize,
}

impl Wav2VecHparams {
    /// wav2vec2-base-960h, the encoder the released MODA.pkl carries.
    pub fn base() -> Wav2VecHparams {
        Wav2VecHparams {
            hidden: 768,
            layers: 12,
            heads: 12,
            ffn: 3072,
            conv_channels: vec![512; 7],
            conv_kernels: DEFAULT_KERNELS.to_vec(),
            conv_strides: DEFAULT_STRIDES.to_vec(),
            pos_conv_kernel: 128,
            pos_conv_groups: 16,
        }
    }

    /// The tiny encoder of `golden/moda_w2v_tiny`.
    pub fn tiny() -> Wav2VecHparams {
        Wav2VecHparams {
            hidden: 64,
            layers: 2,
            heads: 2,
            ffn: 128,
            conv_channels: vec![32; 7],
            conv_kernels: DEFAULT_KERNELS.to_vec(),
            conv_strides: DEFAULT_STRIDES.to_vec(),
            pos_conv_kernel: 16,
            pos_conv_groups: 4,
        }
    }

    /// Audio samples consumed per output step of the feature encoder (320 for base).
    pub fn hop(&self) -> usize {
        self.conv_strides.iter().product()
    }

    /// Output steps L of the feature encoder for `n` samples (0 when `n` is too short).
    pub fn frames_for_samples(&self, n: usize) -> usize {
        let mut l = n;
        for (&k, &s) in self.conv_kernels.iter().zip(&self.conv_strides) {
            if l < k {
                return 0;
            }
            l = (l - k) / s + 1;
        }
        l
    }
}

const DEFAULT_KERNELS: [usize; 7] = [10, 3, 3, 3, 3, 2, 2];
const DEFAULT_STRIDES: [usize; 7] = [5, 2, 2, 2, 2, 2, 2];
/// Attention heads of wav2vec2-base, the default when the caller gives none.
pub const DEFAULT_W2V_HEADS: usize = 12;

/// Which audio front end the checkpoint carries.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioHead {
    /// wav2vec 2.0 on the normalised 16 kHz waveform, then MLP(hidden→128→128).
    Wav2Vec(Wav2VecHparams),
    /// 80-bin mel rows at 120 rows/s, 4 rows per frame concatenated, then an MLP of `layers`
    /// Linear layers (320→128→…→128).
    Mel { layers: usize },
}

/// MODANet hyper-parameters.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Hparams {
    pub audio: AudioHead,
    /// Width of the body (128): audio/subject embeddings, transformer d_model, latent.
    pub hidden: usize,
    /// Flattened template length (478 points × 3 = 1434).
    pub vertice_dim: usize,
    pub lip_dim: usize,
    pub eye_dim: usize,
    pub head_dim: usize,
    pub torso_dim: usize,
    /// Longest sequence the stored masks and tables cover (600 frames).
    pub max_seq_len: usize,
    /// Period of the short branch's positional table and ALiBi steps (30 frames).
    pub period: usize,
    /// Layers of each body transformer stack (3).
    pub body_layers: usize,
    /// Heads of the body transformers (4; fixed by the official code, not stored).
    pub body_heads: usize,
    /// Feed-forward width of the body transformers (128).
    pub body_ffn: usize,
}

/// Body attention heads of the official code (`nhead=4`), not recoverable from a checkpoint.
pub const BODY_HEADS: usize = 4;

impl Hparams {
    /// The body and tails of the release model, with `audio` as the front end.
    fn release_body(audio: AudioHead) -> Hparams {
        Hparams {
            audio,
            hidden: 128,
            vertice_dim: 1434,
            lip_dim: 120,
            eye_dim: 180,
            head_dim: 7,
            torso_dim: 54,
            max_seq_len: 600,
            period: 30,
            body_layers: 3,
            body_heads: BODY_HEADS,
            body_ffn: 128,
        }
    }

    /// `Release`: wav2vec2-base plus the release body; `Tiny`: the tiny wav2vec of
    /// `golden/moda_w2v_tiny` (hidden 64, 2 layers, 2 heads, ffn 128, 32 conv channels,
    /// positional conv 16 in 4 groups) with the release body.
    pub fn preset(preset: Preset) -> Hparams {
        match preset {
            Preset::Release => Hparams::release_body(AudioHead::Wav2Vec(Wav2VecHparams::base())),
            Preset::Tiny => Hparams::release_body(AudioHead::Wav2Vec(Wav2VecHparams::tiny())),
        }
    }

    /// Hyper-parameters from the tensor shapes of `ck`. The wav2vec head count and conv
    /// strides are not stored: `heads` defaults to 12 (wav2vec2-base) and `strides` to
    /// (5,2,2,2,2,2,2).
    ///
    /// # Errors
    /// [`CheckpointError::WrongKind`] when `ck` is not a MODA checkpoint (the detail says what
    /// it looks like); [`CheckpointError::BadHparams`] when the given or default head count does
    /// not divide the wav2vec width or the stride count differs from the conv count;
    /// [`CheckpointError::MissingKey`] when a key needed to read a size is absent.
    pub fn infer(
        ck: &Checkpoint,
        heads: Option<usize>,
        strides: Option<Vec<usize>>,
    ) -> Result<Hparams, CheckpointError> {
        if ck.shape(AUDIO_HEAD0).is_none() || ck.shape(BODY_KEY).is_none() {
            return Err(CheckpointError::WrongKind {
                path: ck.path.clone(),
                expected: "MODA",
                detail: looks_like(ck),
            });
        }
        body::check_memory_mask(ck)?;
        let dim = |key: &str, axis: usize| -> Result<usize, CheckpointError> {
            let t = ck.get(key)?;
            t.shape
                .get(axis)
                .copied()
                .ok_or_else(|| CheckpointError::ShapeMismatch {
                    path: ck.path.clone(),
                    key: key.to_string(),
                    expected: format!("at least {} axes", axis + 1),
                    found: super::checkpoint::shape_string(&t.shape),
                })
        };
        let audio = if ck.shape(wav2vec::CONV0).is_some() {
            AudioHead::Wav2Vec(wav2vec::infer(ck, heads, strides)?)
        } else {
            let layers = nn::mlp_dims(ck, "audio_encoder_head", true).map_or(0, |d| d.len() - 1);
            let width = dim(AUDIO_HEAD0, 1)?;
            if width != MEL_ROWS_PER_FRAME * MEL_BINS {
                return Err(CheckpointError::WrongKind {
                    path: ck.path.clone(),
                    expected: "MODA (wav2vec or mel audio head)",
                    detail: format!(
                        "it has no audio_encoder.* keys and its audio head takes {width} features per frame, \
                         not the 320 (4 × 80 mel bins) of the mel head (an `apc` head is not supported)"
                    ),
                });
            }
            AudioHead::Mel { layers }
        };
        let last = |prefix: &str| -> Result<usize, CheckpointError> {
            nn::mlp_dims(ck, prefix, true)
                .and_then(|d| d.last().copied())
                .ok_or_else(|| CheckpointError::MissingKey {
                    path: ck.path.clone(),
                    key: format!("{prefix}.layers.0.weight"),
                    shape: "?".into(),
                    dtype: super::tensor::DType::F32,
                })
        };
        let short = "temporal_body.short_layer";
        let body_layers = (0..)
            .take_while(|i| {
                ck.shape(&format!("{short}.decoder.layers.{i}.linear1.weight"))
                    .is_some()
            })
            .count();
        let max_seq_len = dim(BODY_KEY, 1)?;
        Ok(Hparams {
            audio,
            hidden: dim(AUDIO_HEAD0, 0)?,
            vertice_dim: dim("subject_encoder_head.layers.0.weight", 1)?,
            lip_dim: last("lipmotion_tail")?,
            eye_dim: last("eyemovement_tail")?,
            head_dim: last("headmotion_tail")?,
            torso_dim: last("torsomotion_tail")?,
            max_seq_len,
            period: body::infer_period(ck).unwrap_or(30),
            body_layers,
            body_heads: BODY_HEADS,
            body_ffn: dim(&format!("{short}.decoder.layers.0.linear1.weight"), 0)?,
        })
    }
}

/// What a non-MODA checkpoint looks like, for [`CheckpointError::WrongKind`].
fn looks_like(ck: &Checkpoint) -> String {
    let any = |p: &str| ck.tensors.keys().any(|k| k.starts_with(p));
    if any("driven_m_encoder") || any("driven_e_encoder") {
        "it looks like a FaCo checkpoint (keys start with driven_m_encoder)".into()
    } else if any("netG.") {
        "it looks like a renderer checkpoint (keys start with netG.)".into()
    } else if ck.tensors.is_empty() {
        "it holds no tensors".into()
    } else {
        let first = ck.tensors.keys().next().cloned().unwrap_or_default();
        format!("it has no `{AUDIO_HEAD0}` / `{BODY_KEY}` keys (first key: `{first}`)")
    }
}

/// Every state_dict entry of the official MODANet for `h`, in the official order (except that
/// the pos-conv `weight_g` follows its `weight_v`, which [`super::spec::random_checkpoint`]
/// needs), with the fixed buffers carrying the exact official values.
pub fn specs(h: &Hparams) -> Vec<ParamSpec> {
    let mut v = Vec::new();
    let head_in = match &h.audio {
        AudioHead::Wav2Vec(w) => {
            v.extend(wav2vec::specs(w));
            vec![w.hidden, h.hidden, h.hidden]
        }
        AudioHead::Mel { layers } => {
            let mut d = vec![MEL_ROWS_PER_FRAME * MEL_BINS];
            d.extend(std::iter::repeat_n(h.hidden, *layers));
            d
        }
    };
    v.extend(nn::mlp_specs("audio_encoder_head", &head_in, true));
    v.extend(nn::mlp_specs(
        "subject_encoder_head",
        &[h.vertice_dim, h.hidden, h.hidden, h.hidden],
        true,
    ));
    v.extend(body::specs(h));
    let t = 2 * h.hidden;
    v.extend(nn::mlp_specs("lipmotion_tail", &[t, 512, h.lip_dim], true));
    v.extend(nn::mlp_specs(
        "eyemovement_tail",
        &[t, 256, 256, h.eye_dim],
        true,
    ));
    v.extend(nn::mlp_specs(
        "headmotion_tail",
        &[t, 256, 256, h.head_dim],
        true,
    ));
    v.extend(nn::mlp_specs(
        "torsomotion_tail",
        &[t, 256, 256, h.torso_dim],
        true,
    ));
    v
}

/// The ONNX graph of MODANet from a checkpoint already validated against [`specs`]`(h)`.
/// The caller adds metadata with [`Graph::into_model`].
pub fn build(ck: &Checkpoint, h: &Hparams) -> Graph {
    let mut g = Graph::new();
    let f = Dim::Sym("F");
    let audio_in = match &h.audio {
        AudioHead::Wav2Vec(_) => g.input("waveform", &[Dim::Fixed(1), Dim::Sym("N")]),
        AudioHead::Mel { .. } => g.input(
            "mel",
            &[Dim::Fixed(1), Dim::Sym("4F"), Dim::Fixed(MEL_BINS)],
        ),
    };
    let template = g.input("template", &[Dim::Fixed(1), Dim::Fixed(h.vertice_dim)]);
    let noise = g.input("noise", &[Dim::Fixed(1), f, Dim::Fixed(latent(h))]);

    // F as a 1-D int64 [1] tensor, from the shape of `noise`.
    let noise_shape = g.op("Shape", &[&noise], vec![]);
    let frames = slice(&mut g, &noise_shape, 1, 2, 0);

    let (audio_layers, feats) = match &h.audio {
        AudioHead::Wav2Vec(w) => (
            2,
            wav2vec::build(&mut g, ck, w, &audio_in, &frames, h.max_seq_len),
        ),
        AudioHead::Mel { layers } => {
            let width = (MEL_ROWS_PER_FRAME * MEL_BINS) as i64;
            (*layers, g.reshape(&audio_in, &[1, -1, width]))
        }
    };
    let a = nn::mlp(&mut g, ck, "audio_encoder_head", audio_layers, true, &feats);
    let s = nn::mlp_centred(
        &mut g,
        ck,
        "subject_encoder_head",
        3,
        true,
        TEMPLATE_CENTRE,
        &template,
    );
    let s = g.reshape(&s, &[1, 1, h.hidden as i64]);

    let out = body::build(&mut g, ck, h, &a, &s, &noise, &frames);
    let t = g.concat(&[&out.short, &out.long], -1);
    let lip = nn::mlp(&mut g, ck, "lipmotion_tail", 2, true, &t);
    let eye = nn::mlp(&mut g, ck, "eyemovement_tail", 3, true, &t);
    let head = nn::mlp(&mut g, ck, "headmotion_tail", 3, true, &t);
    let torso = nn::mlp(&mut g, ck, "torsomotion_tail", 3, true, &t);
    let seq = |d: usize| [Dim::Fixed(1), f, Dim::Fixed(d)];
    g.output(&lip, "lip", &seq(h.lip_dim));
    g.output(&eye, "eye", &seq(h.eye_dim));
    g.output(&head, "head", &seq(h.head_dim));
    g.output(&torso, "torso", &seq(h.torso_dim));
    g.output(&out.mu, "mu", &seq(latent(h)));
    g.output(&out.logvar, "logvar", &seq(latent(h)));
    g
}

/// `x[start:end]` along `axis` with constant bounds.
fn slice(g: &mut Graph, x: &V, start: i64, end: i64, axis: i64) -> V {
    let s = g.ints(&[start]);
    let e = g.ints(&[end]);
    let a = g.ints(&[axis]);
    g.op("Slice", &[x, &s, &e, &a], vec![])
}

/// `x[0:end]` along each of `axes`, with `end` a 1-D int64 value of one element per axis.
fn slice_to(g: &mut Graph, x: &V, ends: &V, axes: &[i64]) -> V {
    let s = g.ints(&vec![0; axes.len()]);
    let a = g.ints(axes);
    g.op("Slice", &[x, &s, ends, &a], vec![])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav2vec_frame_count_follows_the_conv_stack() {
        let w = Wav2VecHparams::tiny();
        assert_eq!(w.frames_for_samples(48271), 150); // golden dbg_w2v_conv_features
        assert_eq!(w.frames_for_samples(399), 0);
        assert_eq!(w.frames_for_samples(400), 1);
        assert_eq!(w.hop(), 320);
    }

    #[test]
    fn specs_of_presets_hold_every_release_entry() {
        // checkpoint_keys.md: 449 entries, 97,600,499 elements for the release MODANet.
        let s = specs(&Hparams::preset(Preset::Release));
        assert_eq!(s.len(), 449);
        assert_eq!(
            s.iter()
                .map(|p| p.shape.iter().product::<usize>())
                .sum::<usize>(),
            97_600_499
        );
    }
}

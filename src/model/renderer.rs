//! The portrait renderer: the official `Render_G` wrapper around `RenderGenerator_normal`
//! (one residual block per side of each U-Net level) or `RenderGenerator_large` (two).
//!
//! The U-Net has `num_downs` nested blocks, outermost first. Block b maps `outer` channels to
//! `inner = ngf·min(2^b, 8)` channels and back; the outermost block takes the 19 input channels
//! and returns 3. Every convolution is 3×3, padding 1, bias-free; each eval BatchNorm is folded
//! into the convolution before it, which then gets a bias.
//!
//! ```text
//! outermost: conv s2, ReLU, RB×r, [inner], up×2, conv                  → tanh
//! middle:    conv s2, BN, ReLU, RB×r, [inner], up×2, conv, BN, ReLU, RB×r → [x ‖ y]
//! innermost: conv s2, ReLU, RB×r,          up×2, conv, BN, ReLU, RB×r → [x ‖ y]
//! RB(x) = ReLU(x + BN(conv(ReLU(BN(conv x)))))
//! ```
//!
//! State_dict keys follow the nesting: block b's Sequential lives at
//! `netG.model.model` (b = 0) and `<parent>.<sub>.model` below, with Sequential indices
//! counted over every layer (ReLU and Upsample included).

use super::checkpoint::{shape_string, Checkpoint, CheckpointError};
use super::nn::{batch_norm_affine, batch_norm_specs};
use super::onnx::{a_ints, a_str, Dim, Graph, V};
use super::spec::{Init, ParamSpec};
use super::Preset;

/// Input channels of the first convolution: mesh RGB (3) + reference RGB (3) + time code (13).
pub const INPUT_CHANNELS: usize = 19;
/// Width of the `time_code` input: t, then sin/cos of t·2^k for k = 0..5.
pub const TIME_CODE_DIM: usize = 13;
/// Output channels (RGB).
pub const OUTPUT_CHANNELS: usize = 3;

const ROOT: &str = "netG.model.model";

/// `RenderGenerator_normal` or `RenderGenerator_large`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// One residual block on each side of each level (the release renderer).
    Normal,
    /// Two residual blocks on each side of each level.
    Large,
}

impl Size {
    fn res_blocks(self) -> usize {
        match self {
            Size::Normal => 1,
            Size::Large => 2,
        }
    }

    /// The official option value (`--size`).
    pub fn name(self) -> &'static str {
        match self {
            Size::Normal => "normal",
            Size::Large => "large",
        }
    }
}

/// Renderer hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Hparams {
    /// Output channels of the first convolution (`--ngf`; 64 at release).
    pub ngf: usize,
    /// Number of nested U-Net blocks, i.e. stride-2 stages (`--n_downsample_G`; 8 at
    /// release). Height and width must be multiples of 2^num_downs.
    pub num_downs: usize,
    pub size: Size,
    /// Channels of the network input (always [`INPUT_CHANNELS`] for this contract).
    pub input_nc: usize,
}

/// Where a block sits in the U-Net.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Outermost,
    Middle,
    Innermost,
}

/// One U-Net level: its key prefix, channel counts and Sequential indices.
#[derive(Clone, Debug)]
struct Block {
    prefix: String,
    role: Role,
    input_nc: usize,
    inner_nc: usize,
    outer_nc: usize,
    down_bn: Option<usize>,
    down_res: Vec<usize>,
    sub: Option<usize>,
    up_conv: usize,
    up_bn: Option<usize>,
    up_res: Vec<usize>,
}

impl Block {
    fn new(
        prefix: String,
        role: Role,
        r: usize,
        input_nc: usize,
        inner_nc: usize,
        outer_nc: usize,
    ) -> Block {
        let down_bn = (role == Role::Middle).then_some(1);
        let first_res = if down_bn.is_some() { 3 } else { 2 };
        let mut next = first_res + r;
        let sub = (role != Role::Innermost).then(|| {
            next += 1;
            next - 1
        });
        // `next` is the Upsample, then the up-conv.
        let up_conv = next + 1;
        let (up_bn, up_res) = if role == Role::Outermost {
            (None, vec![])
        } else {
            (Some(up_conv + 1), (up_conv + 3..up_conv + 3 + r).collect())
        };
        Block {
            prefix,
            role,
            input_nc,
            inner_nc,
            outer_nc,
            down_bn,
            down_res: (first_res..first_res + r).collect(),
            sub,
            up_conv,
            up_bn,
            up_res,
        }
    }

    fn key(&self, idx: usize) -> String {
        format!("{}.{idx}", self.prefix)
    }

    fn up_in(&self) -> usize {
        if self.role == Role::Innermost {
            self.inner_nc
        } else {
            2 * self.inner_nc
        }
    }
}

/// The blocks of `h`, outermost first.
fn blocks(h: &Hparams) -> Vec<Block> {
    let r = h.size.res_blocks();
    let width = |b: usize| h.ngf * (1usize << b.min(3));
    let mut out = Vec::with_capacity(h.num_downs);
    let mut prefix = ROOT.to_string();
    for b in 0..h.num_downs {
        let role = match b {
            0 => Role::Outermost,
            _ if b + 1 == h.num_downs => Role::Innermost,
            _ => Role::Middle,
        };
        let (input_nc, outer_nc) = if b == 0 {
            (h.input_nc, OUTPUT_CHANNELS)
        } else {
            (width(b - 1), width(b - 1))
        };
        let block = Block::new(prefix.clone(), role, r, input_nc, width(b), outer_nc);
        if let Some(sub) = block.sub {
            prefix = format!("{prefix}.{sub}.model");
        }
        out.push(block);
    }
    out
}

impl Hparams {
    /// Release: ngf 64, 8 downsamplings, normal (512×512 frames). Tiny: ngf 4, same depth
    /// (the golden `render_small` shape; runs at 256×256 or 512×512).
    pub fn preset(preset: Preset) -> Hparams {
        let ngf = match preset {
            Preset::Release => 64,
            Preset::Tiny => 4,
        };
        Hparams {
            ngf,
            num_downs: 8,
            size: Size::Normal,
            input_nc: INPUT_CHANNELS,
        }
    }

    /// Reads ngf, input channels, size and depth from the key structure and shapes of `ck`.
    ///
    /// # Errors
    /// [`CheckpointError::WrongKind`] when `ck` is not a `Render_G` state_dict (with a hint of
    /// what it looks like) or its U-Net has fewer than 5 levels;
    /// [`CheckpointError::ShapeMismatch`] when the first convolution is not 3×3 over 19 input
    /// channels.
    pub fn infer(ck: &Checkpoint) -> Result<Hparams, CheckpointError> {
        let wrong = |detail: String| CheckpointError::WrongKind {
            path: ck.path.clone(),
            expected: "renderer",
            detail,
        };
        let first = format!("{ROOT}.0.weight");
        let Some(shape) = ck.shape(&first) else {
            return Err(wrong(format!(
                "it has no `{first}`; it looks like {}",
                super::faco::kind_hint(ck)
            )));
        };
        if shape.len() != 4 || shape[1] != INPUT_CHANNELS || shape[2..] != [3, 3] {
            let ngf = shape.first().copied().unwrap_or(0);
            return Err(CheckpointError::ShapeMismatch {
                path: ck.path.clone(),
                key: first,
                expected: shape_string(&[ngf, INPUT_CHANNELS, 3, 3]),
                found: shape_string(shape),
            });
        }
        let (ngf, input_nc) = (shape[0], shape[1]);
        let has = |key: String| ck.tensors.contains_key(&key);
        let size = if has(format!("{ROOT}.3.block.0.weight")) {
            Size::Large
        } else if has(format!("{ROOT}.3.model.0.weight")) {
            Size::Normal
        } else {
            return Err(wrong(format!(
                "it has `{first}` but no inner U-Net block (`{ROOT}.3.model.*` for size normal, \
                 `{ROOT}.4.model.*` for size large)"
            )));
        };
        let r = size.res_blocks();
        // Outermost block's submodule sits at 2 + r, a middle block's at 3 + r.
        let mut prefix = format!("{ROOT}.{}.model", 2 + r);
        let mut num_downs = 1;
        while has(format!("{prefix}.0.weight")) {
            num_downs += 1;
            prefix = format!("{prefix}.{}.model", 3 + r);
        }
        if num_downs < 5 {
            return Err(wrong(format!(
                "its U-Net has {num_downs} nested levels; the official RenderGenerator has at least 5"
            )));
        }
        Ok(Hparams {
            ngf,
            num_downs,
            size,
            input_nc,
        })
    }

    /// Frame height and width must be multiples of this.
    pub fn size_multiple(&self) -> usize {
        1 << self.num_downs
    }
}

fn conv_spec(key: String, c_out: usize, c_in: usize) -> ParamSpec {
    ParamSpec::new(
        format!("{key}.weight"),
        &[c_out, c_in, 3, 3],
        Init::Weight {
            fan_in: c_in * 9,
            gain: 1.0,
        },
    )
}

fn res_block_specs(v: &mut Vec<ParamSpec>, key: &str, c: usize) {
    v.push(conv_spec(format!("{key}.block.0"), c, c));
    v.extend(batch_norm_specs(&format!("{key}.block.1"), c));
    v.push(conv_spec(format!("{key}.block.3"), c, c));
    v.extend(batch_norm_specs(&format!("{key}.block.4"), c));
}

/// Every state_dict entry of `Render_G` with `h`'s sizes, in the official key order.
pub fn specs(h: &Hparams) -> Vec<ParamSpec> {
    let blocks = blocks(h);
    let mut v = Vec::new();
    for b in &blocks {
        v.push(conv_spec(b.key(0), b.inner_nc, b.input_nc));
        if let Some(bn) = b.down_bn {
            v.extend(batch_norm_specs(&b.key(bn), b.inner_nc));
        }
        for &i in &b.down_res {
            res_block_specs(&mut v, &b.key(i), b.inner_nc);
        }
    }
    // The up path is registered after the submodule, so it unwinds innermost first.
    for b in blocks.iter().rev() {
        v.push(conv_spec(b.key(b.up_conv), b.outer_nc, b.up_in()));
        if let Some(bn) = b.up_bn {
            v.extend(batch_norm_specs(&b.key(bn), b.outer_nc));
        }
        for &i in &b.up_res {
            res_block_specs(&mut v, &b.key(i), b.outer_nc);
        }
    }
    v
}

/// 3×3 convolution at `key` (padding 1), with the BatchNorm at `bn` folded in when given.
fn conv(g: &mut Graph, ck: &Checkpoint, key: &str, bn: Option<&str>, stride: i64, x: &V) -> V {
    let wkey = format!("{key}.weight");
    let shape = ck.shape(&wkey).expect("validated").to_vec();
    let mut w = ck.f32(&wkey).to_vec();
    let c_out = shape[0];
    let per_out = w.len() / c_out;
    let bias = bn.map(|bn| {
        let (scale, shift) = batch_norm_affine(ck, bn);
        for (o, chunk) in w.chunks_mut(per_out).enumerate() {
            chunk.iter_mut().for_each(|v| *v *= scale[o]);
        }
        (format!("{bn}.bias"), shift)
    });
    let mut inputs = vec![x.clone(), g.init_f32(&wkey, &shape, w)];
    if let Some((name, shift)) = bias {
        inputs.push(g.init_f32(&name, &[c_out], shift));
    }
    let refs: Vec<&V> = inputs.iter().collect();
    g.op(
        "Conv",
        &refs,
        vec![
            a_ints("kernel_shape", &[3, 3]),
            a_ints("pads", &[1, 1, 1, 1]),
            a_ints("strides", &[stride, stride]),
        ],
    )
}

fn res_block(g: &mut Graph, ck: &Checkpoint, key: &str, x: &V) -> V {
    let h = conv(
        g,
        ck,
        &format!("{key}.block.0"),
        Some(&format!("{key}.block.1")),
        1,
        x,
    );
    let h = g.relu(&h);
    let h = conv(
        g,
        ck,
        &format!("{key}.block.3"),
        Some(&format!("{key}.block.4")),
        1,
        &h,
    );
    let s = g.add(&h, x);
    g.relu(&s)
}

/// Nearest-neighbour ×2 upsampling. With asymmetric coordinates and floor rounding output
/// pixel i reads input ⌊i/2⌋, exactly `nn.Upsample(scale_factor=2, mode='nearest')`.
fn upsample2(g: &mut Graph, x: &V) -> V {
    let scales = g.init_f32("scales", &[4], vec![1.0, 1.0, 2.0, 2.0]);
    g.op(
        "Resize",
        &[x, &V::none(), &scales],
        vec![
            a_str("mode", "nearest"),
            a_str("coordinate_transformation_mode", "asymmetric"),
            a_str("nearest_mode", "floor"),
        ],
    )
}

fn block_graph(g: &mut Graph, ck: &Checkpoint, blocks: &[Block], x: &V) -> V {
    let b = &blocks[0];
    let bn_key = |i: Option<usize>| i.map(|i| b.key(i));
    let mut h = conv(g, ck, &b.key(0), bn_key(b.down_bn).as_deref(), 2, x);
    h = g.relu(&h);
    for &i in &b.down_res {
        h = res_block(g, ck, &b.key(i), &h);
    }
    if b.sub.is_some() {
        h = block_graph(g, ck, &blocks[1..], &h);
    }
    h = upsample2(g, &h);
    h = conv(g, ck, &b.key(b.up_conv), bn_key(b.up_bn).as_deref(), 1, &h);
    if b.role == Role::Outermost {
        return h;
    }
    h = g.relu(&h);
    for &i in &b.up_res {
        h = res_block(g, ck, &b.key(i), &h);
    }
    g.concat(&[x, &h], 1)
}

/// The `renderer.onnx` graph: inputs `mesh_image` [1,3,H,W] and `reference` [1,3,H,W] (both
/// in [-1,1]) and `time_code` [1,13]; output `image` [1,3,H,W] in [-1,1]. H and W must be
/// multiples of [`Hparams::size_multiple`].
///
/// The time code is broadcast to 13 constant planes and concatenated after the two images,
/// the order of the official `RenderModel.inference`.
///
/// `ck` must have passed [`super::spec::validate`] against [`specs`]`(h)`.
pub fn build(ck: &Checkpoint, h: &Hparams) -> Graph {
    let mut g = Graph::new();
    let (hh, ww) = (Dim::Sym("H"), Dim::Sym("W"));
    let image_dims = [Dim::Fixed(1), Dim::Fixed(3), hh, ww];
    let mesh = g.input("mesh_image", &image_dims);
    let reference = g.input("reference", &image_dims);
    let time_code = g.input("time_code", &[Dim::Fixed(1), Dim::Fixed(TIME_CODE_DIM)]);

    let code = g.reshape(&time_code, &[1, TIME_CODE_DIM as i64, 1, 1]);
    let shape = g.op("Shape", &[&mesh], vec![]);
    let (starts, ends, axes) = (g.ints(&[2]), g.ints(&[4]), g.ints(&[0]));
    let hw = g.op("Slice", &[&shape, &starts, &ends, &axes], vec![]);
    let lead = g.ints(&[1, TIME_CODE_DIM as i64]);
    let target = g.concat(&[&lead, &hw], 0);
    let planes = g.op("Expand", &[&code, &target], vec![]);
    let x = g.concat(&[&mesh, &reference, &planes], 1);

    let y = block_graph(&mut g, ck, &blocks(h), &x);
    let y = g.op("Tanh", &[&y], vec![]);
    g.output(&y, "image", &image_dims);
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::{random_checkpoint, validate};

    #[test]
    fn presets_and_large_round_trip_through_infer() {
        let large = Hparams {
            ngf: 2,
            num_downs: 6,
            size: Size::Large,
            input_nc: INPUT_CHANNELS,
        };
        for h in [
            Hparams::preset(Preset::Release),
            Hparams::preset(Preset::Tiny),
            large,
        ] {
            let specs = specs(&h);
            let ck = random_checkpoint(&specs, 5, "renderer");
            validate(&ck, &specs, "renderer").expect("valid");
            assert_eq!(Hparams::infer(&ck).expect("infer"), h);
        }
    }

    #[test]
    fn release_has_the_official_parameter_count() {
        let n: usize = specs(&Hparams::preset(Preset::Release))
            .iter()
            .map(|s| s.shape.iter().product::<usize>())
            .sum();
        assert_eq!(n, 76_239_211);
        assert_eq!(specs(&Hparams::preset(Preset::Release)).len(), 261);
    }

    #[test]
    fn large_layout_indices() {
        let h = Hparams {
            ngf: 2,
            num_downs: 5,
            size: Size::Large,
            input_nc: INPUT_CHANNELS,
        };
        let keys: Vec<String> = specs(&h).into_iter().map(|s| s.key).collect();
        for k in [
            "netG.model.model.3.block.0.weight",
            "netG.model.model.4.model.4.block.4.running_var",
            "netG.model.model.4.model.5.model.0.weight",
            "netG.model.model.4.model.7.weight",
            "netG.model.model.4.model.11.block.3.weight",
            "netG.model.model.6.weight",
        ] {
            assert!(keys.iter().any(|x| x == k), "missing {k}");
        }
    }

    #[test]
    fn faco_checkpoint_is_wrong_kind() {
        let h = crate::model::faco::Hparams::preset(Preset::Tiny);
        let ck = random_checkpoint(&crate::model::faco::specs(&h), 1, "faco");
        let err = Hparams::infer(&ck).expect_err("not a renderer").to_string();
        assert!(
            err.contains("not a renderer checkpoint") && err.contains("FaCo"),
            "{err}"
        );
    }

    #[test]
    fn bare_generator_state_dict_is_explained() {
        let h = Hparams::preset(Preset::Tiny);
        let mut specs = specs(&h);
        for s in &mut specs {
            s.key = s.key.trim_start_matches("netG.").to_string();
        }
        let ck = random_checkpoint(&specs, 2, "bare");
        let err = Hparams::infer(&ck)
            .expect_err("no netG. prefix")
            .to_string();
        assert!(err.contains("without the `netG.` prefix"), "{err}");
    }
}

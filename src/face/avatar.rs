//! Avatar bundles: everything person-specific, in one directory.
//!
//! ```text
//! avatars/cathy/
//!   avatar.toml      name, canvas size, renderer input size, face centre, drawing style
//!   template.npy     (478, 3) float64  mean canonical face mesh (`templete` of repr.npz)
//!   shoulders.npy    (18, 3)  float64  mean shoulder points
//!   headmotion.npy   (7,)     float64  mean head pose [yaw, pitch, roll, tx, ty, tz, scale]
//!   reference.png    canvas × canvas RGB reference picture
//!   renderer.onnx    the person's renderer
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Tensor, TensorData};
use crate::util::npy;

mod picture;

pub use picture::{decode_png_rgb, read_png_rgb, write_png_rgb};

/// `avatar.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvatarConfig {
    /// Display name.
    pub name: String,
    /// Side of the square canvas the mesh is drawn on (the official 512).
    #[serde(default = "default_canvas")]
    pub canvas: usize,
    /// Side of the renderer input; the condition image and reference are shrunk 2×2 to it when
    /// smaller than the canvas (256 or 512).
    pub renderer_size: usize,
    /// Centre of the canonical space the motion is expressed in (official: 256, 235, 128):
    /// the pose step subtracts it before rotating (see [`crate::face::pose`]). Each value must
    /// be finite and within `0..=canvas`.
    #[serde(default = "default_centre", deserialize_with = "three_numbers")]
    pub face_centre: [f64; 3],
    /// Drawing style of the condition image (only the official "moda" style exists).
    #[serde(default = "default_style")]
    pub style: String,
}

fn default_canvas() -> usize {
    512
}
fn default_centre() -> [f64; 3] {
    [256.0, 235.0, 128.0]
}
fn default_style() -> String {
    "moda".into()
}

/// `face_centre`: exactly three numbers, with a message that says so (serde's own speaks of
/// tuples of a size).
fn three_numbers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[f64; 3], D::Error> {
    let v = Vec::<f64>::deserialize(d)?;
    <[f64; 3]>::try_from(v.as_slice()).map_err(|_| {
        serde::de::Error::custom(format!(
            "face_centre has {} values, expected 3 numbers [x, y, z]",
            v.len()
        ))
    })
}

/// A loaded avatar bundle.
#[derive(Clone, Debug)]
pub struct Avatar {
    pub dir: PathBuf,
    pub config: AvatarConfig,
    /// 478 × 3, row-major.
    pub template: Vec<f64>,
    /// 18 × 3, row-major.
    pub shoulders: Vec<f64>,
    pub headmotion: [f64; 7],
    /// canvas × canvas × 3 RGB.
    pub reference: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum AvatarError {
    #[error("avatar {dir}: cannot read {file}: {detail}")]
    Read {
        dir: PathBuf,
        file: &'static str,
        detail: String,
    },
    #[error("avatar {dir}: {file} has shape {found}, expected {expected}")]
    Shape {
        dir: PathBuf,
        file: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error("avatar {dir}: avatar.toml: {detail}")]
    Config { dir: PathBuf, detail: String },
    /// An array file that is not a usable `.npy` (the message names the file).
    #[error(transparent)]
    Array(crate::util::npy::NpyError),
    /// A value in an array file that the pose step cannot use.
    #[error("avatar {dir}: {file}: {detail}")]
    Value {
        dir: PathBuf,
        file: &'static str,
        detail: String,
    },
    /// The reference picture is not a PNG of the expected size and colour type.
    #[error("{path}: {detail}")]
    Image { path: PathBuf, detail: String },
    #[error("renderer model {path}: {detail}")]
    Renderer { path: PathBuf, detail: String },
    #[error("cannot build the synthetic demo subject: {0}")]
    Synthetic(String),
    #[error("cannot write avatar file {path}: {detail}")]
    Write { path: PathBuf, detail: String },
}

impl AvatarConfig {
    /// The official drawing set-up (512 canvas, centre, "moda" style) for a new bundle in
    /// `out_dir`, checked.
    fn new_checked(
        name: String,
        renderer_size: usize,
        out_dir: &Path,
    ) -> Result<AvatarConfig, AvatarError> {
        let config = AvatarConfig {
            name,
            canvas: 512,
            renderer_size,
            face_centre: default_centre(),
            style: default_style(),
        };
        config.validate().map_err(|detail| AvatarError::Config {
            dir: out_dir.into(),
            detail,
        })?;
        Ok(config)
    }

    /// Parses and checks the text of an `avatar.toml`. The error is one line, with the line
    /// number of a syntax or type error.
    ///
    /// # Errors
    /// A description of the first problem.
    pub fn from_toml(text: &str) -> Result<AvatarConfig, String> {
        let config: AvatarConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .and_then(|s| text.get(..s.start))
                .map(|before| before.matches('\n').count() + 1);
            let detail = plain_serde_words(e.message());
            match line {
                Some(line) => format!("line {line}: {detail}"),
                None => detail,
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values a user may get wrong.
    fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name is empty; expected the avatar's display name".into());
        }
        if self.canvas != 512 {
            return Err(format!(
                "canvas = {} is not supported; expected 512 (the official drawing canvas)",
                self.canvas
            ));
        }
        if self.renderer_size != 512 && self.renderer_size != 256 {
            return Err(format!(
                "renderer_size = {} is not supported; expected 256 or 512",
                self.renderer_size
            ));
        }
        if self.style != "moda" {
            return Err(format!(
                "style = {:?} is unknown; expected \"moda\"",
                self.style
            ));
        }
        let limit = self.canvas as f64;
        if let Some(v) = self
            .face_centre
            .iter()
            .find(|v| !(v.is_finite() && (0.0..=limit).contains(*v)))
        {
            return Err(format!(
                "face_centre = {:?} holds {v}; expected finite values within 0 to {} (the canvas)",
                self.face_centre, self.canvas
            ));
        }
        Ok(())
    }
}

/// serde's type names in words a user knows.
fn plain_serde_words(message: &str) -> String {
    message
        .replace("expected usize", "expected a whole number")
        .replace("expected f64", "expected a number")
        .replace("a sequence", "an array")
        .trim_end()
        .replace('\n', " ")
}

impl Avatar {
    /// Loads and checks a bundle directory.
    ///
    /// # Errors
    /// An [`AvatarError`] naming the file and what was expected.
    pub fn load(dir: &Path) -> Result<Avatar, AvatarError> {
        let read_err = |file: &'static str, detail: String| AvatarError::Read {
            dir: dir.into(),
            file,
            detail,
        };
        let text = std::fs::read_to_string(dir.join("avatar.toml"))
            .map_err(|e| read_err("avatar.toml", e.to_string()))?;
        let config = AvatarConfig::from_toml(&text).map_err(|detail| AvatarError::Config {
            dir: dir.into(),
            detail,
        })?;
        let array = |file: &'static str,
                     expected_shape: &[usize],
                     expected: &'static str|
         -> Result<Vec<f64>, AvatarError> {
            let t = npy::read_finite(&dir.join(file)).map_err(AvatarError::Array)?;
            if t.shape != expected_shape
                || !matches!(t.data, TensorData::F64(_) | TensorData::F32(_))
            {
                return Err(AvatarError::Shape {
                    dir: dir.into(),
                    file,
                    found: format!(
                        "{} {}",
                        crate::model::checkpoint::shape_string(&t.shape),
                        t.dtype()
                    ),
                    expected,
                });
            }
            Ok(t.to_f64_vec())
        };
        let template = array("template.npy", &[478, 3], "(478, 3) float64")?;
        let shoulders = array("shoulders.npy", &[18, 3], "(18, 3) float64")?;
        let hm = array("headmotion.npy", &[7], "(7,) float64")?;
        let headmotion = <[f64; 7]>::try_from(hm.as_slice()).map_err(|_| AvatarError::Shape {
            dir: dir.into(),
            file: "headmotion.npy",
            found: format!("{} values", hm.len()),
            expected: "(7,) float64",
        })?;
        check_scale(headmotion[6]).map_err(|detail| AvatarError::Value {
            dir: dir.into(),
            file: "headmotion.npy",
            detail,
        })?;
        let reference = read_png_rgb(&dir.join("reference.png"), config.canvas, config.canvas)?;
        if !dir.join("renderer.onnx").is_file() {
            return Err(read_err("renderer.onnx", "file not found".into()));
        }
        Ok(Avatar {
            dir: dir.into(),
            config,
            template,
            shoulders,
            headmotion,
            reference,
        })
    }

    /// The subject means as the pose step takes them.
    pub fn repr(&self) -> crate::face::repr::Repr {
        let points = |v: &[f64]| v.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
        crate::face::repr::Repr {
            templete: points(&self.template),
            shoulder: points(&self.shoulders),
            headmotion: self.headmotion,
            centre: self.config.face_centre,
        }
    }

    pub fn renderer_path(&self) -> PathBuf {
        self.dir.join("renderer.onnx")
    }
}

/// Writes a bundle (the renderer ONNX bytes given separately).
///
/// # Errors
/// [`AvatarError::Write`] naming the file.
pub fn write_bundle(
    dir: &Path,
    config: &AvatarConfig,
    template: &[[f64; 3]],
    shoulders: &[[f64; 3]],
    headmotion: &[f64; 7],
    reference: &[u8],
    renderer_onnx: &[u8],
) -> Result<(), AvatarError> {
    let werr = |path: PathBuf, e: &dyn std::fmt::Display| AvatarError::Write {
        path,
        detail: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| werr(dir.into(), &e))?;
    let toml_text = toml::to_string(config).map_err(|e| werr(dir.join("avatar.toml"), &e))?;
    std::fs::write(dir.join("avatar.toml"), toml_text)
        .map_err(|e| werr(dir.join("avatar.toml"), &e))?;
    let f64s = |shape: Vec<usize>, v: &[f64]| Tensor {
        shape,
        data: TensorData::F64(v.to_vec()),
    };
    let (template, shoulders) = (template.as_flattened(), shoulders.as_flattened());
    for (file, t) in [
        ("template.npy", f64s(vec![478, 3], template)),
        ("shoulders.npy", f64s(vec![18, 3], shoulders)),
        ("headmotion.npy", f64s(vec![7], headmotion)),
    ] {
        npy::write(&dir.join(file), &t).map_err(|e| werr(dir.join(file), &e))?;
    }
    write_png_rgb(
        &dir.join("reference.png"),
        config.canvas,
        config.canvas,
        reference,
    )
    .map_err(|e| werr(dir.join("reference.png"), &e))?;
    std::fs::write(dir.join("renderer.onnx"), renderer_onnx)
        .map_err(|e| werr(dir.join("renderer.onnx"), &e))?;
    Ok(())
}

/// The head-pose scale divides every canonical coordinate: zero, negative or absurdly small
/// values put the face off the canvas or at infinity.
fn check_scale(scale: f64) -> Result<(), String> {
    if scale > 1e-6 {
        Ok(())
    } else {
        Err(format!(
            "the head scale (element 6) is {scale}; expected a positive value (official avatars: about 1)"
        ))
    }
}

/// `moda-edge import avatar`: a bundle from an official `meta_dir` (`repr.npz`, `reference.pth`)
/// and the person's renderer checkpoint.
///
/// # Errors
/// An [`AvatarError`] naming the file and what was expected.
pub fn import_official(
    meta_dir: &Path,
    renderer_checkpoint: &Path,
    renderer_size: usize,
    out_dir: &Path,
) -> Result<AvatarConfig, AvatarError> {
    let read_err = |file: &'static str, detail: String| AvatarError::Read {
        dir: meta_dir.into(),
        file,
        detail,
    };
    let repr = crate::face::repr::Repr::load(&meta_dir.join("repr.npz"))
        .map_err(|e| read_err("repr.npz", e.to_string()))?;
    let (h, w, reference) = crate::model::load_reference_image(&meta_dir.join("reference.pth"))
        .map_err(|e| read_err("reference.pth", e.to_string()))?;
    if h != 512 || w != 512 {
        return Err(AvatarError::Shape {
            dir: meta_dir.into(),
            file: "reference.pth",
            found: format!("{w}×{h}"),
            expected: "a 512×512 RGB reference picture",
        });
    }
    let name = meta_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "avatar".into());
    let config = AvatarConfig::new_checked(name, renderer_size, out_dir)?;
    let model = crate::model::import::import(
        crate::model::import::Network::Renderer,
        renderer_checkpoint,
        &crate::model::import::ImportOptions::default(),
    )
    .map_err(|e| AvatarError::Read {
        dir: meta_dir.into(),
        file: "renderer checkpoint",
        detail: e.to_string(),
    })?;
    write_bundle(
        out_dir,
        &config,
        &repr.templete,
        &repr.shoulder,
        &repr.headmotion,
        &reference,
        &crate::model::onnx::encode(&model),
    )?;
    Ok(config)
}

/// `moda-edge avatar demo`: the synthetic, licence-clean demo subject
/// ([`crate::face::synthetic`]) with its painted reference picture and the given renderer
/// (e.g. `renderer.onnx` of `models init`), written as a bundle.
///
/// # Errors
/// An [`AvatarError`] naming the file and what was expected.
pub fn write_synthetic(
    renderer_onnx: &Path,
    renderer_size: usize,
    out_dir: &Path,
) -> Result<AvatarConfig, AvatarError> {
    let config =
        AvatarConfig::new_checked("synthetic demo subject".into(), renderer_size, out_dir)?;
    let renderer_err = |detail: String| AvatarError::Renderer {
        path: renderer_onnx.into(),
        detail,
    };
    let bytes = std::fs::read(renderer_onnx).map_err(|e| renderer_err(e.to_string()))?;
    let model = crate::model::OnnxModel::from_bytes(renderer_onnx, bytes).map_err(|e| match e {
        crate::model::ShapeError::NotOnnx { detail, .. } => renderer_err(detail),
        other => renderer_err(other.to_string()),
    })?;
    let kind = model.metadata.get("moda.kind").map(String::as_str);
    if kind != Some("renderer") {
        return Err(renderer_err(format!(
            "this is {}; expected a renderer (moda.kind = renderer, e.g. renderer.onnx of `models init`)",
            kind.map_or("not a moda-edge model".to_string(), |k| format!("a {k} model"))
        )));
    }
    let tables = crate::face::tables::Tables::official()
        .map_err(|e| AvatarError::Synthetic(e.to_string()))?;
    let synth = |e: crate::face::synthetic::SyntheticError| AvatarError::Synthetic(e.to_string());
    let subject = crate::face::synthetic::SyntheticSubject::build(&tables).map_err(synth)?;
    let reference = crate::face::portrait::paint_reference(&subject, &tables).map_err(synth)?;
    write_bundle(
        out_dir,
        &config,
        &subject.template,
        &subject.shoulders,
        &subject.headmotion,
        &reference,
        model.bytes(),
    )?;
    Ok(config)
}

//! FaCo-Net, the lip/eye to full-face refiner (official `models/componments/faco_net.py`,
//! `subject_head point`).
//!
//! ```text
//! m = MLP_lip(lip)        [1,F,120]  → [1,F,128]
//! e = MLP_eye(eye)        [1,F,180]  → [1,F,128]
//! s = MLP_subject(tmpl)   [1,1434]   → [1,256]      (broadcast over frames)
//! mesh = MLP_dec([m ‖ e] + s)        → [1,F,1434]   residual of all 478 vertices
//! ```
//!
//! Every MLP is Linear, LeakyReLU(0.2), …, Linear, without normalisation. The output is the
//! residual: the pipeline adds the template afterwards, as the official inference does.

use super::checkpoint::{shape_string, Checkpoint, CheckpointError};
use super::nn::{mlp, mlp_dims, mlp_specs};
use super::onnx::{Dim, Graph};
use super::spec::ParamSpec;
use super::Preset;

/// Flattened lip residual width (40 points × xyz): the `lip` input.
pub const LIP_DIM: usize = 120;
/// Flattened eye residual width (60 points × xyz): the `eye` input.
pub const EYE_DIM: usize = 180;
/// Flattened mesh width (478 points × xyz): the `template` input and the `mesh` output.
pub const VERTEX_DIM: usize = 1434;

const LIP: &str = "driven_m_encoder";
const EYE: &str = "driven_e_encoder";
const SUBJECT: &str = "subject_encoder";
const DECODER: &str = "decoder";

/// Layer widths of the four MLPs, input first, output last.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Hparams {
    /// `driven_m_encoder`: 120 → … → lip code.
    pub lip: Vec<usize>,
    /// `driven_e_encoder`: 180 → … → eye code.
    pub eye: Vec<usize>,
    /// `subject_encoder`: 1434 → … → lip code + eye code.
    pub subject: Vec<usize>,
    /// `decoder`: lip code + eye code → … → 1434.
    pub decoder: Vec<usize>,
}

impl Hparams {
    /// The official sizes (release) or a small variant with the same contract dims (tiny).
    pub fn preset(preset: Preset) -> Hparams {
        match preset {
            Preset::Release => Hparams {
                lip: vec![LIP_DIM, 256, 256, 128],
                eye: vec![EYE_DIM, 256, 256, 128],
                subject: vec![VERTEX_DIM, 128, 128, 256],
                decoder: vec![256, 512, 512, 512, VERTEX_DIM],
            },
            Preset::Tiny => Hparams {
                lip: vec![LIP_DIM, 32, 32, 16],
                eye: vec![EYE_DIM, 32, 32, 16],
                subject: vec![VERTEX_DIM, 16, 16, 32],
                decoder: vec![32, 48, 48, 48, VERTEX_DIM],
            },
        }
    }

    /// Reads the MLP widths from the tensor shapes of `ck`.
    ///
    /// # Errors
    /// [`CheckpointError::WrongKind`] when `ck` has no FaCo encoder (with a hint of what it
    /// looks like), [`CheckpointError::ShapeMismatch`] when a width breaks the `faco.onnx`
    /// contract (inputs 120/180/1434, output 1434, decoder input = lip + eye code = subject
    /// code).
    pub fn infer(ck: &Checkpoint) -> Result<Hparams, CheckpointError> {
        let dims = |prefix: &str| {
            mlp_dims(ck, prefix, false).ok_or_else(|| CheckpointError::WrongKind {
                path: ck.path.clone(),
                expected: "FaCo",
                detail: format!(
                    "it has no `{prefix}.layers.0.weight`; it looks like {}",
                    kind_hint(ck)
                ),
            })
        };
        let h = Hparams {
            lip: dims(LIP)?,
            eye: dims(EYE)?,
            subject: dims(SUBJECT)?,
            decoder: dims(DECODER)?,
        };
        let last = |d: &[usize]| d[d.len() - 1];
        let code = last(&h.lip) + last(&h.eye);
        let n_subject = h.subject.len() - 1;
        let n_decoder = h.decoder.len() - 1;
        let checks: [(String, usize, usize, bool); 5] = [
            (format!("{LIP}.layers.0.weight"), LIP_DIM, h.lip[0], false),
            (format!("{EYE}.layers.0.weight"), EYE_DIM, h.eye[0], false),
            (
                format!("{SUBJECT}.layers.0.weight"),
                VERTEX_DIM,
                h.subject[0],
                false,
            ),
            (
                format!("{SUBJECT}.layers.{}.weight", 2 * (n_subject - 1)),
                code,
                last(&h.subject),
                true,
            ),
            (
                format!("{DECODER}.layers.{}.weight", 2 * (n_decoder - 1)),
                VERTEX_DIM,
                last(&h.decoder),
                true,
            ),
        ];
        for (key, want, got, is_out) in checks {
            if want != got {
                return Err(contract_error(ck, &key, want, is_out));
            }
        }
        if h.decoder[0] != code {
            return Err(contract_error(
                ck,
                &format!("{DECODER}.layers.0.weight"),
                code,
                false,
            ));
        }
        Ok(h)
    }

    /// Hyper-parameters for the ONNX metadata props (`moda.faco.*`).
    pub fn metadata(&self) -> Vec<(String, String)> {
        let join = |d: &[usize]| d.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        vec![
            ("moda.faco.lip_dims".into(), join(&self.lip)),
            ("moda.faco.eye_dims".into(), join(&self.eye)),
            ("moda.faco.subject_dims".into(), join(&self.subject)),
            ("moda.faco.decoder_dims".into(), join(&self.decoder)),
        ]
    }
}

fn contract_error(ck: &Checkpoint, key: &str, want: usize, is_out: bool) -> CheckpointError {
    let found = ck.shape(key).unwrap_or_default();
    let mut expected = found.to_vec();
    if let Some(d) = expected.get_mut(usize::from(!is_out)) {
        *d = want;
    }
    CheckpointError::ShapeMismatch {
        path: ck.path.clone(),
        key: key.to_string(),
        expected: shape_string(&expected),
        found: shape_string(found),
    }
}

/// Every state_dict entry of FaCo-Net with `h`'s sizes, in the official key order.
pub fn specs(h: &Hparams) -> Vec<ParamSpec> {
    let mut v = mlp_specs(SUBJECT, &h.subject, false);
    v.extend(mlp_specs(LIP, &h.lip, false));
    v.extend(mlp_specs(EYE, &h.eye, false));
    v.extend(mlp_specs(DECODER, &h.decoder, false));
    v
}

/// The `faco.onnx` graph: inputs `lip` [1,F,120], `eye` [1,F,180], `template` [1,1434];
/// output `mesh` [1,F,1434] (the residual, template not added).
///
/// `ck` must have passed [`super::spec::validate`] against [`specs`]`(h)`.
pub fn build(ck: &Checkpoint, h: &Hparams) -> Graph {
    let mut g = Graph::new();
    let f = Dim::Sym("F");
    let lip = g.input("lip", &[Dim::Fixed(1), f, Dim::Fixed(LIP_DIM)]);
    let eye = g.input("eye", &[Dim::Fixed(1), f, Dim::Fixed(EYE_DIM)]);
    let template = g.input("template", &[Dim::Fixed(1), Dim::Fixed(VERTEX_DIM)]);
    let m = mlp(&mut g, ck, LIP, h.lip.len() - 1, false, &lip);
    let e = mlp(&mut g, ck, EYE, h.eye.len() - 1, false, &eye);
    let driven = g.concat(&[&m, &e], -1);
    // [1, code] broadcasts against [1, F, code] over the frame axis.
    let subject = mlp(&mut g, ck, SUBJECT, h.subject.len() - 1, false, &template);
    let x = g.add(&driven, &subject);
    let y = mlp(&mut g, ck, DECODER, h.decoder.len() - 1, false, &x);
    g.output(&y, "mesh", &[Dim::Fixed(1), f, Dim::Fixed(VERTEX_DIM)]);
    g
}

/// A short description of what kind of checkpoint `ck` appears to be, for
/// [`CheckpointError::WrongKind`] messages.
pub fn kind_hint(ck: &Checkpoint) -> String {
    let has = |p: &str| ck.tensors.keys().any(|k| k.starts_with(p));
    if ck.tensors.is_empty() {
        "an empty state_dict".into()
    } else if has("netG.") {
        "a renderer checkpoint (keys under `netG.`)".into()
    } else if has("model.model.0.") {
        "a bare RenderGenerator state_dict (keys under `model.model.` without the `netG.` prefix of Render_G)".into()
    } else if has("temporal_body.") || has("audio_encoder") {
        "a MODA checkpoint (keys under `audio_encoder`/`temporal_body`)".into()
    } else if has(LIP) || has(DECODER) {
        "a FaCo checkpoint".into()
    } else {
        let first: Vec<&str> = ck.tensors.keys().take(3).map(String::as_str).collect();
        format!(
            "something else ({} keys, starting with `{}`)",
            ck.tensors.len(),
            first.join("`, `")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::{random_checkpoint, validate};

    #[test]
    fn presets_round_trip_through_infer() {
        for preset in [Preset::Release, Preset::Tiny] {
            let h = Hparams::preset(preset);
            let ck = random_checkpoint(&specs(&h), 7, "faco");
            validate(&ck, &specs(&h), "FaCo").expect("valid");
            assert_eq!(Hparams::infer(&ck).expect("infer"), h);
        }
    }

    #[test]
    fn renderer_checkpoint_is_wrong_kind() {
        let specs = vec![ParamSpec::new(
            "netG.model.model.0.weight",
            &[4, 19, 3, 3],
            crate::model::spec::Init::Bias,
        )];
        let ck = random_checkpoint(&specs, 1, "renderer");
        let err = Hparams::infer(&ck).expect_err("not FaCo").to_string();
        assert!(
            err.contains("not a FaCo checkpoint") && err.contains("renderer"),
            "{err}"
        );
    }

    #[test]
    fn wrong_input_width_is_reported() {
        let mut h = Hparams::preset(Preset::Tiny);
        h.lip[0] = 100;
        let ck = random_checkpoint(&specs(&h), 3, "faco");
        let err = Hparams::infer(&ck).expect_err("contract").to_string();
        assert!(
            err.contains("driven_m_encoder.layers.0.weight") && err.contains("[32, 120]"),
            "{err}"
        );
    }
}

//! `moda-edge calibration make`: a calibration set from the recipe (calibration/recipe.toml),
//! made by the project itself and licence-clean: the synthetic demo subject
//! ([`crate::face::synthetic`]) turned through the recipe's head poses, drawn into condition
//! images exactly as the frame stage draws them, with its painted reference picture and the
//! temporal code of the recipe's frames. Deterministic: the same recipe gives the same bytes.
//!
//! Written: `OUT/renderer/<NNNN>/{mesh_image,reference,time_code}.npy`, the layout `moda-edge
//! calibrate --set` reads.

use std::path::Path;

use serde::Deserialize;

use super::QuantError;
use crate::draw::condition::{ConditionDrawer, DrawSettings};
use crate::draw::convert::{shrink_2x, u8_hwc_to_unit_chw};
use crate::draw::timecode::time_code;
use crate::face::pose::HeadPose;
use crate::face::synthetic::SyntheticSubject;
use crate::face::tables::Tables;
use crate::model::Tensor;
use crate::util::npy;

/// The drawing canvas of the official pipeline.
const CANVAS: usize = 512;

/// The recipe file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub renderer: RendererRecipe,
    /// Speech for MODA (needs espeak-ng); absent in the checked-in sample recipe.
    pub moda: Option<ModaRecipe>,
}

/// The MODA part of the recipe: every sentence in every voice at every rate.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModaRecipe {
    pub sentences: Vec<String>,
    /// espeak-ng voice names (`espeak-ng --voices`).
    pub voices: Vec<String>,
    /// Speaking rates in words per minute (espeak-ng `-s`, 80 to 450).
    pub rates: Vec<u32>,
    /// Seed of the VAE noise input.
    pub seed: u64,
}

/// The renderer part of the recipe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RendererRecipe {
    /// 256 or 512.
    pub size: usize,
    /// `[yaw, pitch, roll]` degrees added to the rest pose, one sample each.
    pub poses: Vec<[f64; 3]>,
    /// Frame indices of the temporal codes (cycled over the poses).
    pub frames: Vec<usize>,
    /// Mouth openings in canvas pixels (cycled over the poses; default closed): the lower lip
    /// and jaw of the subject are lowered by this much ([`open_mouth`]).
    #[serde(default = "closed_mouth")]
    pub mouths: Vec<f64>,
}

fn closed_mouth() -> Vec<f64> {
    vec![0.0]
}

/// The subject's `template` with the mouth opened by `open` canvas pixels: every point below
/// the inner upper lip's middle and within the mouth's width (the lower lips, the jaw and the
/// chin) moves down, fully near the lips, fading out over the chin and towards the sides.
pub fn open_mouth(template: &[[f64; 3]], open: f64) -> Vec<[f64; 3]> {
    use crate::face::synthetic::lm::{LIPS_INNER, LIPS_OUTER};
    let (left, right) = (template[LIPS_OUTER[0]], template[LIPS_OUTER[1]]);
    let top = template[LIPS_INNER[2]][1];
    let cx = 0.5 * (left[0] + right[0]);
    let hw = 0.5 * (right[0] - left[0]).abs().max(1.0);
    template
        .iter()
        .map(|&[x, y, z]| {
            let across = 1.0 - ((x - cx) / (1.4 * hw)).powi(2);
            let below = y - top;
            let down = if below <= 0.0 || across <= 0.0 {
                0.0
            } else if below <= hw {
                1.0
            } else {
                (1.0 - (below - hw) / (2.0 * hw)).max(0.0)
            };
            [x, y + open * across.max(0.0) * down, z]
        })
        .collect()
}

impl Recipe {
    /// Parses and checks a recipe.
    ///
    /// # Errors
    /// [`QuantError::File`] naming `path` and the key that is wrong.
    pub fn parse(path: &Path, text: &str) -> Result<Recipe, QuantError> {
        let bad = |detail: String| QuantError::File {
            path: path.to_path_buf(),
            detail,
        };
        let r: Recipe = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(line) => bad(format!("line {line}: {}", e.message())),
                None => bad(e.message().to_string()),
            }
        })?;
        if r.renderer.size != 256 && r.renderer.size != 512 {
            return Err(bad(format!(
                "renderer.size is {}, expected 256 or 512",
                r.renderer.size
            )));
        }
        if r.renderer.poses.is_empty() {
            return Err(bad(
                "renderer.poses is empty, expected at least one [yaw, pitch, roll]".into(),
            ));
        }
        if r.renderer.frames.is_empty() {
            return Err(bad(
                "renderer.frames is empty, expected at least one frame index".into(),
            ));
        }
        if r.renderer.mouths.is_empty()
            || r.renderer
                .mouths
                .iter()
                .any(|m| !m.is_finite() || !(0.0..=40.0).contains(m))
        {
            return Err(bad(format!(
                "renderer.mouths is {:?}, expected openings of 0 to 40 pixels (at least one)",
                r.renderer.mouths
            )));
        }
        if let Some(p) = r
            .renderer
            .poses
            .iter()
            .flatten()
            .find(|v| !v.is_finite() || v.abs() > 90.0)
        {
            return Err(bad(format!(
                "renderer.poses has {p}, expected angles within ±90 degrees"
            )));
        }
        if let Some(m) = &r.moda {
            if m.sentences.is_empty() || m.voices.is_empty() || m.rates.is_empty() {
                return Err(bad(
                    "moda.sentences, moda.voices and moda.rates each need at least one entry"
                        .into(),
                ));
            }
            if let Some(rate) = m.rates.iter().find(|r| !(80..=450).contains(*r)) {
                return Err(bad(format!(
                    "moda.rates has {rate}, expected 80 to 450 words per minute"
                )));
            }
        }
        Ok(r)
    }
}

/// Speaks `text` with espeak-ng into a WAV file.
fn speak(text: &str, voice: &str, rate: u32, wav: &Path) -> Result<(), QuantError> {
    let out = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-s", &rate.to_string(), "-w"])
        .arg(wav)
        .arg(text)
        .output()
        .map_err(|e| QuantError::Sample(format!(
            "cannot run espeak-ng ({e}): the recipe's [moda] speech needs it (apt-get install espeak-ng), or leave [moda] out"
        )))?;
    if !out.status.success() {
        return Err(QuantError::Sample(format!(
            "espeak-ng -v {voice} -s {rate} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// MODA samples: every sentence in every voice at every rate, as the normalized 16 kHz
/// waveform, the synthetic subject's template and seeded noise of the matching frame count.
fn make_moda(m: &ModaRecipe, template: &[[f64; 3]], out: &Path) -> Result<usize, QuantError> {
    let tmp = out.join("moda/.speech.wav");
    let file_err = |p: &Path, e: &dyn std::fmt::Display| QuantError::File {
        path: p.to_path_buf(),
        detail: e.to_string(),
    };
    std::fs::create_dir_all(out.join("moda")).map_err(|e| file_err(&out.join("moda"), &e))?;
    let template: Vec<f32> = template.iter().flatten().map(|&v| v as f32).collect();
    let mut k = 0;
    for text in &m.sentences {
        for voice in &m.voices {
            for &rate in &m.rates {
                speak(text, voice, rate, &tmp)?;
                let samples = crate::audio::load_wav_16k(&tmp).map_err(|e| file_err(&tmp, &e))?;
                let waveform = crate::audio::normalize(&samples);
                let frames = crate::motion::offline::frame_count(waveform.len()).max(1);
                let mut noise = vec![0f32; frames * crate::motion::noise::NOISE_DIM];
                crate::motion::noise::Noise::Seeded(m.seed.wrapping_add(k as u64))
                    .fill(0, &mut noise);
                let dir = out.join(format!("moda/{k:04}"));
                std::fs::create_dir_all(&dir).map_err(|e| file_err(&dir, &e))?;
                let files = [
                    ("waveform", Tensor::f32(vec![1, waveform.len()], waveform)),
                    (
                        "template",
                        Tensor::f32(vec![1, template.len()], template.clone()),
                    ),
                    (
                        "noise",
                        Tensor::f32(vec![1, frames, crate::motion::noise::NOISE_DIM], noise),
                    ),
                ];
                for (name, t) in files {
                    let p = dir.join(format!("{name}.npy"));
                    npy::write(&p, &t).map_err(|e| file_err(&p, &e))?;
                }
                k += 1;
            }
        }
    }
    let _ = std::fs::remove_file(&tmp);
    Ok(k)
}

/// Writes the set of `recipe` under `out`; returns the number of samples per network.
///
/// # Errors
/// [`QuantError::File`] for a file that cannot be written, [`QuantError::Sample`] when the
/// synthetic subject cannot be built or drawn.
pub fn make(recipe: &Recipe, out: &Path) -> Result<Vec<(&'static str, usize)>, QuantError> {
    let sample_err = |e: &dyn std::fmt::Display| QuantError::Sample(e.to_string());
    let tables = Tables::official().map_err(|e| sample_err(&e))?;
    let subject = SyntheticSubject::build(&tables).map_err(|e| sample_err(&e))?;
    let reference =
        crate::face::portrait::paint_reference(&subject, &tables).map_err(|e| sample_err(&e))?;
    let r = &recipe.renderer;
    let size = r.size;
    let to_unit = |rgb: &[u8]| -> Result<Tensor, QuantError> {
        let mut small = vec![0u8; size * size * 3];
        if size == CANVAS {
            small.copy_from_slice(rgb);
        } else {
            shrink_2x(rgb, CANVAS, CANVAS, &mut small).map_err(|e| sample_err(&e))?;
        }
        let mut chw = vec![0f32; size * size * 3];
        u8_hwc_to_unit_chw(&small, size, size, &mut chw).map_err(|e| sample_err(&e))?;
        Ok(Tensor::f32(vec![1, 3, size, size], chw))
    };
    let reference = to_unit(&reference)?;
    let mut drawer = ConditionDrawer::new(
        DrawSettings {
            width: CANVAS,
            height: CANVAS,
        },
        tables,
    )
    .map_err(|e| sample_err(&e))?;
    let mut face_px = vec![[0.0; 2]; subject.template.len()];
    let mut shoulder_px = vec![[0.0; 2]; subject.shoulders.len()];
    let mut rgb = vec![0u8; CANVAS * CANVAS * 3];
    for (k, pose) in r.poses.iter().enumerate() {
        let mut h = subject.headmotion;
        for (a, d) in h.iter_mut().zip(pose) {
            *a += d;
        }
        let head = HeadPose::from_params(&h);
        let open = r.mouths[k % r.mouths.len()];
        if open == 0.0 {
            head.project_all(&subject.template, &mut face_px);
        } else {
            head.project_all(&open_mouth(&subject.template, open), &mut face_px);
        }
        head.project_all(&subject.shoulders, &mut shoulder_px);
        drawer
            .process(&face_px, &shoulder_px, &mut rgb)
            .map_err(|e| sample_err(&e))?;
        let frame = r.frames[k % r.frames.len()];
        let dir = out.join(format!("renderer/{k:04}"));
        std::fs::create_dir_all(&dir).map_err(|e| QuantError::File {
            path: dir.clone(),
            detail: e.to_string(),
        })?;
        let files = [
            ("mesh_image", to_unit(&rgb)?),
            ("reference", reference.clone()),
            (
                "time_code",
                Tensor::f32(vec![1, 13], time_code(frame).to_vec()),
            ),
        ];
        for (name, t) in files {
            let p = dir.join(format!("{name}.npy"));
            npy::write(&p, &t).map_err(|e| QuantError::File {
                path: p.clone(),
                detail: e.to_string(),
            })?;
        }
    }
    let mut made = vec![("renderer", r.poses.len())];
    if let Some(m) = &recipe.moda {
        made.push(("moda", make_moda(m, &subject.template, out)?));
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::synthetic::lm;

    #[test]
    fn an_open_mouth_lowers_the_lower_lip_and_jaw_only() {
        let tables = Tables::official().unwrap();
        let subject = SyntheticSubject::build(&tables).unwrap();
        let t = &subject.template;
        let open = open_mouth(t, 10.0);
        let dy = |i: usize| open[i][1] - t[i][1];
        // The inner upper lip's middle and everything above it stay; the chin goes down.
        assert_eq!(dy(lm::LIPS_INNER[2]), 0.0);
        assert_eq!(dy(lm::NOSE_TIP), 0.0);
        assert_eq!(dy(lm::FOREHEAD_TOP), 0.0);
        assert!(
            dy(lm::CHIN) > 0.0 && dy(lm::CHIN) <= 10.0,
            "{}",
            dy(lm::CHIN)
        );
        // Lower-lip points (below the upper inner lip, between the corners) move by up to 10.
        let moved = (0..t.len()).filter(|&i| dy(i) > 5.0).count();
        assert!(moved > 5, "{moved} points moved");
        assert!(open
            .iter()
            .zip(t)
            .all(|(a, b)| a[0] == b[0] && a[2] == b[2]));
        assert_eq!(open_mouth(t, 0.0), *t);
    }

    #[test]
    fn mouths_are_checked_and_change_the_condition_image() {
        let base = "[renderer]\nsize = 256\nposes = [[0.0, 0.0, 0.0]]\nframes = [0]\n";
        let parse = |extra: &str| Recipe::parse(Path::new("r.toml"), &format!("{base}{extra}"));
        assert_eq!(parse("").unwrap().renderer.mouths, vec![0.0]);
        let err = parse("mouths = [50.0]\n").unwrap_err().to_string();
        assert!(
            err.contains("renderer.mouths") && err.contains("0 to 40"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let image = |extra: &str, name: &str| {
            make(&parse(extra).unwrap(), &dir.path().join(name)).unwrap();
            npy::read(
                &dir.path()
                    .join(format!("{name}/renderer/0000/mesh_image.npy")),
            )
            .unwrap()
        };
        let closed = image("", "closed");
        let open = image("mouths = [12.0]\n", "open");
        assert_ne!(closed.to_f64_vec(), open.to_f64_vec());
    }
}

//! The motion stage of offline render: MODA over the official windows (20 s, hop 10 s), merge,
//! smoothing, FaCo and the σ 5 smoothing of the non-semantic vertices
//! (`reference/MODA_INFERENCE.md` §3–§4).

use std::collections::HashMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::RenderError;
use crate::backend::{Backend, OnnxModel, Prepared, Session};
use crate::motion::{
    frame_count, merge, smooth_moda_streams, smooth_vertices, windows, SmoothingSettings,
    STEP_SAMPLES,
};

/// Width of the VAE noise per frame.
pub const NOISE_DIM: usize = 128;
/// Frames between the starts of two windows (160 000 samples at 16 kHz / 30 fps).
pub const STEP_FRAMES: usize = 300;

/// Where the VAE noise comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noise {
    /// ε = 0 (z = μ): deterministic, as the golden e2e run.
    Zero,
    /// ε for absolute frame k drawn from a generator seeded by (seed, k): the same frame gets
    /// the same noise whichever window it falls in.
    Seeded(u64),
}

impl Noise {
    /// Fills `out` (F × 128) with the noise of frames `first..first + F`.
    pub fn fill(self, first: usize, out: &mut [f32]) {
        match self {
            Noise::Zero => out.fill(0.0),
            Noise::Seeded(seed) => {
                for (i, row) in out.chunks_exact_mut(NOISE_DIM).enumerate() {
                    let k = (first + i) as u64;
                    let mut rng = ChaCha8Rng::seed_from_u64(
                        seed ^ k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    );
                    for x in row.iter_mut() {
                        *x = StandardNormal.sample(&mut rng);
                    }
                }
            }
        }
    }
}

/// A MODA graph prepared for one window shape, with its session.
type Warm<B> = (
    <B as Backend>::Prepared,
    <<B as Backend>::Prepared as Prepared>::Session,
);

/// The four MODA streams, T frames each, row-major (T × channels).
#[derive(Clone, Debug, Default)]
pub struct Streams {
    pub lip: Vec<f32>,
    pub eye: Vec<f32>,
    pub head: Vec<f32>,
    pub torso: Vec<f32>,
}

/// Everything the motion stage produces (all kept for `--dump`).
#[derive(Clone, Debug)]
pub struct Motion {
    pub frames: usize,
    pub merged: Streams,
    pub smoothed: Streams,
    /// FaCo output, T × 478 × 3 residuals.
    pub faco_raw: Vec<f32>,
    pub faco_smoothed: Vec<f32>,
}

const CHANNELS: [(&str, usize); 4] = [("lip", 120), ("eye", 180), ("head", 7), ("torso", 54)];

/// Runs MODA window by window on the normalized waveform and merges the windows.
///
/// # Errors
/// When the model is not a wav2vec MODA graph, or the backend fails.
pub fn run_moda<B: Backend>(
    backend: &B,
    moda: &OnnxModel,
    waveform: &[f32],
    template: &[f32],
    noise: Noise,
) -> Result<Streams, RenderError> {
    if !moda.inputs.iter().any(|(n, _)| n == "waveform") {
        return Err(RenderError::Model(format!(
            "{} has no `waveform` input (inputs: {}); render needs a MODA model with the wav2vec audio head",
            moda.label,
            moda.describe_inputs()
        )));
    }
    // One prepared graph and session per window shape: full windows share one, so the session
    // stays warm (and its run pool filled) from window to window.
    let mut prepared: HashMap<(usize, usize), Warm<B>> = HashMap::new();
    let mut per_stream: Vec<Vec<Vec<f32>>> = vec![Vec::new(); 4];
    for (i, range) in windows(waveform.len()).into_iter().enumerate() {
        let clip = &waveform[range.clone()];
        let f = frame_count(clip.len());
        if f < 2 {
            return Err(RenderError::Input(format!(
                "the audio is too short: window {i} has {} samples, {f} frame(s); at least 2 frames (1,067 samples at 16 kHz) are needed",
                clip.len()
            )));
        }
        debug_assert_eq!(range.start, i * STEP_SAMPLES);
        let key = (clip.len(), f);
        let (p, session) = match prepared.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                log::info!("preparing MODA for {} samples, {f} frames", clip.len());
                let shapes = [
                    ("waveform", vec![1, clip.len()]),
                    ("template", vec![1, 1434]),
                    ("noise", vec![1, f, NOISE_DIM]),
                ];
                let p = backend.prepare(moda, &shapes)?;
                let session = p.session()?;
                e.insert((p, session))
            }
        };
        for (idx, spec) in p.inputs().iter().enumerate() {
            let buf = session.input_mut(idx);
            match spec.name.as_str() {
                "waveform" => buf.copy_from_slice(clip),
                "template" => buf.copy_from_slice(template),
                _ => noise.fill(i * STEP_FRAMES, buf),
            }
        }
        session.run()?;
        for (s, (name, _)) in CHANNELS.iter().enumerate() {
            let idx = output_index(p.outputs(), name, moda)?;
            per_stream[s].push(session.output(idx).to_vec());
        }
    }
    let mut merged = per_stream
        .iter()
        .zip(CHANNELS)
        .map(|(outs, (_, c))| merge(outs, c));
    let mut next = || {
        merged
            .next()
            .expect("four streams")
            .map_err(|e| RenderError::Model(e.to_string()))
    };
    Ok(Streams {
        lip: next()?,
        eye: next()?,
        head: next()?,
        torso: next()?,
    })
}

fn output_index(
    outputs: &[crate::backend::IoSpec],
    name: &str,
    model: &OnnxModel,
) -> Result<usize, RenderError> {
    outputs
        .iter()
        .position(|o| o.name == name)
        .ok_or_else(|| RenderError::Model(format!("{} has no output `{name}`", model.label)))
}

/// Smoothing, FaCo and the refine smoothing on merged MODA streams.
///
/// # Errors
/// When FaCo cannot run.
pub fn compose<B: Backend>(
    backend: &B,
    faco: &OnnxModel,
    merged: Streams,
    template: &[f32],
    non_semantic: &[usize],
) -> Result<Motion, RenderError> {
    let frames = merged.lip.len() / 120;
    let mut smoothed = merged.clone();
    let settings = SmoothingSettings::default();
    smooth_moda_streams(
        &settings,
        &mut smoothed.lip,
        &mut smoothed.eye,
        &mut smoothed.head,
        &mut smoothed.torso,
    )
    .map_err(|e| RenderError::Model(e.to_string()))?;
    let shapes = [
        ("lip", vec![1, frames, 120]),
        ("eye", vec![1, frames, 180]),
        ("template", vec![1, 1434]),
    ];
    let p = backend.prepare(faco, &shapes)?;
    let mut session = p.session()?;
    for (idx, spec) in p.inputs().iter().enumerate() {
        let src: &[f32] = match spec.name.as_str() {
            "lip" => &smoothed.lip,
            "eye" => &smoothed.eye,
            _ => template,
        };
        session.input_mut(idx).copy_from_slice(src);
    }
    session.run()?;
    let faco_raw = session
        .output(output_index(p.outputs(), "mesh", faco)?)
        .to_vec();
    let mut faco_smoothed = faco_raw.clone();
    smooth_vertices(&mut faco_smoothed, 478, non_semantic, settings.faco_others)
        .map_err(|e| RenderError::Model(e.to_string()))?;
    Ok(Motion {
        frames,
        merged,
        smoothed,
        faco_raw,
        faco_smoothed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_noise_of_a_frame_does_not_depend_on_its_window() {
        let mut a = vec![0f32; 600 * NOISE_DIM];
        let mut b = vec![0f32; 600 * NOISE_DIM];
        Noise::Seeded(5).fill(0, &mut a);
        Noise::Seeded(5).fill(STEP_FRAMES, &mut b);
        assert_eq!(&a[STEP_FRAMES * NOISE_DIM..], &b[..300 * NOISE_DIM]);
        assert_ne!(&a[..NOISE_DIM], &b[..NOISE_DIM]);
        let mut c = vec![0f32; NOISE_DIM];
        Noise::Seeded(6).fill(0, &mut c);
        assert_ne!(&a[..NOISE_DIM], &c[..]);
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "standard normal: mean {mean}, var {var}"
        );
    }

    #[test]
    fn three_windows_two_of_one_shape_merge_to_every_frame() {
        use crate::backend::tract::TractBackend;
        use crate::model::import::{init, Network};
        use crate::model::Preset;
        // 35 s: windows from 0, 10 and 20 s; the first two are full 20 s windows and share one
        // prepared graph and session.
        let n = 35 * 16_000;
        let waveform: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) / 60.0).collect();
        let moda = OnnxModel::from_proto("moda".into(), init(Network::Moda, Preset::Tiny, 1));
        let template = vec![0.0f32; 1434];
        let streams = run_moda(
            &TractBackend::default(),
            &moda,
            &waveform,
            &template,
            Noise::Seeded(3),
        )
        .unwrap();
        // Three windows, each with its own truncated frame count (the last: 240 000 samples, 449 frames,
        // as the official float64 arithmetic gives); the merge adds all but the 300-frame
        // overlap of every later window.
        let counts: Vec<usize> = crate::motion::offline::windows(n)
            .iter()
            .map(|r| crate::motion::offline::frame_count(r.len()))
            .collect();
        assert_eq!(counts, [600, 600, 449]);
        let frames = 600 + 300 + 149;
        assert_eq!(streams.lip.len(), frames * 120);
        assert_eq!(streams.head.len(), frames * 7);
        assert!(streams
            .lip
            .iter()
            .chain(&streams.torso)
            .all(|v| v.is_finite()));
    }
}

//! Checkpoint → ONNX: read the official checkpoint, normalise key spellings, infer the
//! hyper-parameters from tensor shapes, validate every key strictly, build the graph and stamp
//! the contract metadata. Also `models init`: the same graphs from seeded random weights.

use std::path::Path;

use tract_onnx::pb::ModelProto;

use super::checkpoint::{Checkpoint, CheckpointError};
use super::spec::{random_checkpoint, validate, ParamSpec};
use super::{faco, moda, renderer, Preset};

/// Video frame rate of every MODA stream.
pub const FPS: u32 = 30;
/// Audio sample rate of the MODA audio input.
pub const SAMPLE_RATE: u32 = 16_000;

/// The three networks of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Network {
    Moda,
    Faco,
    Renderer,
}

impl Network {
    /// `moda.kind` metadata value and the file stem in a models directory.
    pub fn name(self) -> &'static str {
        match self {
            Network::Moda => "moda",
            Network::Faco => "faco",
            Network::Renderer => "renderer",
        }
    }
}

/// What tensor shapes cannot tell about a MODA checkpoint's wav2vec 2.0 encoder.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Attention heads of the wav2vec 2.0 encoder (default: 12, wav2vec2-base).
    pub wav2vec_heads: Option<usize>,
    /// Strides of the 7 feature-encoder convolutions (default: 5,2,2,2,2,2,2).
    pub wav2vec_strides: Option<Vec<usize>>,
}

/// Renames key spellings that mean the same tensor to the one the specs use: the weight-norm
/// parametrization names of torch ≥ 2.1 become the legacy `weight_g` / `weight_v`.
pub fn normalise_keys(ck: &mut Checkpoint) {
    let renames: Vec<(String, String)> = ck
        .tensors
        .keys()
        .filter_map(|k| {
            let new = k
                .replace("parametrizations.weight.original0", "weight_g")
                .replace("parametrizations.weight.original1", "weight_v");
            (new != *k).then(|| (k.clone(), new))
        })
        .collect();
    for (old, new) in renames {
        if let Some(t) = ck.tensors.remove(&old) {
            ck.tensors.insert(new, t);
        }
    }
}

/// Imports an official checkpoint file as an ONNX model.
///
/// # Errors
/// A [`CheckpointError`] naming the file (and key, with expected and found shape) when the file
/// is not a checkpoint of `network` or does not match the architecture.
pub fn import(
    network: Network,
    path: &Path,
    opts: &ImportOptions,
) -> Result<ModelProto, CheckpointError> {
    let mut ck = super::load_checkpoint(path)?;
    normalise_keys(&mut ck);
    import_checkpoint(network, &ck, opts)
}

/// [`import`] for a checkpoint already in memory (key spellings already normalised).
///
/// # Errors
/// As [`import`].
pub fn import_checkpoint(
    network: Network,
    ck: &Checkpoint,
    opts: &ImportOptions,
) -> Result<ModelProto, CheckpointError> {
    let arch = Arch::infer(network, ck, opts)?;
    finish(network, ck, &arch)
}

/// The network with seeded random weights at `preset` sizes (`models init`).
pub fn init(network: Network, preset: Preset, seed: u64) -> ModelProto {
    let arch = Arch::preset(network, preset);
    let ck = random_checkpoint(
        &arch.specs(),
        seed,
        &format!("{} {preset:?}", network.name()),
    );
    finish(network, &ck, &arch)
        .expect("random weights are generated from the specs they are validated against")
}

/// One architecture with its hyper-parameters.
enum Arch {
    Moda(moda::Hparams),
    Faco(faco::Hparams),
    Renderer(renderer::Hparams),
}

impl Arch {
    fn infer(
        network: Network,
        ck: &Checkpoint,
        opts: &ImportOptions,
    ) -> Result<Arch, CheckpointError> {
        Ok(match network {
            Network::Moda => Arch::Moda(moda::Hparams::infer(
                ck,
                opts.wav2vec_heads,
                opts.wav2vec_strides.clone(),
            )?),
            Network::Faco => Arch::Faco(faco::Hparams::infer(ck)?),
            Network::Renderer => Arch::Renderer(renderer::Hparams::infer(ck)?),
        })
    }

    fn preset(network: Network, preset: Preset) -> Arch {
        match network {
            Network::Moda => Arch::Moda(moda::Hparams::preset(preset)),
            Network::Faco => Arch::Faco(faco::Hparams::preset(preset)),
            Network::Renderer => Arch::Renderer(renderer::Hparams::preset(preset)),
        }
    }

    fn specs(&self) -> Vec<ParamSpec> {
        match self {
            Arch::Moda(h) => moda::specs(h),
            Arch::Faco(h) => faco::specs(h),
            Arch::Renderer(h) => renderer::specs(h),
        }
    }

    fn build(&self, ck: &Checkpoint) -> super::onnx::Graph {
        match self {
            Arch::Moda(h) => moda::build(ck, h),
            Arch::Faco(h) => faco::build(ck, h),
            Arch::Renderer(h) => renderer::build(ck, h),
        }
    }

    /// The `moda.hparams` metadata value: the hyper-parameters as one JSON object, for tools
    /// and engine builders that need the sizes without reading the graph.
    fn describe(&self) -> String {
        let json = match self {
            Arch::Moda(h) => serde_json::to_string(h),
            Arch::Faco(h) => serde_json::to_string(h),
            Arch::Renderer(h) => serde_json::to_string(h),
        };
        json.expect("plain structs of numbers and names serialize")
    }
}

fn finish(network: Network, ck: &Checkpoint, arch: &Arch) -> Result<ModelProto, CheckpointError> {
    validate(ck, &arch.specs(), network.name())?;
    let graph = arch.build(ck);
    let source = if ck.sha256.is_empty() {
        ck.path.display().to_string()
    } else {
        ck.sha256.clone()
    };
    let metadata = vec![
        ("moda.kind".to_string(), network.name().to_string()),
        ("moda.fps".to_string(), FPS.to_string()),
        ("moda.sample_rate".to_string(), SAMPLE_RATE.to_string()),
        ("moda.source_sha256".to_string(), source),
        ("moda.hparams".to_string(), arch.describe()),
    ];
    Ok(graph.into_model(network.name(), &metadata))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Tensor;
    use std::collections::BTreeMap;

    #[test]
    fn parametrization_names_become_legacy_weight_norm_names() {
        let t = Tensor::f32(vec![1], vec![1.0]);
        let mut tensors = BTreeMap::new();
        tensors.insert(
            "a.conv.parametrizations.weight.original0".to_string(),
            t.clone(),
        );
        tensors.insert(
            "a.conv.parametrizations.weight.original1".to_string(),
            t.clone(),
        );
        tensors.insert("a.conv.bias".to_string(), t);
        let mut ck = Checkpoint {
            path: "x".into(),
            sha256: String::new(),
            tensors,
        };
        normalise_keys(&mut ck);
        let keys: Vec<&str> = ck.tensors.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a.conv.bias", "a.conv.weight_g", "a.conv.weight_v"]);
    }

    fn hparams_json(network: Network) -> serde_json::Value {
        let model = init(network, Preset::Tiny, 1);
        let prop = model
            .metadata_props
            .iter()
            .find(|p| p.key == "moda.hparams")
            .expect("moda.hparams is written");
        serde_json::from_str(&prop.value).expect("moda.hparams is JSON")
    }

    #[test]
    fn hparams_metadata_is_json_with_the_sizes() {
        let faco = hparams_json(Network::Faco);
        assert_eq!(faco["lip"], serde_json::json!([120, 32, 32, 16]));
        assert_eq!(faco["decoder"][4], 1434);

        let renderer = hparams_json(Network::Renderer);
        assert_eq!(renderer["ngf"], 4);
        assert_eq!(renderer["num_downs"], 8);
        assert_eq!(renderer["size"], "normal");

        let moda = hparams_json(Network::Moda);
        assert_eq!(moda["hidden"], 128);
        assert_eq!(moda["body_heads"], 4);
        assert!(
            moda["audio"]["wav2vec"].is_object(),
            "audio head tagged by kind: {}",
            moda["audio"]
        );
    }
}

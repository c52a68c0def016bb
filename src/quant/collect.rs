//! Runs a graph on tract with its calibrated tensors as extra outputs and accumulates their
//! [`TensorStats`] over a calibration set (two passes: maxima, then histograms).

use std::collections::HashMap;

use tract_onnx::prelude::*;

use super::stats::TensorStats;
use super::QuantError;
use crate::model::onnx::pb::ModelProto;
use crate::model::Tensor;

/// One calibration sample: the network's inputs by name.
pub type Sample = Vec<(String, Tensor)>;

/// Statistics of `tensors` of `model` over `samples`, in the order of `tensors`.
///
/// The plan is optimized once per distinct set of input shapes (MODA's audio length varies
/// from sample to sample).
///
/// # Errors
/// [`QuantError::Tract`] when tract cannot load or run the graph, [`QuantError::Sample`] for a
/// sample whose inputs do not fit it.
pub fn collect(
    model: &ModelProto,
    tensors: &[String],
    samples: &[Sample],
) -> Result<Vec<TensorStats>, QuantError> {
    let input_names: Vec<String> = model
        .graph
        .as_ref()
        .map(|g| g.input.iter().map(|i| i.name.clone()).collect())
        .unwrap_or_default();
    let mut plans: HashMap<Vec<Vec<usize>>, std::sync::Arc<TypedRunnableModel>> = HashMap::new();
    let mut stats = vec![TensorStats::new(); tensors.len()];
    for pass in [Pass::Max, Pass::Histogram] {
        for (k, sample) in samples.iter().enumerate() {
            let mut values = Vec::with_capacity(input_names.len());
            for name in &input_names {
                let t = sample
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t)
                    .ok_or_else(|| {
                        QuantError::Sample(format!("sample {k} has no input `{name}`"))
                    })?;
                let data = t.as_f32().ok_or_else(|| {
                    QuantError::Sample(format!("sample {k} input `{name}` is not float32"))
                })?;
                values.push((t.shape.clone(), data));
            }
            let key: Vec<Vec<usize>> = values.iter().map(|(s, _)| s.clone()).collect();
            if !plans.contains_key(&key) {
                plans.insert(key.clone(), prepare(model, tensors, &key)?);
            }
            let plan = &plans[&key];
            let inputs: TVec<TValue> = values
                .iter()
                .map(|(shape, data)| {
                    tract_onnx::prelude::Tensor::from_shape(shape, data).map(|t| t.into_tvalue())
                })
                .collect::<TractResult<_>>()
                .map_err(tract_err)?;
            let outputs = plan.run(inputs).map_err(tract_err)?;
            for (s, out) in stats.iter_mut().zip(outputs.iter()) {
                let cast = out.cast_to::<f32>().map_err(tract_err)?;
                let plain = cast.try_as_plain_ram().map_err(tract_err)?;
                let data = plain.as_slice::<f32>().map_err(tract_err)?;
                match pass {
                    Pass::Max => s.observe_max(data),
                    Pass::Histogram => s.observe_hist(data),
                }
            }
        }
    }
    Ok(stats)
}

#[derive(Clone, Copy)]
enum Pass {
    Max,
    Histogram,
}

fn prepare(
    model: &ModelProto,
    tensors: &[String],
    shapes: &[Vec<usize>],
) -> Result<std::sync::Arc<TypedRunnableModel>, QuantError> {
    let mut m = tract_onnx::onnx()
        .model_for_proto_model(model)
        .map_err(tract_err)?;
    for (i, shape) in shapes.iter().enumerate() {
        m.set_input_fact(i, InferenceFact::dt_shape(f32::datum_type(), shape))
            .map_err(tract_err)?;
    }
    m.select_outputs_by_name(tensors).map_err(tract_err)?;
    m.into_optimized()
        .and_then(|t| t.into_runnable())
        .map_err(tract_err)
}

fn tract_err(e: impl std::fmt::Display) -> QuantError {
    QuantError::Tract(format!("{e:#}"))
}

//! The explicit-quantization graph: QuantizeLinear/DequantizeLinear pairs in front of every
//! quantized layer, as TensorRT's strongly typed INT8 builds and ONNX Runtime's QDQ format
//! read them (opset 17, int8, zero point 0, symmetric).
//!
//! - Activations: one pair per tensor (shared by all the quantized layers reading it), scale
//!   amax/127 from the chosen calibration range.
//! - Weights: stored as an int8 initializer with per-channel scales (max |w| of the channel /
//!   127, along the layer's output-channel axis) and a DequantizeLinear; TensorRT folds it into
//!   the layer. The float initializer goes when no float layer still reads it.
//! - Layers the plan keeps in float get nothing; their inputs stay float.

use std::collections::{HashMap, HashSet};

use super::plan::Plan;
use super::QuantError;
use crate::model::onnx::{a_int, pb};
use pb::{tensor_proto::DataType, NodeProto, TensorProto};

/// The largest int8 magnitude used (symmetric: -127..=127, as TensorRT quantizes).
const QMAX: f32 = 127.0;

/// Scale of a range: amax/127; an empty range (all zeros seen) gets scale 1 so that
/// QuantizeLinear stays defined.
pub fn scale_of(amax: f32) -> f32 {
    if amax > 0.0 && amax.is_finite() {
        amax / QMAX
    } else {
        1.0
    }
}

/// Writes the Q/DQ graph of `model` under `plan`, with activation ranges `amax` by tensor name.
///
/// # Errors
/// [`QuantError::MissingRange`] for a quantized layer's input without a range,
/// [`QuantError::Graph`] for a weight initializer that is not float32 data.
pub fn write(
    model: &pb::ModelProto,
    plan: &Plan,
    amax: &HashMap<String, f32>,
) -> Result<pb::ModelProto, QuantError> {
    let mut out = model.clone();
    let graph = out
        .graph
        .as_mut()
        .ok_or_else(|| QuantError::Graph("no graph".into()))?;
    let by_node: HashMap<&str, &super::plan::Layer> = plan
        .layers
        .iter()
        .filter(|l| !l.kept)
        .map(|l| (l.node.as_str(), l))
        .collect();
    let mut dq_of: HashMap<String, String> = HashMap::new();
    let mut new_inits: Vec<TensorProto> = Vec::new();
    let mut nodes: Vec<NodeProto> = Vec::with_capacity(graph.node.len() * 2);
    let old_nodes = std::mem::take(&mut graph.node);
    for mut node in old_nodes {
        if let Some(layer) = by_node.get(node.name.as_str()) {
            for (slot, tensor) in &layer.activations {
                let dq = match dq_of.get(tensor) {
                    Some(dq) => dq.clone(),
                    None => {
                        let a = *amax
                            .get(tensor)
                            .ok_or_else(|| QuantError::MissingRange(tensor.clone()))?;
                        let scale = format!("{tensor}_scale");
                        let zp = format!("{tensor}_zero_point");
                        new_inits.push(f32_tensor(&scale, &[], &[scale_of(a)]));
                        new_inits.push(i8_tensor(&zp, &[], &[0]));
                        let q = format!("{tensor}_quantized");
                        let dq = format!("{tensor}_dequantized");
                        nodes.push(node_of(
                            "QuantizeLinear",
                            tensor,
                            &[tensor, &scale, &zp],
                            &q,
                            None,
                        ));
                        nodes.push(node_of(
                            "DequantizeLinear",
                            tensor,
                            &[&q, &scale, &zp],
                            &dq,
                            None,
                        ));
                        dq_of.insert(tensor.clone(), dq.clone());
                        dq
                    }
                };
                node.input[*slot] = dq;
            }
            if let Some(w) = &layer.weight {
                let dq = match dq_of.get(&w.initializer) {
                    Some(dq) => dq.clone(),
                    None => {
                        let init = graph
                            .initializer
                            .iter()
                            .find(|t| t.name == w.initializer)
                            .ok_or_else(|| {
                                QuantError::Graph(format!("no initializer {}", w.initializer))
                            })?;
                        let (q, scales) = quantize_weight(init, w.axis)?;
                        let qname = format!("{}_int8", w.initializer);
                        let sname = format!("{}_scale", w.initializer);
                        let zname = format!("{}_zero_point", w.initializer);
                        let dims: Vec<usize> = init.dims.iter().map(|&d| d as usize).collect();
                        new_inits.push(i8_tensor(&qname, &dims, &q));
                        // One scale: scalars (per-tensor); several: 1-D along the axis.
                        let sdims: Vec<usize> = if w.axis.is_some() {
                            vec![scales.len()]
                        } else {
                            vec![]
                        };
                        new_inits.push(f32_tensor(&sname, &sdims, &scales));
                        new_inits.push(i8_tensor(&zname, &sdims, &vec![0; scales.len()]));
                        let dq = format!("{}_dequantized", w.initializer);
                        nodes.push(node_of(
                            "DequantizeLinear",
                            &w.initializer,
                            &[&qname, &sname, &zname],
                            &dq,
                            w.axis.filter(|_| scales.len() > 1).map(|a| a as i64),
                        ));
                        dq_of.insert(w.initializer.clone(), dq.clone());
                        dq
                    }
                };
                node.input[w.input] = dq;
            }
        }
        nodes.push(node);
    }
    graph.node = nodes;
    // Float weights no node reads any more.
    let read: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    let read: HashSet<String> = read.into_iter().map(str::to_string).collect();
    graph.initializer.retain(|t| read.contains(&t.name));
    graph.initializer.extend(new_inits);
    out.metadata_props.push(pb::StringStringEntryProto {
        key: "moda.quantization".into(),
        value: "int8 qdq (per-tensor activations, per-channel weights, symmetric)".into(),
    });
    Ok(out)
}

/// Symmetric int8 weights, per channel along `axis` (or per tensor), and their scales.
fn quantize_weight(
    t: &TensorProto,
    axis: Option<usize>,
) -> Result<(Vec<i8>, Vec<f32>), QuantError> {
    let data = f32_data(t)?;
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let (channels, inner) = match axis {
        Some(axis) => (
            *dims.get(axis).ok_or_else(|| {
                QuantError::Graph(format!("weight {} has no axis {axis}", t.name))
            })?,
            dims[axis + 1..].iter().product(),
        ),
        None => (1, data.len().max(1)),
    };
    let channel_of = |i: usize| (i / inner) % channels;
    let mut amax = vec![0f32; channels];
    for (i, &x) in data.iter().enumerate() {
        let c = channel_of(i);
        amax[c] = amax[c].max(x.abs());
    }
    let scales: Vec<f32> = amax.iter().map(|&a| scale_of(a)).collect();
    let q = data
        .iter()
        .enumerate()
        .map(|(i, &x)| (x / scales[channel_of(i)]).round().clamp(-QMAX, QMAX) as i8)
        .collect();
    Ok((q, scales))
}

fn f32_data(t: &TensorProto) -> Result<Vec<f32>, QuantError> {
    if t.data_type != DataType::Float as i32 {
        return Err(QuantError::Graph(format!(
            "weight {} is ONNX type {}, expected float32",
            t.name, t.data_type
        )));
    }
    if !t.float_data.is_empty() {
        return Ok(t.float_data.clone());
    }
    Ok(t.raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn f32_tensor(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn i8_tensor(name: &str, dims: &[usize], data: &[i8]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Int8 as i32,
        raw_data: data.iter().map(|&x| x as u8).collect(),
        ..Default::default()
    }
}

fn node_of(op: &str, tensor: &str, inputs: &[&str], output: &str, axis: Option<i64>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        name: format!("{tensor}/{op}"),
        op_type: op.into(),
        attribute: axis.map(|a| a_int("axis", a)).into_iter().collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_weights_use_the_full_int8_range() {
        let t = f32_tensor("w", &[2, 3], &[1.0, -0.5, 0.25, 10.0, 5.0, -10.0]);
        let (q, s) = quantize_weight(&t, Some(0)).unwrap();
        assert_eq!(s, vec![1.0 / 127.0, 10.0 / 127.0]);
        assert_eq!(q, vec![127, -64, 32, 127, 64, -127]);
        let (q, s) = quantize_weight(&t, Some(1)).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(q[3], 127);
        let (q, s) = quantize_weight(&t, None).unwrap();
        assert_eq!(s, vec![10.0 / 127.0]);
        assert_eq!(q[0], 13);
    }
}

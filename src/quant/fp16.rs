//! A float16 version of a float32 graph, to measure on the CPU what FP16 arithmetic costs
//! (the TensorRT FP16 engine's loss, simulated): every float initializer and every computed
//! value in float16, the graph's inputs and outputs still float32 through Cast nodes at the
//! edges, so the same inputs run both graphs.
//!
//! Left in float32: Resize's `roi` and `scales` (the operator takes only float32 there), and
//! arithmetic a graph does in float on its input shapes (MODA's frame count from the waveform
//! length, [`shape_arithmetic`]): float16 cannot count samples past 2048 exactly.

use std::collections::HashSet;

use super::QuantError;
use crate::model::onnx::{a_int, pb};
use pb::{tensor_proto::DataType, type_proto, NodeProto};

/// The float16 graph of `model`.
///
/// # Errors
/// [`QuantError::Graph`] for a model without a graph.
pub fn to_float16(model: &pb::ModelProto) -> Result<pb::ModelProto, QuantError> {
    let mut out = model.clone();
    let graph = out
        .graph
        .as_mut()
        .ok_or_else(|| QuantError::Graph("no graph".into()))?;
    let initializers: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let float_initializers: HashSet<String> = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == DataType::Float as i32)
        .map(|t| t.name.clone())
        .collect();
    let ShapeArithmetic {
        casts: shape_casts,
        keep: mut keep32,
        joins,
    } = shape_arithmetic(&graph.node, &initializers, &float_initializers);
    keep32.extend(
        graph
            .node
            .iter()
            .filter(|n| n.op_type == "Resize")
            .flat_map(|n| n.input.iter().skip(1).take(2).cloned()),
    );
    for t in graph.initializer.iter_mut() {
        if t.data_type == DataType::Float as i32 && !keep32.contains(&t.name) {
            let data: Vec<f32> = if t.float_data.is_empty() {
                t.raw_data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            } else {
                std::mem::take(&mut t.float_data)
            };
            t.raw_data = data
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect();
            t.data_type = DataType::Float16 as i32;
        }
    }
    for (k, n) in graph.node.iter_mut().enumerate() {
        if n.op_type == "Cast" && is_to_float(n) && !shape_casts.contains(&k) {
            for a in n.attribute.iter_mut().filter(|a| a.name == "to") {
                a.i = DataType::Float16 as i64;
            }
        }
    }
    let float_io = |v: &pb::ValueInfoProto| {
        matches!(
            v.r#type.as_ref().and_then(|t| t.value.as_ref()),
            Some(type_proto::Value::TensorType(t)) if t.elem_type == DataType::Float as i32
        )
    };
    let mut head = Vec::new();
    for input in graph.input.iter().filter(|v| float_io(v)) {
        let half_name = format!("{}_fp16", input.name);
        for n in graph.node.iter_mut() {
            for i in n.input.iter_mut().filter(|i| **i == input.name) {
                i.clone_from(&half_name);
            }
        }
        head.push(cast(&input.name, &half_name, DataType::Float16));
    }
    let mut tail = Vec::new();
    for output in graph.output.iter().filter(|v| float_io(v)) {
        let half_name = format!("{}_fp16", output.name);
        for n in graph.node.iter_mut() {
            for o in n.output.iter_mut().filter(|o| **o == output.name) {
                o.clone_from(&half_name);
            }
        }
        tail.push(cast(&half_name, &output.name, DataType::Float));
    }
    // Where a shape-derived float32 value meets float16 values, it is cast to float16 first.
    let mut body = Vec::with_capacity(graph.node.len() + joins.len());
    for (k, mut n) in std::mem::take(&mut graph.node).into_iter().enumerate() {
        for &(_, slot) in joins.iter().filter(|(node, _)| *node == k) {
            let from = n.input[slot].clone();
            let to = format!("{from}_fp16_for_{k}");
            body.push(cast(&from, &to, DataType::Float16));
            n.input[slot] = to;
        }
        body.push(n);
    }
    graph.node = head.into_iter().chain(body).chain(tail).collect();
    out.metadata_props.push(pb::StringStringEntryProto {
        key: "moda.precision".into(),
        value: "float16 (float32 inputs and outputs)".into(),
    });
    Ok(out)
}

/// The frame arithmetic a graph does in float on its input shapes (MODA counts frames from
/// the waveform's length: `Shape → … → Cast(float) → Div → Floor → Cast(int64)`), which stays
/// float32 since float16 cannot count samples past 2048 exactly.
struct ShapeArithmetic {
    /// The `Cast(float)` nodes that start it (they keep casting to float32).
    casts: HashSet<usize>,
    /// The float initializers it reads.
    keep: HashSet<String>,
    /// (node, input slot) where one of its values meets other float values: cast to float16
    /// there.
    joins: Vec<(usize, usize)>,
}

fn shape_arithmetic(
    nodes: &[NodeProto],
    initializers: &HashSet<String>,
    float_initializers: &HashSet<String>,
) -> ShapeArithmetic {
    let mut ints: HashSet<&str> = HashSet::new();
    let mut floats: HashSet<&str> = HashSet::new();
    let mut found = ShapeArithmetic {
        casts: HashSet::new(),
        keep: HashSet::new(),
        joins: Vec::new(),
    };
    for (k, n) in nodes.iter().enumerate() {
        let inputs = || n.input.iter().filter(|i| !i.is_empty());
        let shape_valued =
            |i: &str| ints.contains(i) || floats.contains(i) || initializers.contains(i);
        let from_floats = inputs().any(|i| floats.contains(i.as_str()));
        let from_ints = inputs().any(|i| ints.contains(i.as_str()));
        let is_cast = n.op_type == "Cast";
        if n.op_type == "Shape" {
            ints.extend(n.output.iter().map(String::as_str));
        } else if is_cast && is_to_float(n) && from_ints {
            found.casts.insert(k);
            floats.extend(n.output.iter().map(String::as_str));
        } else if is_cast && from_floats {
            // Back to integers: the arithmetic ends here.
            ints.extend(n.output.iter().map(String::as_str));
        } else if from_floats && inputs().all(|i| shape_valued(i)) {
            found
                .keep
                .extend(inputs().filter(|i| initializers.contains(*i)).cloned());
            floats.extend(n.output.iter().map(String::as_str));
        } else if from_floats {
            // Frame arithmetic joins the network's values (a position code scaled by the
            // frame count): the shape value goes in as float16.
            for (slot, i) in n.input.iter().enumerate() {
                if floats.contains(i.as_str()) {
                    found.joins.push((k, slot));
                }
            }
        } else if from_ints && inputs().all(|i| shape_valued(i)) {
            // A float constant taken by shape (a slice of positions 0, 1, 2, … as long as the
            // clip) is frame arithmetic too.
            let data: Vec<String> = inputs()
                .filter(|i| float_initializers.contains(*i))
                .cloned()
                .collect();
            if data.is_empty() {
                ints.extend(n.output.iter().map(String::as_str));
            } else {
                found.keep.extend(data);
                floats.extend(n.output.iter().map(String::as_str));
            }
        }
    }
    found
}

fn is_to_float(n: &NodeProto) -> bool {
    n.attribute
        .iter()
        .any(|a| a.name == "to" && a.i == DataType::Float as i64)
}

fn cast(from: &str, to: &str, dt: DataType) -> NodeProto {
    NodeProto {
        input: vec![from.into()],
        output: vec![to.into()],
        name: format!("{to}/Cast"),
        op_type: "Cast".into(),
        attribute: vec![a_int("to", dt as i64)],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::import::{init, Network};
    use crate::model::Preset;

    /// The release-size MODA counts frames from the waveform's length in float: its two shape
    /// casts keep casting to float32 and the constants of that arithmetic stay float32, while
    /// the weights go to float16. (Run in ONNX Runtime on held-out speech, this graph's `lip`
    /// differed from float by at most 0.001; README, "INT8 calibration".)
    #[test]
    fn moda_frame_arithmetic_stays_float32() {
        let moda = init(Network::Moda, Preset::Release, 1);
        let half = to_float16(&moda).unwrap();
        let graph = half.graph.as_ref().unwrap();
        let to_float32 = graph
            .node
            .iter()
            .filter(|n| n.op_type == "Cast" && is_to_float(n))
            .count();
        // The two frame-count casts, and the casts of the float32 outputs at the end.
        assert_eq!(to_float32, 2 + graph.output.len());
        let float32 = graph
            .initializer
            .iter()
            .filter(|t| t.data_type == DataType::Float as i32)
            .count();
        let float16 = graph
            .initializer
            .iter()
            .filter(|t| t.data_type == DataType::Float16 as i32)
            .count();
        assert!(
            float32 > 0 && float32 < 10,
            "{float32} float32 constants kept"
        );
        assert!(float16 > 100, "{float16} float16 weights");
    }
}

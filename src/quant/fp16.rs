//! A float16 version of a float32 graph, to measure on the CPU what FP16 arithmetic costs
//! (the TensorRT FP16 engine's loss, simulated): every float initializer and every computed
//! value in float16, the graph's inputs and outputs still float32 through Cast nodes at the
//! edges, so the same inputs run both graphs.
//!
//! Left in float32: Resize's `roi` and `scales` (the operator takes only float32 there).
//! Graphs that compute shapes in float (MODA's `Shape → Cast(float)` frame arithmetic) are
//! refused: float16 cannot count samples past 2048 exactly.

use std::collections::HashSet;

use super::QuantError;
use crate::model::onnx::{a_int, pb};
use pb::{tensor_proto::DataType, type_proto, NodeProto};

/// The float16 graph of `model`.
///
/// # Errors
/// [`QuantError::Graph`] for a graph that casts a shape to float.
pub fn to_float16(model: &pb::ModelProto) -> Result<pb::ModelProto, QuantError> {
    let mut out = model.clone();
    let graph = out
        .graph
        .as_mut()
        .ok_or_else(|| QuantError::Graph("no graph".into()))?;
    let shapes: HashSet<String> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Shape")
        .flat_map(|n| n.output.clone())
        .collect();
    if graph.node.iter().any(|n| {
        n.op_type == "Cast" && is_to_float(n) && n.input.iter().any(|i| shapes.contains(i))
    }) {
        return Err(QuantError::Graph(
            "the graph casts a tensor shape to float (frame arithmetic); a float16 version would miscount".into(),
        ));
    }
    let keep32: HashSet<String> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Resize")
        .flat_map(|n| n.input.iter().skip(1).take(2).cloned())
        .collect();
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
    for n in graph.node.iter_mut() {
        if n.op_type == "Cast" && is_to_float(n) {
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
    let body = std::mem::take(&mut graph.node);
    graph.node = head.into_iter().chain(body).chain(tail).collect();
    out.metadata_props.push(pb::StringStringEntryProto {
        key: "moda.precision".into(),
        value: "float16 (float32 inputs and outputs)".into(),
    });
    Ok(out)
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

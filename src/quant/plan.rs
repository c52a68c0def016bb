//! Which layers of a graph are quantized, which stay in float, and which tensors need a range.
//!
//! A *quantized layer* is a Conv, MatMul or Gemm node: TensorRT runs those in INT8 when their
//! inputs carry Q/DQ pairs (explicit) or scales (implicit). Its activation inputs get one
//! per-tensor scale each; its weight (an initializer in the weight slot) gets per-channel
//! scales along the output-channel axis. Every other node runs in float.
//!
//! Kept in float by default, because they are where 8 bits lose the most: the first and last
//! convolution (the image in and the image out), normalizations and softmax (never quantized
//! here anyway: they are not Conv/MatMul/Gemm, listed so the check can see them), and the
//! attention products (a MatMul whose result reaches a Softmax, or that reads one, through at
//! most [`ATTENTION_HOPS`] reshapes and element-wise ops).

use std::collections::{HashMap, HashSet};

use crate::model::onnx::pb::{ModelProto, NodeProto};

/// How far (in nodes) a MatMul may be from a Softmax and still count as attention.
pub const ATTENTION_HOPS: usize = 3;

const QUANTIZED_OPS: [&str; 3] = ["Conv", "MatMul", "Gemm"];
const FLOAT_OPS: [&str; 5] = [
    "InstanceNormalization",
    "LayerNormalization",
    "BatchNormalization",
    "GroupNormalization",
    "Softmax",
];
/// Ops an attention score passes through between its MatMul and its Softmax.
const PASS_OPS: [&str; 6] = ["Mul", "Div", "Add", "Reshape", "Transpose", "Where"];

/// Which layers stay in float (the recipe's `keep`).
#[derive(Clone, Debug)]
pub struct KeepRules {
    /// The first and the last Conv of the graph.
    pub first_last_conv: bool,
    /// MatMuls that compute or apply attention scores.
    pub attention: bool,
    /// Further node names.
    pub names: Vec<String>,
}

impl Default for KeepRules {
    fn default() -> KeepRules {
        KeepRules {
            first_last_conv: true,
            attention: true,
            names: Vec::new(),
        }
    }
}

/// The weight of a quantized layer: its input slot, initializer name and channel axis
/// (`None`: one scale for the whole tensor, for batched MatMul weights of rank 3 and more,
/// whose per-channel form neither ONNX Runtime's integer MatMul nor TensorRT takes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightSlot {
    pub input: usize,
    pub initializer: String,
    pub axis: Option<usize>,
}

/// One Conv/MatMul/Gemm node.
#[derive(Clone, Debug)]
pub struct Layer {
    pub node: String,
    pub op: String,
    /// Activation inputs (not initializers), by input slot.
    pub activations: Vec<(usize, String)>,
    pub output: String,
    pub weight: Option<WeightSlot>,
    /// Kept in float by the rules.
    pub kept: bool,
}

/// The quantization plan of one graph.
#[derive(Clone, Debug)]
pub struct Plan {
    pub layers: Vec<Layer>,
    /// Every node kept in float that the rules name (kept quantizable layers, normalizations,
    /// softmax).
    pub kept_nodes: Vec<String>,
}

impl Plan {
    /// Tensors that need a range: activation inputs and outputs of every quantizable layer,
    /// kept or not (the calibration cache gives TensorRT all of them), in graph order, once.
    pub fn calibrated_tensors(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for l in &self.layers {
            for name in l.activations.iter().map(|(_, n)| n).chain([&l.output]) {
                if seen.insert(name.clone()) {
                    out.push(name.clone());
                }
            }
        }
        out
    }
}

/// Plans the quantization of `model` under `rules`.
pub fn plan(model: &ModelProto, rules: &KeepRules) -> Plan {
    let empty = Default::default();
    let graph = model.graph.as_ref().unwrap_or(&empty);
    let inits: HashMap<&str, &[i64]> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t.dims.as_slice()))
        .collect();
    let producer: HashMap<&str, &NodeProto> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
        .collect();
    let mut consumers: HashMap<&str, Vec<&NodeProto>> = HashMap::new();
    for n in &graph.node {
        for i in &n.input {
            consumers.entry(i.as_str()).or_default().push(n);
        }
    }
    let convs: Vec<&str> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv")
        .map(|n| n.name.as_str())
        .collect();
    let edge_convs: HashSet<&str> = if rules.first_last_conv {
        convs
            .first()
            .into_iter()
            .chain(convs.last())
            .copied()
            .collect()
    } else {
        HashSet::new()
    };

    let mut layers = Vec::new();
    let mut kept_nodes = Vec::new();
    for n in &graph.node {
        if FLOAT_OPS.contains(&n.op_type.as_str()) {
            kept_nodes.push(n.name.clone());
            continue;
        }
        if !QUANTIZED_OPS.contains(&n.op_type.as_str()) {
            continue;
        }
        let activations = n
            .input
            .iter()
            .enumerate()
            .filter(|(_, i)| !i.is_empty() && !inits.contains_key(i.as_str()))
            .map(|(s, i)| (s, i.clone()))
            .collect();
        let weight = n
            .input
            .get(1)
            .and_then(|w| inits.get(w.as_str()).map(|dims| (w, dims)))
            .and_then(|(w, dims)| {
                let axis = match (n.op_type.as_str(), dims.len()) {
                    ("Conv", _) => Some(0),
                    ("Gemm", _) if trans_b(n) => Some(0),
                    (_, 2) => Some(1),
                    (_, r) if r > 2 => None,
                    _ => return None,
                };
                Some(WeightSlot {
                    input: 1,
                    initializer: w.clone(),
                    axis,
                })
            });
        let attention = rules.attention
            && n.op_type == "MatMul"
            && (reaches_softmax(n, &consumers, ATTENTION_HOPS)
                || reads_softmax(n, &producer, ATTENTION_HOPS));
        let kept =
            attention || edge_convs.contains(n.name.as_str()) || rules.names.contains(&n.name);
        if kept {
            kept_nodes.push(n.name.clone());
        }
        layers.push(Layer {
            node: n.name.clone(),
            op: n.op_type.clone(),
            activations,
            output: n.output.first().cloned().unwrap_or_default(),
            weight,
            kept,
        });
    }
    Plan { layers, kept_nodes }
}

fn trans_b(n: &NodeProto) -> bool {
    n.attribute.iter().any(|a| a.name == "transB" && a.i != 0)
}

fn reaches_softmax(n: &NodeProto, consumers: &HashMap<&str, Vec<&NodeProto>>, hops: usize) -> bool {
    n.output.iter().any(|o| {
        consumers.get(o.as_str()).is_some_and(|cs| {
            cs.iter().any(|c| {
                c.op_type == "Softmax"
                    || (hops > 1
                        && PASS_OPS.contains(&c.op_type.as_str())
                        && reaches_softmax(c, consumers, hops - 1))
            })
        })
    })
}

fn reads_softmax(n: &NodeProto, producer: &HashMap<&str, &NodeProto>, hops: usize) -> bool {
    n.input.iter().any(|i| {
        producer.get(i.as_str()).is_some_and(|p| {
            p.op_type == "Softmax"
                || (hops > 1
                    && PASS_OPS.contains(&p.op_type.as_str())
                    && reads_softmax(p, producer, hops - 1))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::import::{init, Network};
    use crate::model::Preset;

    #[test]
    fn moda_keeps_both_attention_products_of_every_softmax() {
        let model = init(Network::Moda, Preset::Tiny, 1);
        let p = plan(&model, &KeepRules::default());
        let nodes = &model.graph.as_ref().unwrap().node;
        let softmaxes = nodes.iter().filter(|n| n.op_type == "Softmax").count();
        let kept_matmuls = p
            .layers
            .iter()
            .filter(|l| l.kept && l.op == "MatMul")
            .count();
        assert!(softmaxes > 0);
        assert_eq!(
            kept_matmuls,
            2 * softmaxes,
            "scores and weighted sum per softmax"
        );
        // Kept MatMuls with two activation inputs only: weights' MatMuls are quantized.
        assert!(p
            .layers
            .iter()
            .filter(|l| l.kept && l.op == "MatMul")
            .all(|l| l.weight.is_none()));
        let convs: Vec<&Layer> = p.layers.iter().filter(|l| l.op == "Conv").collect();
        assert!(convs[0].kept && convs[convs.len() - 1].kept);
        assert!(convs[1..convs.len() - 1].iter().all(|l| !l.kept));
        assert!(p
            .kept_nodes
            .iter()
            .any(|n| n.starts_with("LayerNormalization")));
    }

    #[test]
    fn named_layers_stay_float_and_weights_get_their_output_axis() {
        let model = init(Network::Faco, Preset::Tiny, 1);
        let first = model.graph.as_ref().unwrap().node[0].name.clone();
        let rules = KeepRules {
            names: vec![first.clone()],
            ..Default::default()
        };
        let p = plan(&model, &rules);
        let l = p
            .layers
            .iter()
            .find(|l| l.node == first)
            .expect("a MatMul first");
        assert!(l.kept);
        assert!(p.layers.iter().filter(|l| l.node != first).all(|l| !l.kept));
        assert!(p
            .layers
            .iter()
            .all(|l| l.weight.as_ref().is_some_and(|w| w.axis == Some(1))));
    }
}

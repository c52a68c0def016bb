//! A small ONNX graph writer over the prost types of `tract_onnx::pb`.
//!
//! Values are named edges ([`V`]); [`Graph::op`] appends a node and returns its output. Every
//! graph is opset 17 with standard operators only (no custom domains), so TensorRT's ONNX
//! parser, ONNX Runtime and tract all accept it.

use prost::Message;
/// The ONNX protobuf types (prost, as tract-onnx generates them).
pub use tract_onnx::pb;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// ONNX opset of every graph we write.
pub const OPSET: i64 = 17;

/// A named value (edge) of the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V(pub String);

impl V {
    /// The empty name ONNX uses for an omitted optional input.
    pub fn none() -> V {
        V(String::new())
    }
}

/// A dimension of a graph input or output: fixed, or a named symbol (`N`, `F`).
#[derive(Clone, Copy, Debug)]
pub enum Dim {
    Fixed(usize),
    Sym(&'static str),
}

/// Graph under construction.
#[derive(Default)]
pub struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    counter: usize,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// Declares a float32 graph input.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> V {
        self.typed_input(name, DataType::Float, dims)
    }

    /// Declares a graph input of element type `dt`.
    pub fn typed_input(&mut self, name: &str, dt: DataType, dims: &[Dim]) -> V {
        self.inputs.push(value_info(name, dt, dims));
        V(name.to_string())
    }

    /// Declares `v` as the float32 graph output `name` (through an Identity node).
    pub fn output(&mut self, v: &V, name: &str, dims: &[Dim]) {
        self.typed_output(v, name, DataType::Float, dims);
    }

    /// Declares `v` as the graph output `name` of element type `dt` (through an Identity node).
    pub fn typed_output(&mut self, v: &V, name: &str, dt: DataType, dims: &[Dim]) {
        self.nodes.push(NodeProto {
            input: vec![v.0.clone()],
            output: vec![name.to_string()],
            name: format!("output_{name}"),
            op_type: "Identity".into(),
            ..Default::default()
        });
        self.outputs.push(value_info(name, dt, dims));
    }

    /// A float32 initializer.
    pub fn init_f32(&mut self, hint: &str, shape: &[usize], data: Vec<f32>) -> V {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "initializer {hint}: shape/data mismatch"
        );
        let name = self.fresh(hint);
        let raw = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            name: name.clone(),
            raw_data: raw,
            ..Default::default()
        });
        V(name)
    }

    /// An int64 initializer.
    pub fn init_i64(&mut self, hint: &str, shape: &[usize], data: Vec<i64>) -> V {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "initializer {hint}: shape/data mismatch"
        );
        let name = self.fresh(hint);
        let raw = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Int64 as i32,
            name: name.clone(),
            raw_data: raw,
            ..Default::default()
        });
        V(name)
    }

    /// A float32 scalar constant (shape `[]`).
    pub fn scalar(&mut self, x: f32) -> V {
        self.init_f32("c", &[], vec![x])
    }

    /// A 1-D int64 constant (axes, shapes, slice bounds).
    pub fn ints(&mut self, xs: &[i64]) -> V {
        self.init_i64("i", &[xs.len()], xs.to_vec())
    }

    /// Appends one node with a single output and returns it.
    pub fn op(&mut self, op_type: &str, inputs: &[&V], attrs: Vec<AttributeProto>) -> V {
        self.op_n(op_type, inputs, attrs, 1)
            .pop()
            .expect("one output")
    }

    /// Appends one node with `n` outputs.
    pub fn op_n(
        &mut self,
        op_type: &str,
        inputs: &[&V],
        attrs: Vec<AttributeProto>,
        n: usize,
    ) -> Vec<V> {
        let name = self.fresh(op_type);
        let outputs: Vec<String> = (0..n).map(|i| format!("{name}:{i}")).collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|v| v.0.clone()).collect(),
            output: outputs.clone(),
            name,
            op_type: op_type.into(),
            attribute: attrs,
            ..Default::default()
        });
        outputs.into_iter().map(V).collect()
    }

    // Shorthands for the operators every network uses.

    pub fn add(&mut self, a: &V, b: &V) -> V {
        self.op("Add", &[a, b], vec![])
    }
    pub fn sub(&mut self, a: &V, b: &V) -> V {
        self.op("Sub", &[a, b], vec![])
    }
    pub fn mul(&mut self, a: &V, b: &V) -> V {
        self.op("Mul", &[a, b], vec![])
    }
    pub fn div(&mut self, a: &V, b: &V) -> V {
        self.op("Div", &[a, b], vec![])
    }
    pub fn matmul(&mut self, a: &V, b: &V) -> V {
        self.op("MatMul", &[a, b], vec![])
    }
    pub fn relu(&mut self, x: &V) -> V {
        self.op("Relu", &[x], vec![])
    }
    pub fn leaky_relu(&mut self, x: &V, alpha: f32) -> V {
        self.op("LeakyRelu", &[x], vec![a_float("alpha", alpha)])
    }
    pub fn reshape(&mut self, x: &V, shape: &[i64]) -> V {
        let s = self.ints(shape);
        self.op("Reshape", &[x, &s], vec![])
    }
    pub fn transpose(&mut self, x: &V, perm: &[i64]) -> V {
        self.op("Transpose", &[x], vec![a_ints("perm", perm)])
    }
    pub fn concat(&mut self, xs: &[&V], axis: i64) -> V {
        self.op("Concat", xs, vec![a_int("axis", axis)])
    }
    pub fn softmax(&mut self, x: &V, axis: i64) -> V {
        self.op("Softmax", &[x], vec![a_int("axis", axis)])
    }

    /// Exact (erf) GELU: x·½·(1 + erf(x/√2)).
    pub fn gelu(&mut self, x: &V) -> V {
        let inv_sqrt2 = self.scalar(std::f32::consts::FRAC_1_SQRT_2);
        let half = self.scalar(0.5);
        let one = self.scalar(1.0);
        let s = self.mul(x, &inv_sqrt2);
        let e = self.op("Erf", &[&s], vec![]);
        let e1 = self.add(&e, &one);
        let xh = self.mul(x, &half);
        self.mul(&xh, &e1)
    }

    /// Finishes the graph into a model with `metadata` as metadata props.
    pub fn into_model(self, name: &str, metadata: &[(String, String)]) -> ModelProto {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "moda-edge".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: name.into(),
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// Serialises a model to ONNX protobuf bytes.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Parses ONNX protobuf bytes (used to read metadata props back).
///
/// # Errors
/// When the bytes are not an ONNX model.
pub fn decode(bytes: &[u8]) -> Result<ModelProto, prost::DecodeError> {
    ModelProto::decode(bytes)
}

fn value_info(name: &str, dt: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            denotation: String::new(),
            value: Some(match d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
                Dim::Sym(s) => tensor_shape_proto::dimension::Value::DimParam((*s).to_string()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            denotation: String::new(),
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: dt as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        ..Default::default()
    }
}

pub fn a_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

pub fn a_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

pub fn a_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

pub fn a_str(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

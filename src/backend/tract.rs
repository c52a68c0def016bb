//! The pure-Rust CPU backend (sonos/tract): the graph is typed and optimized once for the
//! concrete input shapes; each session owns its input tensors and output copies.
//!
//! The session's inputs and outputs (float32 or float16 host buffers, as the graph declares)
//! are never reallocated (input tensors are handed to tract by
//! reference count and reclaimed after the run). tract allocates its intermediate activations
//! inside `run`; the whole run is a [`RunScope`], so with [`super::recycle::Recycler`] as the
//! global allocator those come from the blocks the previous run freed, and nothing reaches the
//! system allocator once the session is warm.

use std::sync::Arc;

use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core;
use tract_onnx::tract_core::tract_data::knobs;

use super::guard::{catch, guarded};
use super::recycle::{self, RunScope};
use super::{
    f16, Backend, BackendError, Completed, ElemType, HostMut, HostRef, Memory, OnnxModel,
    Precision, PrepareOptions, Prepared, Session, TensorDesc,
};
use crate::model::onnx::pb::ModelProto;

const NAME: &str = "tract";

/// tract on the CPU. With `threads` > 1 the matrix products of this backend's plans run on a
/// pool of its own (no process-wide executor is touched).
#[derive(Clone, Debug)]
pub struct TractBackend {
    threads: usize,
    executor: Option<Executor>,
}

impl Default for TractBackend {
    fn default() -> Self {
        TractBackend {
            threads: 1,
            executor: None,
        }
    }
}

impl TractBackend {
    /// A backend whose plans use `threads` threads (0 counts as 1). Should the thread pool not
    /// start, the backend runs single-threaded and [`TractBackend::threads`] says so.
    pub fn new(threads: usize) -> TractBackend {
        if threads <= 1 {
            return TractBackend::default();
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("tract-{i}"))
            // The workers run nothing but this backend's kernels, so all they allocate recycles.
            .start_handler(|_| {
                recycle::scope_whole_thread();
                super::guard::guard_whole_thread();
            })
            .build();
        match pool {
            Ok(pool) => TractBackend {
                threads,
                executor: Some(Executor::MultiThread(Arc::new(pool))),
            },
            Err(e) => {
                log::warn!("tract: cannot start {threads} threads ({e}); running on one");
                TractBackend::default()
            }
        }
    }

    /// Threads each run uses.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

/// tract's kernel choices that we override while optimizing `model` on this host.
///
/// tract turns a 2-D convolution of at most 576 inputs per output point (64 channels × 3×3)
/// over rows of 128 points or more into its direct spatial convolution. Measured on x86-64
/// (AVX-512, 1 thread, `moda-edge bench`): with 64 output channels (the release renderer's
/// convolutions at 256²) im2col plus the matrix product is faster, 2.81 s against 3.82 s for the
/// 512² renderer; with 4 to 8 (the tiny renderer) the direct one is, 30 ms against 54 ms. So on
/// x86-64 the direct convolution is turned off for a model whose candidate convolutions all have
/// at least [`IM2COL_MIN_OUTPUT_CHANNELS`] outputs. Elsewhere (the Jetson's Arm cores) tract's
/// own choice stands: not measured there.
fn host_tuning(model: &ModelProto) -> knobs::KnobScope {
    let knobs: &[(&str, &str)] =
        if cfg!(target_arch = "x86_64") && wide_direct_spatial_candidates(model) {
            &[("TRACT_DISABLE_DIRECT_SPATIAL", "true")]
        } else {
            &[]
        };
    knobs::KnobScope::new(knobs.iter().copied()).unwrap_or_else(|e| {
        log::warn!("tract: kernel tuning {knobs:?} not applied ({e}); using tract's defaults");
        knobs::KnobScope::default()
    })
}

/// Output channels from which a direct-spatial candidate runs faster as im2col plus matrix
/// product on x86-64: the row count of the AVX-512 matrix kernel (16), between the 8 and 64
/// measured.
const IM2COL_MIN_OUTPUT_CHANNELS: i64 = 16;

/// Whether `model` has 2-D convolutions that tract would run as direct spatial ones (group 1,
/// a constant weight [out, in, kh, kw] with in·kh·kw ≤ 576 and at least two taps) and all of
/// them have at least [`IM2COL_MIN_OUTPUT_CHANNELS`] outputs.
fn wide_direct_spatial_candidates(model: &ModelProto) -> bool {
    let Some(graph) = model.graph.as_ref() else {
        return false;
    };
    let weight_dims = |name: &str| {
        graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.dims.as_slice())
    };
    let mut outputs = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv")
        .filter(|n| {
            n.attribute
                .iter()
                .find(|a| a.name == "group")
                .is_none_or(|a| a.i == 1)
        })
        .filter_map(|n| weight_dims(n.input.get(1)?))
        .filter(|d| d.len() == 4 && d[2] * d[3] >= 2 && d[1] * d[2] * d[3] <= 576)
        .map(|d| d[0])
        .peekable();
    outputs.peek().is_some() && outputs.all(|c| c >= IM2COL_MIN_OUTPUT_CHANNELS)
}

/// tract's version, part of every plan key (a plan is an optimized tract model in memory).
const TRACT_VERSION: &str = "0.23";

/// A model optimized for fixed shapes.
pub struct TractPrepared {
    label: String,
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<TensorDesc>,
    outputs: Vec<TensorDesc>,
}

fn datum(model: &OnnxModel, desc: &TensorDesc) -> Result<DatumType, BackendError> {
    match desc.dtype {
        ElemType::F32 => Ok(DatumType::F32),
        ElemType::F16 => Ok(DatumType::F16),
        other => Err(BackendError::Unsupported {
            backend: NAME,
            what: format!("{other} tensors (`{}` of {})", desc.name, model.label),
        }),
    }
}

fn prepare_error(model: &OnnxModel) -> impl Fn(TractError) -> BackendError + '_ {
    |e| BackendError::Prepare {
        model: model.label.clone(),
        backend: NAME,
        source: e.into(),
    }
}

impl Backend for TractBackend {
    type Prepared = TractPrepared;

    fn name(&self) -> &'static str {
        NAME
    }

    fn platform(&self) -> String {
        format!(
            "tract-{TRACT_VERSION}/{}/{}-threads",
            std::env::consts::ARCH,
            self.threads
        )
    }

    fn prepare(
        &self,
        model: &OnnxModel,
        opts: &PrepareOptions,
    ) -> Result<TractPrepared, BackendError> {
        guarded(&model.label, NAME, || self.prepare_unguarded(model, opts))
    }
}

impl TractBackend {
    fn prepare_unguarded(
        &self,
        model: &OnnxModel,
        opts: &PrepareOptions,
    ) -> Result<TractPrepared, BackendError> {
        if opts.precision != Precision::Fp32 {
            return Err(BackendError::Unsupported {
                backend: NAME,
                what: format!(
                    "{} arithmetic (it computes in the graph's own types; a Q/DQ or float16 graph runs as written)",
                    opts.precision.name()
                ),
            });
        }
        let inputs = model.resolve_shapes(&opts.shapes)?;
        let err = prepare_error(model);
        let proto = model.proto()?;
        let onnx = tract_onnx::onnx();
        let mut inference = onnx.model_for_proto_model(&proto).map_err(&err)?;
        for (i, desc) in inputs.iter().enumerate() {
            let fact = InferenceFact::dt_shape(datum(model, desc)?, &desc.shape);
            inference = inference.with_input_fact(i, fact).map_err(&err)?;
        }
        let typed = host_tuning(&proto)
            .enter(|| inference.into_optimized())
            .map_err(&err)?;
        let mut outputs = Vec::new();
        for (i, outlet) in typed.output_outlets().map_err(&err)?.iter().enumerate() {
            let decl = model.outputs.get(i);
            let name = decl
                .map(|o| o.name.clone())
                .unwrap_or_else(|| format!("output{i}"));
            let fact = typed.outlet_fact(*outlet).map_err(&err)?;
            let contract = |detail: String| BackendError::Prepare {
                model: model.label.clone(),
                backend: NAME,
                source: detail.into(),
            };
            if typed
                .node(outlet.node)
                .op_is::<tract_core::ops::source::TypedSource>()
            {
                return Err(contract(format!(
                    "output `{name}` is a graph input passed through unchanged; expected a computed output"
                )));
            }
            let shape = fact
                .shape
                .as_concrete()
                .map(|s| s.to_vec())
                .ok_or_else(|| {
                    contract(format!(
                        "output `{name}` has no concrete shape ({:?})",
                        fact.shape
                    ))
                })?;
            let dtype = match fact.datum_type {
                DatumType::F32 => ElemType::F32,
                DatumType::F16 => ElemType::F16,
                other => {
                    return Err(contract(format!(
                        "output `{name}` is {other:?}; expected float32 or float16"
                    )))
                }
            };
            outputs.push(TensorDesc { name, dtype, shape });
        }
        let options = RunOptions {
            executor: self.executor.clone(),
            ..RunOptions::default()
        };
        let plan = typed.into_runnable_with_options(&options).map_err(&err)?;
        Ok(TractPrepared {
            label: model.label.clone(),
            plan,
            inputs,
            outputs,
        })
    }
}

/// A host buffer of one I/O tensor.
enum Buffer {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Buffer {
    fn zeros(desc: &TensorDesc) -> Buffer {
        match desc.dtype {
            ElemType::F16 => Buffer::F16(vec![f16::ZERO; desc.len()]),
            _ => Buffer::F32(vec![0.0; desc.len()]),
        }
    }
}

impl Prepared for TractPrepared {
    type Session = TractSession;

    fn inputs(&self) -> &[TensorDesc] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorDesc] {
        &self.outputs
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn session(&self) -> Result<TractSession, BackendError> {
        let run_err = |e: TractError| BackendError::Run {
            model: self.label.clone(),
            backend: NAME,
            source: e.into(),
        };
        let state = TypedSimpleState::new(&self.plan).map_err(run_err)?;
        let tensors = self
            .inputs
            .iter()
            .map(|d| {
                let dt = if d.dtype == ElemType::F16 {
                    DatumType::F16
                } else {
                    DatumType::F32
                };
                Tensor::zero_dt(dt, &d.shape).map(Arc::new).map_err(run_err)
            })
            .collect::<Result<_, _>>()?;
        Ok(TractSession {
            label: self.label.clone(),
            state,
            tensors,
            inputs: self.inputs.iter().map(Buffer::zeros).collect(),
            outputs: self.outputs.iter().map(Buffer::zeros).collect(),
            _pool: recycle::PoolUser::new(),
        })
    }
}

/// Per-stream tract state with owned input tensors and output buffers.
pub struct TractSession {
    label: String,
    state: TypedSimpleState,
    /// tract-side input tensors, refilled from `inputs` before each run.
    tensors: Vec<Arc<Tensor>>,
    inputs: Vec<Buffer>,
    outputs: Vec<Buffer>,
    /// Keeps the run pool while this session lives (see [`recycle::PoolUser`]).
    _pool: recycle::PoolUser,
}

/// Time spent in one kind of tract operator during a profiled run.
#[derive(Clone, Debug, PartialEq)]
pub struct OpTime {
    /// tract's name of the optimized operator (`Conv`, `OptMatMul`, `Add`, ...).
    pub op: String,
    /// Nodes of that kind in the plan.
    pub nodes: usize,
    pub ms: f64,
}

/// A run error of the model called `label` (cloned only when an error happens).
fn run_error(label: &str) -> impl Fn(TractError) -> BackendError + '_ {
    move |e| BackendError::Run {
        model: label.to_string(),
        backend: NAME,
        source: e.into(),
    }
}

impl TractSession {
    /// Runs the graph like [`Session::run`], timing every node, and returns the time per
    /// operator kind, longest first. For `moda-edge bench --profile`: where tract spends a run.
    ///
    /// # Errors
    /// As [`Session::run`].
    pub fn profile(&mut self) -> Result<Vec<OpTime>, BackendError> {
        let mut times: Vec<OpTime> = Vec::new();
        self.run_with(|ctx, state, node, inputs| {
            let t0 = std::time::Instant::now();
            let out = tract_core::plan::eval(ctx, state, node, inputs);
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let op = node.op().name();
            match times.iter_mut().find(|t| t.op == op) {
                Some(t) => {
                    t.nodes += 1;
                    t.ms += ms;
                }
                None => times.push(OpTime {
                    op: op.to_string(),
                    nodes: 1,
                    ms,
                }),
            }
            out
        })?;
        times.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok(times)
    }

    /// Copies the session's input buffers into tract's input tensors.
    fn stage_inputs(&mut self) -> Result<(), BackendError> {
        for i in 0..self.tensors.len() {
            if Arc::get_mut(&mut self.tensors[i]).is_none() {
                // tract still holds the tensor (a plan that keeps an input alive between runs):
                // stage into a fresh one instead of failing.
                log::debug!(
                    "tract: input {i} of {} still held; staging a copy",
                    self.label
                );
                let fresh = self.tensors[i].as_ref().clone();
                self.tensors[i] = Arc::new(fresh);
            }
            let err = run_error(&self.label);
            let tensor = Arc::get_mut(&mut self.tensors[i]).ok_or_else(|| {
                err(anyhow::anyhow!(
                    "input tensor {i} is shared after a fresh copy"
                ))
            })?;
            let mut plain = tensor.try_as_plain_ram_mut().map_err(&err)?;
            match &self.inputs[i] {
                Buffer::F32(b) => plain
                    .as_slice_mut::<f32>()
                    .map_err(&err)?
                    .copy_from_slice(b),
                Buffer::F16(b) => plain
                    .as_slice_mut::<f16>()
                    .map_err(&err)?
                    .copy_from_slice(b),
            }
        }
        Ok(())
    }

    /// One run with `eval` evaluating each node: inputs staged from the session's buffers,
    /// outputs copied back.
    fn run_with<E>(&mut self, eval: E) -> Result<(), BackendError>
    where
        E: for<'a, 'b, 'c> FnMut(
            &'a tract_core::plan::EvalContext<'a>,
            Option<&'b mut (dyn tract_core::ops::OpState + 'static)>,
            &'c TypedNode,
            TVec<TValue>,
        ) -> TractResult<TVec<TValue>>,
    {
        // Everything tract allocates and frees below, result tensors included, recycles.
        let _scope = RunScope::enter();
        self.stage_inputs()?;
        let values: TVec<TValue> = self
            .tensors
            .iter()
            .map(|t| TValue::from_const(Arc::clone(t)))
            .collect();
        let results = self
            .state
            .run_plan_with_eval(values, eval)
            .map_err(run_error(&self.label))?;
        let err = run_error(&self.label);
        for (buf, value) in self.outputs.iter_mut().zip(results.iter()) {
            let plain = value.try_as_plain_ram().map_err(&err)?;
            let copied = match buf {
                Buffer::F32(b) => copy_checked(b, plain.as_slice::<f32>().map_err(&err)?),
                Buffer::F16(b) => copy_checked(b, plain.as_slice::<f16>().map_err(&err)?),
            };
            if !copied {
                return Err(err(anyhow::anyhow!("output size changed between runs")));
            }
        }
        Ok(())
    }
}

/// Copies `src` into `dst` when the lengths agree.
fn copy_checked<T: Copy>(dst: &mut [T], src: &[T]) -> bool {
    if dst.len() != src.len() {
        return false;
    }
    dst.copy_from_slice(src);
    true
}

impl Session for TractSession {
    type Event = Completed;

    fn memory(&self) -> Memory {
        Memory::Host
    }

    fn input(&mut self, index: usize) -> Result<HostMut<'_>, BackendError> {
        Ok(match &mut self.inputs[index] {
            Buffer::F32(b) => HostMut::F32(b),
            Buffer::F16(b) => HostMut::F16(b),
        })
    }

    fn output(&self, index: usize) -> Result<HostRef<'_>, BackendError> {
        Ok(match &self.outputs[index] {
            Buffer::F32(b) => HostRef::F32(b),
            Buffer::F16(b) => HostRef::F16(b),
        })
    }

    /// Runs synchronously: the returned event has completed.
    fn enqueue(&mut self) -> Result<Completed, BackendError> {
        let result = catch(|| self.run_with(tract_core::plan::eval)).unwrap_or_else(|detail| {
            Err(BackendError::Panicked {
                model: self.label.clone(),
                backend: NAME,
                detail,
            })
        });
        Ok(Completed::new(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::import::{init, Network};
    use crate::model::Preset;

    /// Renderer inputs at 256².
    fn renderer_shapes() -> PrepareOptions {
        PrepareOptions::shapes(&[
            ("mesh_image", vec![1, 3, 256, 256]),
            ("reference", vec![1, 3, 256, 256]),
            ("time_code", vec![1, 13]),
        ])
    }

    #[test]
    fn profile_is_sorted_and_thin_convolutions_stay_direct() {
        let model = OnnxModel::from_proto("renderer", &init(Network::Renderer, Preset::Tiny, 1));
        let prepared = TractBackend::default()
            .prepare(&model, &renderer_shapes())
            .unwrap();
        let profile = prepared.session().unwrap().profile().unwrap();
        assert!(profile.windows(2).all(|w| w[0].ms >= w[1].ms), "sorted");
        let has = |op: &str| profile.iter().any(|t| t.op == op);
        assert!(has("OptMatMul") && has("Concat"), "{profile:?}");
        // The tiny renderer's thin 3×3 convolutions at 256² (4 to 8 outputs) stay direct.
        if cfg!(target_arch = "x86_64") {
            assert!(has("DirectSpatialConv"), "{profile:?}");
        }
    }

    #[test]
    fn a_session_keeps_no_state_from_one_run_to_the_next() {
        // The offline render reuses one MODA session across windows of the same shape.
        let model = OnnxModel::from_proto("moda", &init(Network::Moda, Preset::Tiny, 2));
        let shapes = PrepareOptions::shapes(&[
            ("waveform", vec![1, 8000]),
            ("template", vec![1, 1434]),
            ("noise", vec![1, 15, 128]),
        ]);
        let prepared = TractBackend::default().prepare(&model, &shapes).unwrap();
        let mut session = prepared.session().unwrap();
        let mut run = |scale: f32| {
            for i in 0..prepared.inputs().len() {
                for (k, v) in session.input_f32(i).unwrap().iter_mut().enumerate() {
                    *v = scale * ((k % 11) as f32 - 5.0) * 0.1;
                }
            }
            session.run().unwrap();
            (0..prepared.outputs().len())
                .map(|i| session.output_f32(i).unwrap().to_vec())
                .collect::<Vec<_>>()
        };
        let first = run(1.0);
        let other = run(-0.7);
        assert_ne!(first, other, "different inputs, different outputs");
        assert_eq!(run(1.0), first, "a run depends on the run before it");
    }

    #[test]
    fn direct_spatial_convolution_is_turned_off_for_wide_models_only() {
        let release = init(Network::Renderer, Preset::Release, 1);
        let tiny = init(Network::Renderer, Preset::Tiny, 1);
        let faco = init(Network::Faco, Preset::Tiny, 1);
        assert!(wide_direct_spatial_candidates(&release));
        if cfg!(target_arch = "x86_64") {
            let prepared = TractBackend::default()
                .prepare(
                    &OnnxModel::from_proto("renderer", &release),
                    &renderer_shapes(),
                )
                .unwrap();
            let ops: Vec<String> = prepared
                .plan
                .model()
                .nodes()
                .iter()
                .map(|n| n.op().name().to_string())
                .collect();
            assert!(ops.iter().any(|o| o == "OptMatMul"));
            assert!(!ops.iter().any(|o| o == "DirectSpatialConv"), "{ops:?}");
        }
        assert!(!wide_direct_spatial_candidates(&tiny));
        assert!(
            !wide_direct_spatial_candidates(&faco),
            "no convolution at all"
        );
    }

    #[test]
    fn float16_buffers_are_typed_and_a_passthrough_output_is_refused() {
        use crate::model::onnx::pb::tensor_proto::DataType;
        use crate::model::onnx::{a_int, Dim, Graph};
        let dims = [Dim::Fixed(1), Dim::Fixed(4)];
        let mut g = Graph::new();
        let x = g.typed_input("x", DataType::Float16, &dims);
        let xf = g.op("Cast", &[&x], vec![a_int("to", DataType::Float as i64)]);
        let two = g.scalar(2.0);
        let y = g.mul(&xf, &two);
        let yh = g.op("Cast", &[&y], vec![a_int("to", DataType::Float16 as i64)]);
        g.typed_output(&yh, "y", DataType::Float16, &dims);
        let model = OnnxModel::from_proto("f16", &g.into_model("f16", &[]));
        assert_eq!(model.inputs[0].dtype, ElemType::F16);
        let prepared = TractBackend::default()
            .prepare(&model, &PrepareOptions::shapes(&[("x", vec![1, 4])]))
            .unwrap();
        assert_eq!(prepared.outputs()[0].dtype, ElemType::F16);
        let mut session = prepared.session().unwrap();
        let x = prepared.input_index("x").unwrap();
        session
            .input(x)
            .unwrap()
            .copy_from_f32(&[0.5, -1.25, 3.0, 1e-3]);
        assert!(matches!(
            session.input_f32(x),
            Err(BackendError::BufferType {
                found: ElemType::F16,
                ..
            })
        ));
        session.run().unwrap();
        let mut out = [0f32; 4];
        session.output(0).unwrap().copy_to_f32(&mut out);
        // 1e-3 is not a float16 value: the input rounds to the nearest one, then doubles.
        let tiny = f16::from_f32(1e-3).to_f32() * 2.0;
        assert_eq!(out, [1.0, -2.5, 6.0, tiny]);

        let mut g = Graph::new();
        let x = g.input("x", &dims);
        g.output(&x, "y", &dims);
        let model = OnnxModel::from_proto("passthrough.onnx", &g.into_model("p", &[]));
        let err = TractBackend::default()
            .prepare(&model, &PrepareOptions::shapes(&[("x", vec![1, 4])]))
            .err()
            .unwrap();
        let chain = crate::util::error_chain(&err);
        assert!(chain.contains("cannot prepare passthrough.onnx on tract: output `y` is a graph input passed through unchanged"), "{chain}");
    }
}

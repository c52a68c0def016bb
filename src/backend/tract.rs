//! The pure-Rust CPU backend (sonos/tract): the graph is typed and optimized once for the
//! concrete input shapes; each session owns its input tensors and output copies.
//!
//! The session's inputs and outputs are never reallocated (input tensors are handed to tract by
//! reference count and reclaimed after the run). tract allocates its intermediate activations
//! inside `run`; the whole run is a [`RunScope`], so with [`super::recycle::Recycler`] as the
//! global allocator those come from the blocks the previous run freed, and nothing reaches the
//! system allocator once the session is warm.

use std::sync::Arc;

use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core;
use tract_onnx::tract_core::tract_data::knobs;

use super::recycle::{self, RunScope};
use super::{Backend, BackendError, IoSpec, OnnxModel, Prepared, Session};

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
            .start_handler(|_| recycle::scope_whole_thread())
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
fn host_tuning(model: &OnnxModel) -> knobs::KnobScope {
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
fn wide_direct_spatial_candidates(model: &OnnxModel) -> bool {
    let Some(graph) = model.proto.graph.as_ref() else {
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

/// A model optimized for fixed shapes.
pub struct TractPrepared {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
}

impl Backend for TractBackend {
    type Prepared = TractPrepared;

    fn name(&self) -> &'static str {
        NAME
    }

    fn prepare(
        &self,
        model: &OnnxModel,
        shapes: &[(&str, Vec<usize>)],
    ) -> Result<TractPrepared, BackendError> {
        let inputs = model.resolve_shapes(shapes)?;
        let err = |e: TractError| BackendError::Prepare {
            model: model.label.clone(),
            backend: NAME,
            detail: format!("{e:?}")
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        let onnx = tract_onnx::onnx();
        let mut inference = onnx.model_for_proto_model(&model.proto).map_err(err)?;
        for (i, spec) in inputs.iter().enumerate() {
            inference = inference
                .with_input_fact(i, f32::fact(&spec.shape).into())
                .map_err(err)?;
        }
        let typed = host_tuning(model)
            .enter(|| inference.into_optimized())
            .map_err(err)?;
        let mut outputs = Vec::new();
        for (i, outlet) in typed.output_outlets().map_err(err)?.iter().enumerate() {
            let fact = typed.outlet_fact(*outlet).map_err(err)?;
            let shape = fact
                .shape
                .as_concrete()
                .map(|s| s.to_vec())
                .ok_or_else(|| BackendError::Prepare {
                    model: model.label.clone(),
                    backend: NAME,
                    detail: format!("output {i} has no concrete shape ({:?})", fact.shape),
                })?;
            let name = model
                .outputs
                .get(i)
                .map(|o| o.0.clone())
                .unwrap_or_else(|| format!("output{i}"));
            outputs.push(IoSpec { name, shape });
        }
        let options = RunOptions {
            executor: self.executor.clone(),
            ..RunOptions::default()
        };
        let plan = typed.into_runnable_with_options(&options).map_err(err)?;
        Ok(TractPrepared {
            plan,
            inputs,
            outputs,
        })
    }
}

impl Prepared for TractPrepared {
    type Session = TractSession;

    fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    fn session(&self) -> Result<TractSession, BackendError> {
        let state = TypedSimpleState::new(&self.plan).map_err(|e| BackendError::Run {
            backend: NAME,
            detail: e.to_string(),
        })?;
        let tensors = self
            .inputs
            .iter()
            .map(|s| Arc::new(Tensor::zero::<f32>(&s.shape).expect("f32 zeros")))
            .collect();
        let inputs = self
            .inputs
            .iter()
            .map(|s| vec![0f32; s.shape.iter().product()])
            .collect();
        let outputs = self
            .outputs
            .iter()
            .map(|s| vec![0f32; s.shape.iter().product()])
            .collect();
        Ok(TractSession {
            state,
            tensors,
            inputs,
            outputs,
        })
    }
}

/// Per-stream tract state with owned input tensors and output buffers.
pub struct TractSession {
    state: TypedSimpleState,
    /// tract-side input tensors, refilled from `inputs` before each run.
    tensors: Vec<Arc<Tensor>>,
    inputs: Vec<Vec<f32>>,
    outputs: Vec<Vec<f32>>,
}

fn run_error(e: TractError) -> BackendError {
    BackendError::Run {
        backend: NAME,
        detail: format!("{e:?}"),
    }
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
        for (tensor, buf) in self.tensors.iter_mut().zip(&self.inputs) {
            let tensor = Arc::get_mut(tensor).ok_or_else(|| BackendError::Run {
                backend: NAME,
                detail: "input tensor still held by a previous run".into(),
            })?;
            tensor
                .try_as_plain_ram_mut()
                .map_err(run_error)?
                .as_slice_mut::<f32>()
                .map_err(run_error)?
                .copy_from_slice(buf);
        }
        let values: TVec<TValue> = self
            .tensors
            .iter()
            .map(|t| TValue::from_const(Arc::clone(t)))
            .collect();
        let results = self
            .state
            .run_plan_with_eval(values, eval)
            .map_err(run_error)?;
        for (buf, value) in self.outputs.iter_mut().zip(results.iter()) {
            let plain = value.try_as_plain_ram().map_err(run_error)?;
            let view = plain.as_slice::<f32>().map_err(run_error)?;
            if view.len() != buf.len() {
                return Err(BackendError::Run {
                    backend: NAME,
                    detail: "output size changed between runs".into(),
                });
            }
            buf.copy_from_slice(view);
        }
        Ok(())
    }
}

impl Session for TractSession {
    fn input_mut(&mut self, index: usize) -> &mut [f32] {
        &mut self.inputs[index]
    }

    fn run(&mut self) -> Result<(), BackendError> {
        self.run_with(tract_core::plan::eval)
    }

    fn output(&self, index: usize) -> &[f32] {
        &self.outputs[index]
    }
}

impl Drop for TractSession {
    /// Hands the pooled activation blocks back to the system. Other live sessions refill the
    /// pool on their next run (one run's worth of system allocations).
    fn drop(&mut self) {
        recycle::trim();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::import::{init, Network};
    use crate::model::Preset;

    /// Renderer inputs at 256².
    fn renderer_shapes() -> [(&'static str, Vec<usize>); 3] {
        [
            ("mesh_image", vec![1, 3, 256, 256]),
            ("reference", vec![1, 3, 256, 256]),
            ("time_code", vec![1, 13]),
        ]
    }

    #[test]
    fn profile_is_sorted_and_thin_convolutions_stay_direct() {
        let model =
            OnnxModel::from_proto("renderer".into(), init(Network::Renderer, Preset::Tiny, 1));
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
        let model = OnnxModel::from_proto("moda".into(), init(Network::Moda, Preset::Tiny, 2));
        let shapes = [
            ("waveform", vec![1, 8000]),
            ("template", vec![1, 1434]),
            ("noise", vec![1, 15, 128]),
        ];
        let prepared = TractBackend::default().prepare(&model, &shapes).unwrap();
        let mut session = prepared.session().unwrap();
        let mut run = |scale: f32| {
            for i in 0..prepared.inputs().len() {
                for (k, v) in session.input_mut(i).iter_mut().enumerate() {
                    *v = scale * ((k % 11) as f32 - 5.0) * 0.1;
                }
            }
            session.run().unwrap();
            (0..prepared.outputs().len())
                .map(|i| session.output(i).to_vec())
                .collect::<Vec<_>>()
        };
        let first = run(1.0);
        let other = run(-0.7);
        assert_ne!(first, other, "different inputs, different outputs");
        assert_eq!(run(1.0), first, "a run depends on the run before it");
    }

    #[test]
    fn direct_spatial_convolution_is_turned_off_for_wide_models_only() {
        let release = OnnxModel::from_proto(
            "renderer".into(),
            init(Network::Renderer, Preset::Release, 1),
        );
        let tiny =
            OnnxModel::from_proto("renderer".into(), init(Network::Renderer, Preset::Tiny, 1));
        let faco = OnnxModel::from_proto("faco".into(), init(Network::Faco, Preset::Tiny, 1));
        assert!(wide_direct_spatial_candidates(&release));
        if cfg!(target_arch = "x86_64") {
            let prepared = TractBackend::default()
                .prepare(&release, &renderer_shapes())
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
}

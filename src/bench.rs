//! `moda-edge bench`: median latency of each network on the tract CPU backend and, for
//! comparison, on ONNX Runtime (through `scripts/ort_run.py`) with the same ONNX file, the same
//! inputs and the same thread count.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backend::tract::{OpTime, TractBackend};
use crate::backend::{
    Backend, BackendError, OnnxModel, PrepareOptions, Prepared, Session, ShapeError,
};
use crate::model::import::Network;
use crate::model::Tensor;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub models: PathBuf,
    pub threads: usize,
    pub iters: usize,
    /// Frames per MODA/FaCo run (600 = one official 20 s window).
    pub frames: usize,
    /// Renderer input side in pixels.
    pub size: usize,
    /// Python interpreter with onnxruntime, or `None` to skip the comparison.
    pub ort_python: Option<PathBuf>,
    /// Serve tract's activations from the run pool ([`crate::backend::recycle`]); off to
    /// measure what the pool changes.
    pub recycle: bool,
    /// Also time every tract operator over one extra run.
    pub profile: bool,
}

/// One row of the result table.
#[derive(Clone, Debug)]
pub struct BenchRow {
    pub network: Network,
    pub shapes: String,
    pub tract_ms: f64,
    pub ort_ms: Option<f64>,
    /// Allocation requests per timed tract run and the calls into the system allocator the
    /// whole process made meanwhile (tract's worker threads included); `None` when the
    /// recycling allocator is not installed or is turned off.
    pub allocs: Option<RunAllocs>,
    /// Time per tract operator kind over one run, longest first (with `profile`).
    pub profile: Vec<OpTime>,
}

/// What one timed tract run asked of the allocator (mean over the timed runs).
#[derive(Clone, Copy, Debug)]
pub struct RunAllocs {
    pub requests: f64,
    pub system_calls: f64,
    /// Bytes the pool held after the timed runs.
    pub pooled_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("cannot write benchmark inputs to {}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Npy(#[from] crate::util::npy::NpyError),
    #[error("ONNX Runtime comparison failed ({python}): {detail}")]
    Ort { python: String, detail: String },
}

/// The inputs of `network` for one benchmark run, seeded.
fn inputs(
    network: Network,
    model: &OnnxModel,
    frames: usize,
    size: usize,
) -> Vec<(String, Tensor)> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let samples = (frames as f64 * 16_000.0 / 30.0).ceil() as usize;
    model
        .inputs
        .iter()
        .map(|decl| {
            let name = &decl.name;
            let shape = match (network, name.as_str()) {
                (Network::Moda, "waveform") => vec![1, samples],
                (Network::Moda, "mel") => vec![1, 4 * frames, 80],
                (_, "template") => vec![1, 1434],
                (Network::Moda, "noise") => vec![1, frames, 128],
                (Network::Faco, "lip") => vec![1, frames, 120],
                (Network::Faco, "eye") => vec![1, frames, 180],
                (Network::Renderer, "time_code") => vec![1, 13],
                (Network::Renderer, _) => vec![1, 3, size, size],
                _ => vec![1],
            };
            let n = shape.iter().product();
            let data = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            (name.clone(), Tensor::f32(shape, data))
        })
        .collect()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Benchmarks every network found as `<models>/{moda,faco,renderer}.onnx`.
///
/// # Errors
/// When a model cannot be loaded or run, or the ONNX Runtime script fails.
pub fn run(
    opts: &BenchOptions,
    mut progress: impl FnMut(&str),
) -> Result<Vec<BenchRow>, BenchError> {
    let backend = TractBackend::new(opts.threads);
    crate::backend::recycle::set_enabled(opts.recycle);
    let mut rows = Vec::new();
    for network in [Network::Moda, Network::Faco, Network::Renderer] {
        let path = opts.models.join(format!("{}.onnx", network.name()));
        if !path.exists() {
            progress(&format!(
                "{}: skipped, {} not found",
                network.name(),
                path.display()
            ));
            continue;
        }
        let model = OnnxModel::load(&path)?;
        let inputs = inputs(network, &model, opts.frames, opts.size);
        let shapes: Vec<(&str, Vec<usize>)> = inputs
            .iter()
            .map(|(n, t)| (n.as_str(), t.shape.clone()))
            .collect();
        let shapes_txt = inputs
            .iter()
            .map(|(n, t)| format!("{n} {}", crate::model::checkpoint::shape_string(&t.shape)))
            .collect::<Vec<_>>()
            .join(", ");
        progress(&format!(
            "{}: preparing tract ({shapes_txt})",
            network.name()
        ));
        let prepared = backend.prepare(&model, &PrepareOptions::shapes(&shapes))?;
        let mut session = prepared.session()?;
        crate::backend::fill_inputs(&prepared, &mut session, &inputs)?;
        session.run()?; // warm-up
        let (mut requests, mut system_calls) = (0, 0);
        let mut runs = Vec::with_capacity(opts.iters);
        for i in 0..opts.iters {
            let before = crate::backend::recycle::stats();
            let t0 = Instant::now();
            session.run()?;
            runs.push(t0.elapsed().as_secs_f64() * 1e3);
            let alloc = crate::backend::recycle::stats().since(&before);
            requests += alloc.requests;
            system_calls += alloc.system_calls;
            progress(&format!(
                "{}: tract run {}/{}: {:.1} ms",
                network.name(),
                i + 1,
                opts.iters,
                runs[i]
            ));
        }
        let tract_ms = median(runs);
        let pool = crate::backend::recycle::stats();
        let allocs = (opts.recycle && pool.installed).then(|| RunAllocs {
            requests: requests as f64 / opts.iters as f64,
            system_calls: system_calls as f64 / opts.iters as f64,
            pooled_bytes: pool.pooled_bytes,
        });
        if let Some(a) = allocs {
            progress(&format!(
                "{}: per tract run {:.0} allocations, {:.0} calls into the system allocator; pool holds {:.1} MiB",
                network.name(),
                a.requests,
                a.system_calls,
                a.pooled_bytes as f64 / (1 << 20) as f64
            ));
        }
        let profile = if opts.profile {
            progress(&format!("{}: profiling one tract run", network.name()));
            session.profile()?
        } else {
            Vec::new()
        };
        drop(session);
        let ort_ms = match &opts.ort_python {
            Some(python) => Some(ort_median(python, &path, &inputs, opts)?),
            None => None,
        };
        if let Some(ms) = ort_ms {
            progress(&format!(
                "{}: onnxruntime median {ms:.1} ms",
                network.name()
            ));
        }
        rows.push(BenchRow {
            network,
            shapes: shapes_txt,
            tract_ms,
            ort_ms,
            allocs,
            profile,
        });
    }
    Ok(rows)
}

fn ort_median(
    python: &Path,
    model: &Path,
    inputs: &[(String, Tensor)],
    opts: &BenchOptions,
) -> Result<f64, BenchError> {
    let dir = std::env::temp_dir().join(format!("moda-edge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| BenchError::Io {
        path: dir.clone(),
        source,
    })?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ort_run.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .arg(model)
        .arg("--threads")
        .arg(opts.threads.to_string());
    cmd.arg("--bench").arg(opts.iters.to_string());
    for (name, t) in inputs {
        let path = dir.join(format!("{name}.npy"));
        crate::util::npy::write(&path, t)?;
        cmd.arg("--input").arg(format!("{name}={}", path.display()));
    }
    let fail = |detail: String| BenchError::Ort {
        python: python.display().to_string(),
        detail,
    };
    let out = cmd.output().map_err(|e| fail(e.to_string()))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        return Err(fail(
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .to_string(),
        ));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| fail(format!("bad output: {e}")))?;
    v["median_ms"]
        .as_f64()
        .ok_or_else(|| fail("no median_ms in output".into()))
}

/// One network on another backend (TensorRT), timed, and checked against tract on the same
/// inputs.
#[derive(Clone, Debug)]
pub struct CompareRow {
    pub network: Network,
    pub shapes: String,
    /// Median of the timed runs, enqueue to completed event.
    pub median_ms: f64,
    /// Largest absolute difference from tract over every output value.
    pub max_abs: f64,
}

/// Named input tensors of one run.
type Inputs = Vec<(String, Tensor)>;

/// The models of `opts` found on disk, with the benchmark's inputs.
fn bench_models(opts: &BenchOptions) -> Result<Vec<(Network, OnnxModel, Inputs)>, BenchError> {
    let mut found = Vec::new();
    for network in [Network::Moda, Network::Faco, Network::Renderer] {
        let path = opts.models.join(format!("{}.onnx", network.name()));
        if path.exists() {
            let model = OnnxModel::load(&path)?;
            let inputs = inputs(network, &model, opts.frames, opts.size);
            found.push((network, model, inputs));
        }
    }
    Ok(found)
}

fn shapes_of(inputs: &[(String, Tensor)]) -> Vec<(&str, Vec<usize>)> {
    inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.shape.clone()))
        .collect()
}

/// The shapes every network of `opts` is benchmarked at, as `prepare` takes them (for the
/// engine-building commands of `bench --trtexec`).
///
/// # Errors
/// A model that cannot be loaded.
pub fn bench_shapes(
    opts: &BenchOptions,
) -> Result<Vec<(Network, OnnxModel, PrepareOptions)>, BenchError> {
    Ok(bench_models(opts)?
        .into_iter()
        .map(|(network, model, inputs)| {
            let shapes = PrepareOptions::shapes(&shapes_of(&inputs));
            (network, model, shapes)
        })
        .collect())
}

/// Times every network of `opts` on `backend` (median of `iters` runs after one warm-up) and
/// compares its outputs with tract's on the same inputs.
///
/// # Errors
/// A model that cannot be loaded, prepared or run on either backend.
pub fn compare<B: Backend>(
    backend: &B,
    opts: &BenchOptions,
    mut progress: impl FnMut(&str),
) -> Result<Vec<CompareRow>, BenchError> {
    let tract = TractBackend::new(opts.threads);
    let mut rows = Vec::new();
    for (network, model, inputs) in bench_models(opts)? {
        let name = network.name();
        progress(&format!("{name}: preparing on {}", backend.name()));
        let prepared = backend.prepare(&model, &PrepareOptions::shapes(&shapes_of(&inputs)))?;
        let mut session = prepared.session()?;
        crate::backend::fill_inputs(&prepared, &mut session, &inputs)?;
        session.run()?; // warm-up
        let mut runs = Vec::with_capacity(opts.iters);
        for _ in 0..opts.iters {
            let t0 = Instant::now();
            session.run()?;
            runs.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let median_ms = median(runs);
        progress(&format!(
            "{name}: {} median {median_ms:.2} ms; running tract for the comparison",
            backend.name()
        ));
        let reference = crate::backend::run_once(&tract, &model, &inputs)?;
        let mut max_abs = 0f64;
        for (i, desc) in prepared.outputs().iter().enumerate() {
            let mut got = vec![0f32; desc.len()];
            session.output(i)?.copy_to_f32(&mut got);
            let want = reference
                .iter()
                .find(|(n, _)| *n == desc.name)
                .and_then(|(_, t)| t.as_f32())
                .unwrap_or(&[]);
            for (a, b) in got.iter().zip(want) {
                let d = (f64::from(*a) - f64::from(*b)).abs();
                // A NaN on one side only is the largest error there is.
                max_abs = max_abs.max(if d.is_nan() { f64::INFINITY } else { d });
            }
        }
        rows.push(CompareRow {
            network,
            shapes: shapes_of(&inputs)
                .iter()
                .map(|(n, s)| format!("{n} {}", crate::model::checkpoint::shape_string(s)))
                .collect::<Vec<_>>()
                .join(", "),
            median_ms,
            max_abs,
        });
    }
    Ok(rows)
}

/// The comparison in Markdown.
pub fn compare_table(rows: &[CompareRow], backend: &str) -> String {
    let mut s = format!(
        "| network | inputs | {backend} median (ms) | max abs error vs tract |\n|---|---|---|---|\n"
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.2} | {:.3e} |\n",
            r.network.name(),
            r.shapes,
            r.median_ms,
            r.max_abs
        ));
    }
    s
}

/// The result table in Markdown (as in README.md).
pub fn table(rows: &[BenchRow], threads: usize) -> String {
    let mut s = String::from(
        "| network | inputs | tract median (ms) | ONNX Runtime median (ms) | tract / ORT | tract allocations per run (system allocator calls) | pool |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let (ort, ratio) = match r.ort_ms {
            Some(o) => (format!("{o:.1}"), format!("{:.2}", r.tract_ms / o)),
            None => ("-".into(), "-".into()),
        };
        let (allocs, pool) = match r.allocs {
            Some(a) => (
                format!("{:.0} ({:.0})", a.requests, a.system_calls),
                format!("{:.1} MiB", a.pooled_bytes as f64 / (1 << 20) as f64),
            ),
            None => ("not recycled".into(), "-".into()),
        };
        s.push_str(&format!(
            "| {} | {} | {:.1} | {ort} | {ratio} | {allocs} | {pool} |\n",
            r.network.name(),
            r.shapes,
            r.tract_ms
        ));
    }
    s.push_str(&format!("\n{threads} thread(s) per runtime.\n"));
    s
}

/// The profiles of `rows` in Markdown: per network, the operator kinds that together take
/// 95 % of the run, then the rest in one line.
pub fn profile_table(rows: &[BenchRow]) -> String {
    let mut s = String::new();
    for r in rows.iter().filter(|r| !r.profile.is_empty()) {
        let total: f64 = r.profile.iter().map(|t| t.ms).sum();
        s.push_str(&format!(
            "\n{} (one profiled tract run, {total:.1} ms in operators):\n\n| operator | nodes | ms | share |\n|---|---|---|---|\n",
            r.network.name()
        ));
        let mut shown = 0.0;
        let mut rest = (0, 0.0);
        for t in &r.profile {
            if shown < 0.95 * total {
                s.push_str(&format!(
                    "| {} | {} | {:.1} | {:.1} % |\n",
                    t.op,
                    t.nodes,
                    t.ms,
                    100.0 * t.ms / total
                ));
                shown += t.ms;
            } else {
                rest = (rest.0 + t.nodes, rest.1 + t.ms);
            }
        }
        if rest.0 > 0 {
            s.push_str(&format!(
                "| (others) | {} | {:.1} | {:.1} % |\n",
                rest.0,
                rest.1,
                100.0 * rest.1 / total
            ));
        }
    }
    s
}

/// Per-frame cost of everything in the frame stage except the renderer network, at the
/// avatar's canvas size with a renderer of the same size: pose projection, condition drawing,
/// uint8 → [−1, 1] conversion, temporal code, and the output conversion back to uint8.
/// Returns the median over `frames` frames in milliseconds (one thread).
///
/// # Errors
/// When the drawing tables cannot be loaded or a buffer does not fit.
pub fn frame_overhead_ms(
    avatar: &crate::face::avatar::Avatar,
    frames: usize,
) -> Result<f64, crate::pipeline::FrameError> {
    use crate::draw::condition::{ConditionDrawer, DrawSettings};
    use crate::draw::convert::{u8_hwc_to_unit_chw, unit_chw_to_u8_hwc};
    use crate::draw::timecode::time_code;
    use crate::face::tables::{Tables, FACE_POINTS, SHOULDER_POINTS};

    let side = avatar.config.canvas;
    let repr = avatar.repr();
    let tables = Tables::official()?;
    let mut drawer = ConditionDrawer::new(
        DrawSettings {
            width: side,
            height: side,
        },
        tables,
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // Small residuals around the rest pose, as a talking head produces.
    let face: Vec<f32> = (0..1434).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let torso: Vec<f32> = (0..54).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut face_px = vec![[0.0; 2]; FACE_POINTS];
    let mut shoulder_px = vec![[0.0; 2]; SHOULDER_POINTS];
    let mut cond = vec![0u8; side * side * 3];
    let mut unit = vec![0f32; 3 * side * side];
    let mut time = [0f32; 13];
    let mut out = vec![0u8; side * side * 3];
    let mut runs = Vec::with_capacity(frames);
    for k in 0..frames {
        let head = [0.5 * (k as f32 * 0.1).sin(), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let t0 = Instant::now();
        repr.project_frame(&face, &head, &torso, &mut face_px, &mut shoulder_px)?;
        drawer.process(&face_px, &shoulder_px, &mut cond)?;
        u8_hwc_to_unit_chw(&cond, side, side, &mut unit)?;
        time.copy_from_slice(&time_code(k));
        unit_chw_to_u8_hwc(&unit, side, side, &mut out)?;
        runs.push(t0.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box((&out, &time));
    }
    Ok(median(runs))
}

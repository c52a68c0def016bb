//! `moda-edge`: the tools command line (import checkpoints, run graphs, make seeded models,
//! benchmark). A thin layer over library calls; every user error is one line naming the file,
//! key or tensor and what was expected.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use moda_edge::backend::tract::TractBackend;
use moda_edge::backend::{run_once, OnnxModel};
use moda_edge::model::import::{self, ImportOptions, Network};
use moda_edge::model::{onnx, Preset};
use moda_edge::util::npy;

/// tract's activations come from blocks recycled run to run, so a warm session's `run` takes
/// nothing from the system heap (see `moda_edge::backend::recycle`; feature `recycle`, on by
/// default). Feature `mimalloc` replaces it, for README's allocator comparison.
#[cfg(all(feature = "recycle", not(feature = "mimalloc")))]
#[global_allocator]
static ALLOC: moda_edge::backend::recycle::Recycler = moda_edge::backend::recycle::Recycler;
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "moda-edge",
    version,
    about = "MODA talking-portrait tools: import checkpoints, render talking-portrait videos, run and benchmark the ONNX graphs"
)]
struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import an official PyTorch checkpoint (MODA.pkl, FaCo.pkl, renderer .pth) as ONNX.
    Import(ImportCmd),
    /// Run an ONNX graph on the CPU backend with inputs from .npy files.
    Infer(InferCmd),
    /// Seeded random-weight models (no checkpoint needed).
    Models {
        #[command(subcommand)]
        command: ModelsCmd,
    },
    /// Avatar bundles made here (`import avatar` reads an official one).
    Avatar {
        #[command(subcommand)]
        command: AvatarCmd,
    },
    /// Median latency of each network on tract and (optionally) ONNX Runtime.
    Bench(BenchCmd),
    /// Render a speech recording as the avatar's talking video (offline, CPU).
    Render(RenderCmd),
    /// On a machine with an NVIDIA GPU (builds with feature `cuda`): run every kernel on the
    /// device against the CPU stages, bit for bit, and time the frame stage with two slots
    /// against one.
    GpuCheck(GpuCheckCmd),
    /// TensorRT engines: build one from an ONNX graph and a recipe of `engines/`.
    Engine {
        #[command(subcommand)]
        command: EngineCmd,
    },
    /// INT8 calibration on the CPU: per network of --models with samples in --set, writes
    /// NAME.int8.onnx (Q/DQ graph), NAME.calib (TensorRT calibration cache) and
    /// NAME.calibration.json (every tensor's range under max, percentile and entropy), and
    /// NAME.fp16.onnx (the float16 graph, for the FP16 fidelity check).
    Calibrate(CalibrateCmd),
    /// The calibration set (see calibration/README.md).
    Calibration {
        #[command(subcommand)]
        command: CalibrationCmd,
    },
}

#[derive(Subcommand)]
enum CalibrationCmd {
    /// Write the calibration set of a recipe (deterministic): OUT/<network>/<sample>/<input>.npy.
    Make {
        /// Output directory.
        #[arg(short, long)]
        output: PathBuf,
        /// The recipe.
        #[arg(long, default_value = "calibration/recipe.toml")]
        recipe: PathBuf,
    },
}

#[derive(Args)]
struct CalibrateCmd {
    /// Directory with moda.onnx, faco.onnx, renderer.onnx (any of them).
    #[arg(long)]
    models: PathBuf,
    /// Calibration set: SET/<network>/<sample>/<input>.npy.
    #[arg(long)]
    set: PathBuf,
    /// Avatar bundle whose template and reference picture replace the set's (calibrate for the
    /// person the engines will render).
    #[arg(long)]
    avatar: Option<PathBuf>,
    /// Output directory.
    #[arg(short, long)]
    output: PathBuf,
    /// Range the Q/DQ graph uses (the report has all three; the cache is always entropy).
    #[arg(long, value_enum, default_value_t = moda_edge::quant::Method::Entropy)]
    method: moda_edge::quant::Method,
    /// Percentile of |x| for the percentile method.
    #[arg(long, default_value_t = 99.99)]
    percentile: f64,
    /// Further layers (ONNX node names) kept in float, comma-separated.
    #[arg(long, value_delimiter = ',')]
    keep: Vec<String>,
}

#[derive(Args)]
struct GpuCheckCmd {
    /// Avatar bundle whose rest pose the compared frames move around (e.g. `avatar demo`).
    #[arg(long)]
    avatar: PathBuf,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    device: usize,
    /// Frames compared and timed.
    #[arg(long, default_value_t = 120)]
    frames: usize,
    /// Temporal-code indices compared (0..N): a full default period is 600.
    #[arg(long, default_value_t = 600)]
    time_codes: u64,
    /// Multiply-adds per value of the stand-in renderer (sets how long it runs).
    #[arg(long, default_value_t = 2000)]
    rounds: u32,
    /// Where compiled kernels are cached (default: $XDG_CACHE_HOME/moda-edge/kernels).
    #[arg(long)]
    cache: Option<PathBuf>,
}

#[derive(Args)]
struct RenderCmd {
    /// Speech recording (WAV: PCM 8/16/24/32-bit or float32, any rate, any channels).
    wav: PathBuf,
    /// Avatar bundle directory (see README: `moda-edge import avatar`).
    #[arg(long)]
    avatar: PathBuf,
    /// Directory with moda.onnx (wav2vec audio head) and faco.onnx.
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Output: out.mp4 / file://out.mp4 (H.264 + AAC speech), out.y4m / y4m://out.y4m, null://.
    #[arg(short, long)]
    output: String,
    /// Seed of the VAE noise (default: random, printed).
    #[arg(long, conflicts_with = "noise")]
    seed: Option<u64>,
    /// `zero`: no VAE noise (z = μ), deterministic as the golden run.
    #[arg(long, value_parser = ["zero"])]
    noise: Option<String>,
    /// `frame`: the portrait only; `panel`: prediction | reference | condition image.
    #[arg(long, value_enum, default_value_t = moda_edge::offline::Layout::Frame)]
    layout: moda_edge::offline::Layout,
    /// Write every intermediate as .npy here (file names of golden/e2e).
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Frames whose images are dumped.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    dump_frames: Vec<usize>,
    /// CPU threads for matrix products.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(flatten)]
    backend: BackendArgs,
}

/// Which runtime runs the networks.
#[derive(Args, Clone, Copy)]
struct BackendArgs {
    /// `cpu` (tract, any machine) or `tensorrt` (engines beside the ONNX files; builds with
    /// feature `tensorrt`, i.e. `--features jetson` on the Jetson).
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    backend: BackendArg,
    /// CUDA device of the tensorrt backend.
    #[arg(long, default_value_t = 0)]
    device: usize,
    /// Precision the TensorRT engines must have been built for (default: each as built).
    #[arg(long, value_enum)]
    precision: Option<PrecisionArg>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Cpu,
    Tensorrt,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PrecisionArg {
    Fp32,
    Fp16,
    Int8,
}

impl BackendArgs {
    fn tensorrt(self) -> moda_edge::backend::select::TensorRtChoice {
        use moda_edge::backend::Precision;
        moda_edge::backend::select::TensorRtChoice {
            device: self.device,
            precision: self.precision.map(|p| match p {
                PrecisionArg::Fp32 => Precision::Fp32,
                PrecisionArg::Fp16 => Precision::Fp16,
                PrecisionArg::Int8 => Precision::Int8,
            }),
        }
    }
}

/// Runs `$body` with `$b` bound to the chosen backend (a reference): tract, or TensorRT when
/// this build has it; otherwise the enclosing function returns the one-line error of a build
/// without it.
macro_rules! with_backend {
    ($args:expr, $threads:expr, |$b:ident| $body:expr) => {{
        let args: BackendArgs = $args;
        match args.backend {
            BackendArg::Cpu => {
                let $b = &TractBackend::new($threads);
                $body
            }
            #[cfg(any(feature = "tensorrt", feature = "tensorrt-fake"))]
            BackendArg::Tensorrt => {
                let $b = &moda_edge::backend::select::open_tensorrt(args.tensorrt())?;
                $body
            }
            #[cfg(not(any(feature = "tensorrt", feature = "tensorrt-fake")))]
            BackendArg::Tensorrt => {
                let _ = args.tensorrt();
                return Err(moda_edge::backend::select::tensorrt_not_built().into());
            }
        }
    }};
}

#[derive(Args)]
struct ImportCmd {
    /// What the file holds: a network checkpoint, or `avatar` (an official meta_dir).
    network: ImportKind,
    /// The official checkpoint (torch.save zip of a bare state_dict).
    checkpoint: PathBuf,
    /// Output ONNX file (for `avatar`: the bundle directory).
    #[arg(short, long)]
    output: PathBuf,
    /// wav2vec 2.0 attention heads (not recoverable from the checkpoint; default 12 = wav2vec2-base).
    #[arg(long)]
    wav2vec_heads: Option<usize>,
    /// wav2vec 2.0 feature-encoder conv strides (default 5,2,2,2,2,2,2).
    #[arg(long, value_delimiter = ',')]
    wav2vec_strides: Option<Vec<usize>>,
    /// `import avatar`: the person's renderer checkpoint (.pth or .pkl).
    #[arg(long)]
    renderer: Option<PathBuf>,
    /// `import avatar`: renderer input size (512 official; 256 for small renderers).
    #[arg(long, default_value_t = 512)]
    renderer_size: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ImportKind {
    Moda,
    Faco,
    Renderer,
    Avatar,
}

#[derive(Args)]
struct InferCmd {
    /// The ONNX model.
    model: PathBuf,
    /// One input per model input: NAME=FILE.npy (float32).
    #[arg(short, long = "input", value_name = "NAME=FILE.npy")]
    inputs: Vec<String>,
    /// Directory for the outputs, written as NAME.npy (float32).
    #[arg(short = 'o', long)]
    output_dir: PathBuf,
    /// CPU threads for matrix products.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(flatten)]
    backend: BackendArgs,
}

#[derive(Subcommand)]
enum ModelsCmd {
    /// Write moda.onnx, faco.onnx and renderer.onnx with seeded random weights.
    Init {
        /// Output directory.
        #[arg(short, long)]
        output: PathBuf,
        /// `release`: the official sizes (benchmarks); `tiny`: small, for fast tests and demos.
        #[arg(long, value_enum, default_value_t = PresetArg::Tiny)]
        preset: PresetArg,
        /// Seed of the random weights.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum AvatarCmd {
    /// Write the synthetic demo avatar: a face mesh computed from the MediaPipe topology and a
    /// painted reference picture (no person's data), with the given renderer.
    Demo {
        /// Output bundle directory.
        #[arg(short, long)]
        output: PathBuf,
        /// The renderer ONNX the bundle uses (e.g. from `models init`).
        #[arg(long, default_value = "models/renderer.onnx")]
        renderer: PathBuf,
        /// Renderer input size (256 or 512).
        #[arg(long, default_value_t = 512)]
        renderer_size: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PresetArg {
    Release,
    Tiny,
}

impl From<PresetArg> for Preset {
    fn from(p: PresetArg) -> Preset {
        match p {
            PresetArg::Release => Preset::Release,
            PresetArg::Tiny => Preset::Tiny,
        }
    }
}

#[derive(Args)]
struct BenchCmd {
    /// Directory with moda.onnx, faco.onnx, renderer.onnx (e.g. from `models init --preset release`).
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Threads per runtime (tract and ONNX Runtime get the same number).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed runs per network (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Frames per MODA/FaCo run (600 = one official 20 s window).
    #[arg(long, default_value_t = 600)]
    frames: usize,
    /// Renderer input side in pixels (a multiple of 256).
    #[arg(long, default_value_t = 512)]
    size: usize,
    /// Also run ONNX Runtime through this Python (needs onnxruntime and numpy; see scripts/setup.sh).
    #[arg(long, value_name = "PYTHON")]
    ort: Option<PathBuf>,
    /// Instead of the networks: the per-frame cost of everything else (pose, drawing, time
    /// code, conversions) at this avatar's 512×512 canvas, median over 300 frames.
    #[arg(long, value_name = "AVATAR")]
    overhead: Option<PathBuf>,
    /// Let tract allocate its activations from the system heap on every run instead of
    /// recycling them, to measure what the run pool changes.
    #[arg(long)]
    no_recycle: bool,
    /// After the timed runs, time every tract operator over one more run and print where the
    /// time goes, per network.
    #[arg(long)]
    profile: bool,
    /// With `--backend tensorrt`: time each network there and give its largest difference
    /// from tract on the same inputs (the TensorRT engines must exist beside the ONNX files).
    #[command(flatten)]
    backend: BackendArgs,
    /// Print the `trtexec` command that builds each network's engine for the shapes benchmarked
    /// (at `--precision`), and exit.
    #[arg(long)]
    trtexec: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    // A panic inside the inference runtime comes back as an error naming the model.
    moda_edge::backend::quiet_guarded_panics();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// Most CPU threads a command accepts for matrix products.
const MAX_THREADS: usize = 64;

/// Checks a `--threads` value.
fn threads(n: usize) -> Result<usize> {
    if !(1..=MAX_THREADS).contains(&n) {
        bail!("--threads {n} is out of range; use 1 to {MAX_THREADS} CPU threads");
    }
    Ok(n)
}

/// The error and its causes on one line. Every error type of the library prints its cause
/// either in its own text or as `source()`, never both, so the chain has no repeats.
fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

fn run(command: Command) -> Result<ExitCode> {
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match command {
        Command::Import(cmd) => done(import_cmd(cmd)),
        Command::Infer(cmd) => done(infer_cmd(cmd)),
        Command::Models {
            command:
                ModelsCmd::Init {
                    output,
                    preset,
                    seed,
                },
        } => done(models_init(&output, preset.into(), seed)),
        Command::Avatar {
            command:
                AvatarCmd::Demo {
                    output,
                    renderer,
                    renderer_size,
                },
        } => {
            let config =
                moda_edge::face::avatar::write_synthetic(&renderer, renderer_size, &output)?;
            println!(
                "wrote avatar bundle {} ({}, renderer {}², {})",
                output.display(),
                config.name,
                config.renderer_size,
                renderer.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(cmd) => done(bench_cmd(cmd)),
        Command::Render(cmd) => render_cmd(cmd),
        Command::GpuCheck(cmd) => gpu_check_cmd(cmd),
        Command::Engine {
            command: EngineCmd::Build(cmd),
        } => done(engine_build_cmd(cmd)),
        Command::Calibrate(cmd) => done(calibrate_cmd(cmd)),
        Command::Calibration {
            command: CalibrationCmd::Make { output, recipe },
        } => done(calibration_make(&recipe, &output)),
    }
}

fn calibration_make(recipe: &Path, output: &Path) -> Result<()> {
    let text = std::fs::read_to_string(recipe)
        .with_context(|| format!("cannot read the recipe {}", recipe.display()))?;
    let recipe = moda_edge::quant::set::Recipe::parse(recipe, &text)?;
    for (network, n) in moda_edge::quant::set::make(&recipe, output)? {
        println!("{}/{network}: {n} samples", output.display());
    }
    Ok(())
}

fn calibrate_cmd(cmd: CalibrateCmd) -> Result<()> {
    if !(cmd.percentile > 0.0 && cmd.percentile <= 100.0) {
        bail!("--percentile must be in (0, 100], got {}", cmd.percentile);
    }
    let opts = moda_edge::quant::CalibrateOptions {
        method: cmd.method,
        percentile: cmd.percentile,
        keep: moda_edge::quant::KeepRules {
            names: cmd.keep,
            ..Default::default()
        },
    };
    let avatar = match &cmd.avatar {
        Some(dir) => Some(moda_edge::face::avatar::Avatar::load(dir)?),
        None => None,
    };
    let written = moda_edge::quant::calibrate_dir(
        &cmd.models,
        &cmd.set,
        avatar.as_ref(),
        &cmd.output,
        &opts,
    )?;
    for w in written {
        println!(
            "{}: {} samples, {} tensors, {} layers quantized -> {}/{}.int8.onnx, .calib, .calibration.json",
            w.network,
            w.samples,
            w.tensors,
            w.quantized_layers,
            cmd.output.display(),
            w.network
        );
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn gpu_check_cmd(_cmd: GpuCheckCmd) -> Result<ExitCode> {
    bail!(
        "gpu-check: this moda-edge was built without the GPU path; build it with \
         `cargo build --release --features cuda` (or run scripts/gpu-check.sh)"
    )
}

#[cfg(feature = "cuda")]
fn gpu_check_cmd(cmd: GpuCheckCmd) -> Result<ExitCode> {
    use moda_edge::gpu::{check, nvrtc::CubinCache};
    let avatar = moda_edge::face::avatar::Avatar::load(&cmd.avatar)?;
    let cache = match cmd.cache {
        Some(dir) => CubinCache::new(dir),
        None => CubinCache::new(CubinCache::default_dir().context(
            "gpu-check: no cache folder (neither XDG_CACHE_HOME nor HOME is set); pass --cache DIR",
        )?),
    };
    let opts = check::CheckOptions {
        device: cmd.device,
        frames: cmd.frames.max(1),
        rounds: cmd.rounds,
        time_codes: cmd.time_codes,
        cache,
    };
    let report = check::run(&opts, &avatar.repr(), avatar.config.canvas, |l| {
        println!("{l}")
    })?;
    let failed = report.lines.iter().filter(|l| !l.passed).count();
    for l in report
        .lines
        .iter()
        .filter(|l| l.what.starts_with("two slots"))
    {
        println!("{}: {}", l.what, l.detail);
    }
    if failed > 0 {
        println!(
            "gpu-check: {failed} comparison(s) FAILED on {}",
            report.device
        );
        return Ok(ExitCode::FAILURE);
    }
    println!("gpu-check: every kernel bit-exact on {}", report.device);
    Ok(ExitCode::SUCCESS)
}

fn write_model(path: &Path, model: &tract_onnx::pb::ModelProto) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    std::fs::write(path, onnx::encode(model))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn import_cmd(cmd: ImportCmd) -> Result<()> {
    if let Some(s) = &cmd.wav2vec_strides {
        if s.len() != 7 || s.contains(&0) {
            bail!("--wav2vec-strides needs 7 positive values (one per feature-encoder conv), got {s:?}");
        }
    }
    if cmd.wav2vec_heads == Some(0) {
        bail!("--wav2vec-heads must be at least 1");
    }
    let network = match cmd.network {
        ImportKind::Moda => Network::Moda,
        ImportKind::Faco => Network::Faco,
        ImportKind::Renderer => Network::Renderer,
        ImportKind::Avatar => {
            let Some(renderer) = &cmd.renderer else {
                bail!(
                    "import avatar needs --renderer <checkpoint.pth|.pkl> (the person's renderer)"
                );
            };
            let config = moda_edge::face::avatar::import_official(
                &cmd.checkpoint,
                renderer,
                cmd.renderer_size,
                &cmd.output,
            )?;
            println!(
                "wrote avatar bundle {} ({}, renderer {}²)",
                cmd.output.display(),
                config.name,
                config.renderer_size
            );
            return Ok(());
        }
    };
    let opts = ImportOptions {
        wav2vec_heads: cmd.wav2vec_heads,
        wav2vec_strides: cmd.wav2vec_strides,
    };
    let model = import::import(network, &cmd.checkpoint, &opts)?;
    write_model(&cmd.output, &model)?;
    let hparams = model
        .metadata_props
        .iter()
        .find(|p| p.key == "moda.hparams")
        .map(|p| p.value.as_str())
        .unwrap_or("");
    println!(
        "wrote {} ({} from {}; {hparams})",
        cmd.output.display(),
        network.name(),
        cmd.checkpoint.display()
    );
    Ok(())
}

fn infer_cmd(cmd: InferCmd) -> Result<()> {
    let threads = threads(cmd.threads)?;
    let model = OnnxModel::load(&cmd.model)?;
    let mut inputs: Vec<(String, moda_edge::model::Tensor)> = Vec::new();
    for spec in &cmd.inputs {
        let Some((name, file)) = spec.split_once('=') else {
            bail!(
                "--input {spec:?} is not NAME=FILE.npy; the model expects {}",
                model.describe_inputs()
            );
        };
        if inputs.iter().any(|(n, _)| n == name) {
            bail!(
                "--input {name}= is given twice; give each of {} once",
                model.describe_inputs()
            );
        }
        inputs.push((name.to_string(), npy::read_finite(Path::new(file))?));
    }
    let outputs: Vec<(String, moda_edge::model::Tensor)> =
        with_backend!(cmd.backend, threads, |b| run_once(b, &model, &inputs))?;
    std::fs::create_dir_all(&cmd.output_dir)
        .with_context(|| format!("cannot create {}", cmd.output_dir.display()))?;
    for (name, t) in &outputs {
        let path = cmd.output_dir.join(format!("{name}.npy"));
        npy::write(&path, t)?;
        println!(
            "{} {}",
            path.display(),
            moda_edge::model::checkpoint::shape_string(&t.shape)
        );
    }
    Ok(())
}

fn models_init(dir: &Path, preset: Preset, seed: u64) -> Result<()> {
    for network in [Network::Moda, Network::Faco, Network::Renderer] {
        let path = dir.join(format!("{}.onnx", network.name()));
        eprintln!("models init: {} ({preset:?}, seed {seed})", path.display());
        write_model(&path, &import::init(network, preset, seed))?;
    }
    println!("wrote moda.onnx, faco.onnx, renderer.onnx to {} (random weights: they animate noise, not a face)", dir.display());
    Ok(())
}

fn bench_cmd(cmd: BenchCmd) -> Result<()> {
    if let Some(dir) = &cmd.overhead {
        let avatar = moda_edge::face::avatar::Avatar::load(dir)?;
        let ms = moda_edge::bench::frame_overhead_ms(&avatar, 300)?;
        println!(
            "per-frame overhead without networks at {0}×{0}: median {ms:.3} ms (1 thread)",
            avatar.config.canvas
        );
        return Ok(());
    }
    if cmd.size == 0 || !cmd.size.is_multiple_of(256) {
        bail!(
            "--size must be a positive multiple of 256 (the renderer halves it 8 times), got {}",
            cmd.size
        );
    }
    if cmd.iters == 0 || cmd.frames < 2 {
        bail!("--iters must be at least 1 and --frames at least 2");
    }
    let opts = moda_edge::bench::BenchOptions {
        models: cmd.models,
        threads: threads(cmd.threads)?,
        iters: cmd.iters,
        frames: cmd.frames,
        size: cmd.size,
        ort_python: cmd.ort,
        recycle: !cmd.no_recycle,
        profile: cmd.profile,
    };
    if cmd.trtexec {
        let precision = cmd.backend.tensorrt().precision.unwrap_or_default();
        for (_, model, shapes) in moda_edge::bench::bench_shapes(&opts)? {
            let inputs = model.resolve_shapes(&shapes.shapes)?;
            println!(
                "{}",
                moda_edge::backend::select::trtexec_beside(&model, &inputs, precision)
            );
        }
        return Ok(());
    }
    if cmd.backend.backend == BackendArg::Tensorrt {
        let threads = opts.threads;
        let rows = with_backend!(cmd.backend, threads, |b| moda_edge::bench::compare(
            b,
            &opts,
            |line| eprintln!("bench: {line}")
        ))?;
        if rows.is_empty() {
            bail!("no model found in {}", opts.models.display());
        }
        print!("{}", moda_edge::bench::compare_table(&rows, "tensorrt"));
        return Ok(());
    }
    let rows = moda_edge::bench::run(&opts, |line| eprintln!("bench: {line}"))?;
    if rows.is_empty() {
        bail!("no model found in {} (expected moda.onnx, faco.onnx, renderer.onnx; see `moda-edge models init`)", opts.models.display());
    }
    print!("{}", moda_edge::bench::table(&rows, opts.threads));
    print!("{}", moda_edge::bench::profile_table(&rows));
    Ok(())
}

fn render_cmd(cmd: RenderCmd) -> Result<ExitCode> {
    use moda_edge::motion::Noise;
    use moda_edge::offline::{render, Models, RenderOptions};
    let threads = threads(cmd.threads)?;
    let uri = moda_edge::sink::SinkUri::parse_offline(&cmd.output)?;
    #[cfg(feature = "gstreamer")]
    if matches!(uri, moda_edge::sink::SinkUri::File(_)) {
        moda_edge::sink::init_gstreamer()?;
    }
    let avatar = moda_edge::face::avatar::Avatar::load(&cmd.avatar)?;
    let models = Models::load(&cmd.models)?;
    let noise = match (cmd.noise.as_deref(), cmd.seed) {
        (Some(_), _) => Noise::Zero,
        (None, Some(seed)) => Noise::Seeded(seed),
        (None, None) => {
            let seed = rand::random::<u64>() >> 11;
            eprintln!("render: noise seed {seed} (repeat with --seed {seed})");
            Noise::Seeded(seed)
        }
    };
    let interrupt = Interrupt::install(uri.path())?;
    let opts = RenderOptions {
        noise,
        layout: cmd.layout,
        dump: cmd.dump,
        dump_frames: cmd.dump_frames,
        stop: Some(interrupt.stop.clone()),
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "render {bar:30} {pos}/{len} frames  {per_sec}  eta {eta}",
        )
        .expect("valid template"),
    );
    let progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let summary: moda_edge::offline::RenderSummary = with_backend!(cmd.backend, threads, |b| {
        render(b, &models, &avatar, &cmd.wav, &uri, &opts, progress)
    })?;
    bar.finish_and_clear();
    let rate = summary.frames as f64 / summary.wall_seconds.max(1e-9);
    if summary.interrupted && summary.frames == 0 {
        println!("interrupted before the first frame: nothing written to {uri}");
        return Ok(ExitCode::from(interrupt.exit_code()));
    }
    if summary.interrupted {
        println!(
            "interrupted: wrote the {} of {} frames rendered so far ({:.2} s of video) to {} in {:.1} s ({rate:.1} frames/s)",
            summary.frames,
            summary.total_frames,
            summary.frames as f64 / 30.0,
            uri,
            summary.wall_seconds,
        );
        return Ok(ExitCode::from(interrupt.exit_code()));
    }
    println!(
        "rendered {} frames ({:.2} s of audio) to {} in {:.1} s ({rate:.1} frames/s)",
        summary.frames, summary.audio_seconds, uri, summary.wall_seconds,
    );
    Ok(ExitCode::SUCCESS)
}

/// SIGINT/SIGTERM during a render: the first one asks the render to stop after the current
/// frame and finalize the output with the frames so far; a second one removes the partial
/// output file at once and exits.
struct Interrupt {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    signal: std::sync::Arc<std::sync::atomic::AtomicI32>,
}

impl Interrupt {
    fn install(output: Option<&Path>) -> Result<Interrupt> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicI32::new(0));
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
            .context("cannot install the SIGINT/SIGTERM handler")?;
        let partial = output.map(moda_edge::util::fsx::temp_path_for);
        let (stop2, signal2) = (Arc::clone(&stop), Arc::clone(&signal));
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if !stop2.swap(true, Ordering::SeqCst) {
                        signal2.store(sig, Ordering::SeqCst);
                        continue;
                    }
                    if let Some(p) = &partial {
                        let _ = std::fs::remove_file(p);
                    }
                    eprintln!("render: aborted; the partial output was removed");
                    std::process::exit(128 + sig);
                }
            })
            .context("cannot start the signal thread")?;
        Ok(Interrupt { stop, signal })
    }

    /// 128 + the signal number, as a shell reports a process ended by that signal.
    fn exit_code(&self) -> u8 {
        let sig = self.signal.load(std::sync::atomic::Ordering::SeqCst);
        u8::try_from(128 + sig).unwrap_or(1)
    }
}

// ---- engine build ---------------------------------------------------------------------------

#[derive(Subcommand)]
enum EngineCmd {
    /// Build NAME.engine and its sidecar NAME.engine.json in DIR with TensorRT's builder (on
    /// the Jetson that will run it; see engines/README.md), and print the equivalent trtexec
    /// command.
    Build(EngineBuildCmd),
}

#[derive(Args)]
struct EngineBuildCmd {
    /// The ONNX graph (e.g. models/moda.onnx, or a `*.int8.onnx` Q/DQ graph).
    #[arg(long)]
    onnx: PathBuf,
    /// The recipe: engines/moda.toml, engines/faco.toml or engines/renderer.toml.
    #[arg(long)]
    recipe: PathBuf,
    /// Jetson Orin module the recipe's variant is picked for (workspace, default precision).
    #[arg(long, value_enum)]
    device_class: Option<DeviceClassArg>,
    /// Overrides the recipe's precision.
    #[arg(long, value_enum)]
    precision: Option<BuildPrecisionArg>,
    /// TensorRT INT8 calibration cache (`*.calib` of `moda-edge calibrate`) for implicit INT8.
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Timing cache file: read when it exists, written after the build (faster rebuilds).
    #[arg(long)]
    timing_cache: Option<PathBuf>,
    /// CUDA device the engine is built on (and for).
    #[arg(long, default_value_t = 0)]
    device: usize,
    /// Output folder: the runtime looks for the engine beside its ONNX file, so this is
    /// usually the ONNX file's folder.
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceClassArg {
    Nano,
    Nx,
    Agx,
}

#[derive(Clone, Copy, ValueEnum)]
enum BuildPrecisionArg {
    Fp16,
    Int8,
    Best,
    Fp32,
}

fn engine_build_cmd(cmd: EngineBuildCmd) -> Result<()> {
    use moda_edge::backend::recipe::{BuildPrecision, DeviceClass, Recipe};
    // Recipe mistakes are reported first, also by a build without TensorRT.
    let recipe = Recipe::load(&cmd.recipe)?;
    let device_class = cmd.device_class.map(|c| match c {
        DeviceClassArg::Nano => DeviceClass::Nano,
        DeviceClassArg::Nx => DeviceClass::Nx,
        DeviceClassArg::Agx => DeviceClass::Agx,
    });
    let precision = cmd.precision.map(|p| match p {
        BuildPrecisionArg::Fp16 => BuildPrecision::Fp16,
        BuildPrecisionArg::Int8 => BuildPrecision::Int8,
        BuildPrecisionArg::Best => BuildPrecision::Best,
        BuildPrecisionArg::Fp32 => BuildPrecision::Fp32,
    });
    engine_build_with(&cmd, &recipe, device_class, precision)
}

#[cfg(not(any(feature = "tensorrt", feature = "tensorrt-fake")))]
fn engine_build_with(
    _cmd: &EngineBuildCmd,
    _recipe: &moda_edge::backend::recipe::Recipe,
    _class: Option<moda_edge::backend::recipe::DeviceClass>,
    _precision: Option<moda_edge::backend::recipe::BuildPrecision>,
) -> Result<()> {
    bail!(
        "engine build: this moda-edge has no TensorRT builder (built without feature \
         `tensorrt`); build it on the Jetson with `cargo build --release --features jetson` \
         (JetPack 6 provides libnvinfer.so.10 and libnvonnxparser.so.10)"
    )
}

#[cfg(any(feature = "tensorrt", feature = "tensorrt-fake"))]
fn engine_build_with(
    cmd: &EngineBuildCmd,
    recipe: &moda_edge::backend::recipe::Recipe,
    device_class: Option<moda_edge::backend::recipe::DeviceClass>,
    precision: Option<moda_edge::backend::recipe::BuildPrecision>,
) -> Result<()> {
    use moda_edge::backend::tensorrt::builder::BuildProgress;
    use moda_edge::backend::tensorrt::engine_build::{build_engine, BuildRequest};
    let req = BuildRequest {
        onnx: &cmd.onnx,
        recipe,
        device_class,
        precision,
        calib: cmd.calib.as_deref(),
        timing_cache: cmd.timing_cache.as_deref(),
        out_dir: &cmd.output,
        device: cmd.device,
    };
    let plan = recipe.plan(device_class);
    // What is being built goes to standard output, with the result; errors stay one line on
    // standard error.
    println!(
        "engine build: {} with {} ({}, {} MiB workspace{})",
        cmd.onnx.display(),
        cmd.recipe.display(),
        precision.unwrap_or(plan.precision).name(),
        plan.workspace_mib,
        device_class
            .map(|c| format!(", Orin {}", c.name()))
            .unwrap_or_default()
    );
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:24} {bar:30} {pos}/{len}  {elapsed}")
            .expect("valid template"),
    );
    // The innermost running phase is shown; TensorRT nests them (building > timing).
    let mut phases: Vec<String> = Vec::new();
    let mut on_progress = |ev: BuildProgress<'_>| match ev {
        BuildProgress::Start { phase, steps } => {
            phases.push(phase.to_string());
            bar.set_message(phase.to_string());
            bar.set_length(u64::try_from(steps).unwrap_or(0));
            bar.set_position(0);
        }
        BuildProgress::Step { phase, step } => {
            if phases.last().map(String::as_str) == Some(phase) {
                bar.set_position(u64::try_from(step).unwrap_or(0) + 1);
            }
        }
        BuildProgress::Finish { phase } => {
            if let Some(i) = phases.iter().rposition(|p| p == phase) {
                phases.truncate(i);
            }
            if let Some(p) = phases.last() {
                bar.set_message(p.clone());
            }
        }
    };
    let report = build_engine(&req, &mut on_progress);
    bar.finish_and_clear();
    let report = report?;
    if let Some(cache) = &cmd.timing_cache {
        if report.timing_cache_read > 0 {
            eprintln!(
                "engine build: timing cache {} reused ({} bytes) and updated",
                cache.display(),
                report.timing_cache_read
            );
        } else {
            eprintln!("engine build: timing cache {} written", cache.display());
        }
    }
    println!(
        "wrote {} and {} ({} precision, TensorRT {}, {} compute {}.{}) in {:.1} s",
        report.engine.display(),
        report.sidecar_path.display(),
        report.sidecar.precision,
        report.sidecar.tensorrt_version,
        report.sidecar.gpu_name,
        report.sidecar.compute_capability[0],
        report.sidecar.compute_capability[1],
        report.seconds
    );
    println!("equivalent: {}", report.trtexec);
    Ok(())
}

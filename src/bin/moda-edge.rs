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

#[derive(Parser)]
#[command(
    name = "moda-edge",
    version,
    about = "MODA talking-portrait tools: import checkpoints, run and benchmark the ONNX graphs"
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
    /// Median latency of each network on tract and (optionally) ONNX Runtime.
    Bench(BenchCmd),
}

#[derive(Args)]
struct ImportCmd {
    /// Which network the checkpoint holds.
    network: Network,
    /// The official checkpoint (torch.save zip of a bare state_dict).
    checkpoint: PathBuf,
    /// Output ONNX file.
    #[arg(short, long)]
    output: PathBuf,
    /// wav2vec 2.0 attention heads (not recoverable from the checkpoint; default 12 = wav2vec2-base).
    #[arg(long)]
    wav2vec_heads: Option<usize>,
    /// wav2vec 2.0 feature-encoder conv strides (default 5,2,2,2,2,2,2).
    #[arg(long, value_delimiter = ',')]
    wav2vec_strides: Option<Vec<usize>>,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Import(cmd) => import_cmd(cmd),
        Command::Infer(cmd) => infer_cmd(cmd),
        Command::Models {
            command:
                ModelsCmd::Init {
                    output,
                    preset,
                    seed,
                },
        } => models_init(&output, preset.into(), seed),
        Command::Bench(cmd) => bench_cmd(cmd),
    }
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
    let opts = ImportOptions {
        wav2vec_heads: cmd.wav2vec_heads,
        wav2vec_strides: cmd.wav2vec_strides,
    };
    let model = import::import(cmd.network, &cmd.checkpoint, &opts)?;
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
        cmd.network.name(),
        cmd.checkpoint.display()
    );
    Ok(())
}

fn infer_cmd(cmd: InferCmd) -> Result<()> {
    let model = OnnxModel::load(&cmd.model)?;
    let mut inputs = Vec::new();
    for spec in &cmd.inputs {
        let Some((name, file)) = spec.split_once('=') else {
            bail!(
                "--input {spec:?} is not NAME=FILE.npy; the model expects {}",
                model.describe_inputs()
            );
        };
        inputs.push((name.to_string(), npy::read(Path::new(file))?));
    }
    let outputs = run_once(&TractBackend::new(cmd.threads), &model, &inputs)?;
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
        threads: cmd.threads.max(1),
        iters: cmd.iters,
        frames: cmd.frames,
        size: cmd.size,
        ort_python: cmd.ort,
    };
    let rows = moda_edge::bench::run(&opts, |line| eprintln!("bench: {line}"))?;
    if rows.is_empty() {
        bail!("no model found in {} (expected moda.onnx, faco.onnx, renderer.onnx; see `moda-edge models init`)", opts.models.display());
    }
    print!("{}", moda_edge::bench::table(&rows, opts.threads));
    Ok(())
}

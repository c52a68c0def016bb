//! The TensorRT backend over the fake shim (feature `tensorrt-fake`): fake engines built
//! beside the golden graphs run the backend-generic conformance suite through the same FFI
//! calls as TensorRT, and give exactly tract's results (the fake runs the same tract graphs).
#![cfg(feature = "tensorrt-fake")]

mod common;

use moda_edge::backend::conformance::conformance;
use moda_edge::backend::tensorrt::engine::EngineLookup;
use moda_edge::backend::tensorrt::{MissingEngine, TensorRtBackend, TensorRtOptions};
use moda_edge::backend::tract::TractBackend;
use moda_edge::backend::{run_once, OnnxModel};

fn fake_trt(dir: &std::path::Path, missing: MissingEngine) -> TensorRtBackend {
    TensorRtBackend::new(TensorRtOptions {
        device: 0,
        lookup: EngineLookup::Dir(dir.into()),
        missing,
        precision: None,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn fake_engines_give_tracts_results_on_every_golden_network() {
    let golden = common::reference_dir().join("golden");
    let engines = tempfile::tempdir().unwrap();
    let trt = fake_trt(engines.path(), MissingEngine::BuildFake);
    let rows = conformance(&trt, &golden, |case| eprintln!("tensorrt-fake: {case}"))
        .unwrap_or_else(|e| panic!("{}", moda_edge::util::error_chain(&e)));
    let reference =
        conformance(&TractBackend::default(), &golden, |_| {}).unwrap_or_else(|e| panic!("{e}"));
    for r in &rows {
        eprintln!(
            "{:<26} {:<7} max abs {:.2e} (bound {:.0e})",
            r.case, r.output, r.max_abs, r.bound
        );
    }
    assert_eq!(rows.len(), 22);
    assert!(rows.iter().all(|r| r.passed()), "{rows:?}");
    // Bit-identical outputs give identical error measures, row by row.
    assert_eq!(rows, reference);

    // One engine and one sidecar per golden graph; a second backend loads them as they are.
    let mut names: Vec<String> = std::fs::read_dir(engines.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(names
        .iter()
        .all(|n| n.ends_with(".engine") || n.ends_with(".engine.json")));
    let strict = fake_trt(engines.path(), MissingEngine::Fail);
    let again = conformance(&strict, &golden, |_| {}).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, reference);
}

/// FaCo on the end-to-end run's smoothed streams: every output value bit for bit as tract's.
#[test]
fn a_fake_engine_output_is_bit_identical_to_tract() {
    use moda_edge::model::import::{import, ImportOptions, Network};
    use moda_edge::model::Tensor;
    let proto = import(
        Network::Faco,
        &common::golden("faco/checkpoint.pkl"),
        &ImportOptions::default(),
    )
    .unwrap();
    let model = OnnxModel::from_proto("faco", &proto);
    let stream = |name: &str, c: usize| {
        let t = common::golden_npy(&format!("e2e/moda_smoothed_{name}.npy"));
        Tensor::f32(vec![1, 208, c], t.to_f32_vec())
    };
    let template = common::golden_npy("faco/input_ref.npy");
    let inputs = vec![
        ("lip".to_string(), stream("lip", 120)),
        ("eye".to_string(), stream("eye", 180)),
        (
            "template".to_string(),
            Tensor::f32(vec![1, 1434], template.to_f32_vec()),
        ),
    ];
    let engines = tempfile::tempdir().unwrap();
    let trt = fake_trt(engines.path(), MissingEngine::BuildFake);
    let got = run_once(&trt, &model, &inputs).unwrap();
    let want = run_once(&TractBackend::default(), &model, &inputs).unwrap();
    assert_eq!(got.len(), want.len());
    for ((gn, g), (wn, w)) in got.iter().zip(&want) {
        assert_eq!(gn, wn);
        let g: Vec<u32> = g.to_f32_vec().iter().map(|x| x.to_bits()).collect();
        let w: Vec<u32> = w.to_f32_vec().iter().map(|x| x.to_bits()).collect();
        assert_eq!(g, w, "{gn}");
    }
}

/// `moda-edge render --backend tensorrt` in a test build (the fake shim, which writes the
/// engines it lacks): the same video as `--backend cpu`, byte for byte.
#[test]
fn render_through_the_tensorrt_backend_gives_the_cpu_backends_video() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    common::write_tiny_models(&models);
    let avatar = dir.path().join("avatar");
    moda_edge::face::avatar::write_synthetic(&models.join("renderer.onnx"), 256, &avatar).unwrap();
    let wav = dir.path().join("speech.wav");
    common::write_speechlike_wav(&wav, 16_000 + 900, 22_050, 2);
    let render = |backend: &str| {
        let out = dir.path().join(format!("{backend}.y4m"));
        let mut c = common::moda_edge_command();
        c.arg("render")
            .arg(&wav)
            .arg("--avatar")
            .arg(&avatar)
            .arg("--models")
            .arg(&models)
            .args(["--seed", "5", "--backend", backend, "-o"])
            .arg(&out);
        let f = common::run_with_timeout(c, 300);
        assert_eq!(f.code, Some(0), "{backend}: {}", f.stderr);
        std::fs::read(out).unwrap()
    };
    let cpu = render("cpu");
    let trt = render("tensorrt");
    assert!(cpu.len() > 1000);
    assert!(cpu == trt, "the two backends' videos differ");
    assert!(avatar.join("renderer.engine").is_file());
    assert!(models.join("moda.engine.json").is_file());
}

/// `bench --trtexec` prints one engine-building command per network for the shapes it
/// benchmarks; `bench --backend tensorrt` then times each network there and compares it with
/// tract (the fake's engines are tract's graphs: no difference), and an engine of another
/// precision than asked for is one line with the command that builds the right one.
#[test]
fn bench_compares_the_tensorrt_backend_with_tract_and_prints_the_engine_commands() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    common::write_tiny_models(&models);
    let bench = |args: &[&str]| {
        let mut c = common::moda_edge_command();
        c.arg("bench")
            .arg("--models")
            .arg(&models)
            .args(["--frames", "40", "--size", "256", "--iters", "2"])
            .args(args);
        common::run_with_timeout(c, 300)
    };
    let f = bench(&["--trtexec", "--precision", "fp16"]);
    assert_eq!(f.code, Some(0), "{}", f.stderr);
    let lines: Vec<&str> = f.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", f.stdout);
    let renderer = models.join("renderer");
    assert_eq!(
        lines[2],
        format!(
            "trtexec --onnx={0}.onnx --saveEngine={0}.engine \
             --shapes=mesh_image:1x3x256x256,reference:1x3x256x256,time_code:1x13 --fp16",
            renderer.display()
        )
    );

    let f = bench(&["--backend", "tensorrt"]);
    assert_eq!(f.code, Some(0), "{}", f.stderr);
    let rows: Vec<&str> = f.stdout.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(rows.len(), 4, "{}", f.stdout);
    assert!(rows[0].contains("tensorrt median (ms)"));
    for row in &rows[1..] {
        assert!(row.ends_with("| 0.000e0 |"), "{row}");
    }

    // After its progress lines, one error line naming the engine, both precisions and the fix.
    let f = bench(&["--backend", "tensorrt", "--precision", "fp16"]);
    assert_eq!(f.code, Some(1), "{}", f.stderr);
    assert!(!f.stderr.contains("panicked"), "{}", f.stderr);
    let errors: Vec<&str> = f
        .stderr
        .lines()
        .filter(|l| !l.starts_with("bench: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", f.stderr);
    for name in [
        "moda.engine",
        "built for fp32 precision, expected fp16",
        "trtexec",
        "--fp16",
    ] {
        assert!(
            errors[0].starts_with("error: ") && errors[0].contains(name),
            "{}",
            errors[0]
        );
    }
}

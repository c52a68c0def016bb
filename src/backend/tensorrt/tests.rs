//! The TensorRT backend over the fake shim: the same FFI calls as with TensorRT, on tract.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::engine::{self, Sidecar};
use super::fake_stream::FakeStream;
use super::*;
use crate::backend::tract::TractBackend;
use crate::backend::{BackendErrorKind, Event, Memory, Precision, Prepared, Session};
use crate::model::onnx::{Dim, Graph};

/// `y = x * scale + 0.5` over `x: [1, N]`, written to `dir/scale.onnx` and loaded from there.
fn scale_model(dir: &Path, scale: f32) -> OnnxModel {
    let dims = [Dim::Fixed(1), Dim::Sym("N")];
    let mut g = Graph::new();
    let x = g.input("x", &dims);
    let s = g.scalar(scale);
    let half = g.scalar(0.5);
    let xs = g.mul(&x, &s);
    let y = g.add(&xs, &half);
    g.output(&y, "y", &dims);
    let path = dir.join("scale.onnx");
    std::fs::write(
        &path,
        crate::model::onnx::encode(&g.into_model("scale", &[])),
    )
    .unwrap();
    OnnxModel::load(&path).unwrap()
}

fn shapes(n: usize) -> PrepareOptions {
    PrepareOptions::shapes(&[("x", vec![1, n])])
}

fn backend(missing: MissingEngine) -> TensorRtBackend {
    TensorRtBackend::new(TensorRtOptions {
        missing,
        ..TensorRtOptions::default()
    })
    .unwrap()
}

fn fill(session: &mut TensorRtSession, offset: f32) {
    for (k, v) in session.input_f32(0).unwrap().iter_mut().enumerate() {
        *v = offset + k as f32 * 0.25;
    }
}

/// The one-line message of a prepare that must fail.
fn prepare_error(b: &TensorRtBackend, model: &OnnxModel, opts: &PrepareOptions) -> String {
    let err = b.prepare(model, opts).err().expect("prepare must fail");
    assert_eq!(err.kind(), BackendErrorKind::Fatal, "{err:?}");
    let line = crate::util::error_chain(&err);
    assert!(!line.contains('\n'), "one line: {line}");
    line
}

#[test]
fn a_fake_engine_runs_like_tract_through_the_shim_interface() {
    let dir = tempfile::tempdir().unwrap();
    let model = scale_model(dir.path(), 3.0);
    let b = backend(MissingEngine::BuildFake);
    assert_eq!(b.version(), fake::FAKE_VERSION);
    assert_eq!(b.name(), "tensorrt");
    let prepared = b.prepare(&model, &shapes(5)).unwrap();
    assert!(dir.path().join("scale.engine").is_file());
    let sidecar = engine::read_sidecar(&dir.path().join("scale.engine.json")).unwrap();
    assert_eq!(sidecar.onnx_sha256, model.sha256());
    assert_eq!(sidecar.input_shapes[0].shape, [1, 5]);
    assert_eq!(prepared.outputs()[0].shape, [1, 5]);

    let mut session = prepared.session().unwrap();
    assert_eq!(session.memory(), Memory::Host);
    fill(&mut session, -1.0);
    session.run().unwrap();
    let got = session.output_f32(0).unwrap().to_vec();

    let tract = TractBackend::default().prepare(&model, &shapes(5)).unwrap();
    let mut reference = tract.session().unwrap();
    for (k, v) in reference.input_f32(0).unwrap().iter_mut().enumerate() {
        *v = -1.0 + k as f32 * 0.25;
    }
    reference.run().unwrap();
    assert_eq!(got, reference.output_f32(0).unwrap());
    assert_eq!(got, [-2.5, -1.75, -1.0, -0.25, 0.5]);

    // The engine is loaded, not rebuilt, the second time.
    let built = std::fs::metadata(dir.path().join("scale.engine.json"))
        .unwrap()
        .modified()
        .unwrap();
    backend(MissingEngine::Fail)
        .prepare(&model, &shapes(5))
        .unwrap();
    let after = std::fs::metadata(dir.path().join("scale.engine.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(built, after);
}

#[test]
fn enqueue_returns_before_the_run_completes() {
    let dir = tempfile::tempdir().unwrap();
    let model = scale_model(dir.path(), 2.0);
    let prepared = backend(MissingEngine::BuildFake)
        .prepare(&model, &shapes(3))
        .unwrap();
    let mut session = prepared.session().unwrap();
    fill(&mut session, 1.0);
    let (release, gate) = mpsc::channel::<()>();
    session.stream().launch_host(move || gate.recv().unwrap());
    let event = session.enqueue().unwrap();
    assert!(
        !event.is_complete(),
        "the stream is held: the run cannot have finished"
    );
    release.send(()).unwrap();
    event.wait().unwrap();
    assert_eq!(session.output_f32(0).unwrap(), [2.5, 3.0, 3.5]);
}

#[test]
fn two_runs_on_one_stream_complete_in_enqueue_order() {
    let dir = tempfile::tempdir().unwrap();
    let model = scale_model(dir.path(), 2.0);
    let prepared = backend(MissingEngine::BuildFake)
        .prepare(&model, &shapes(2))
        .unwrap();
    let stream = FakeStream::new().unwrap();
    let mut a = prepared.session_on(stream.clone()).unwrap();
    let mut b = prepared.session_on(stream.clone()).unwrap();
    fill(&mut a, 0.0);
    fill(&mut b, 10.0);
    let (release, gate) = mpsc::channel::<()>();
    stream.launch_host(move || gate.recv().unwrap());
    let event_a = a.enqueue().unwrap();
    // A marker between the two runs sees A done and B not started.
    let after_a = stream.record();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out_b = b.outputs[0].address() as usize;
    {
        let seen = Arc::clone(&seen);
        stream.launch_host(move || {
            // SAFETY: b's output buffer lives until `b` is dropped at the end of the test, after
            // the stream has drained; only its first float is read, by this marker alone.
            let first = unsafe { *(out_b as *const f32) };
            seen.lock().unwrap().push((after_a.query(), first));
        });
    }
    let event_b = b.enqueue().unwrap();
    assert!(!event_a.is_complete() && !event_b.is_complete());
    release.send(()).unwrap();
    event_b.wait().unwrap();
    assert!(event_a.is_complete(), "B completed before A");
    event_a.wait().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [(true, 0.0)],
        "B ran before the marker"
    );
    assert_eq!(a.output_f32(0).unwrap(), [0.5, 1.0]);
    assert_eq!(b.output_f32(0).unwrap(), [20.5, 21.0]);
}

#[test]
fn two_sessions_on_two_streams_do_not_wait_for_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let model = scale_model(dir.path(), -1.0);
    let prepared = backend(MissingEngine::BuildFake)
        .prepare(&model, &shapes(2))
        .unwrap();
    let mut held = prepared.session().unwrap();
    let mut free = prepared.session().unwrap();
    fill(&mut held, 1.0);
    fill(&mut free, 2.0);
    let (release, gate) = mpsc::channel::<()>();
    held.stream().launch_host(move || gate.recv().unwrap());
    let held_event = held.enqueue().unwrap();
    free.enqueue().unwrap().wait().unwrap();
    assert!(!held_event.is_complete(), "the other stream is still held");
    assert_eq!(free.output_f32(0).unwrap(), [-1.5, -1.75]);
    release.send(()).unwrap();
    held_event.wait().unwrap();
    assert_eq!(held.output_f32(0).unwrap(), [-0.5, -0.75]);
}

#[test]
fn a_failure_on_the_stream_comes_back_from_the_event_as_a_run_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = scale_model(dir.path(), 2.0);
    let prepared = backend(MissingEngine::BuildFake)
        .prepare(&model, &shapes(2))
        .unwrap();
    let mut session = prepared.session().unwrap();
    session
        .stream()
        .fail("an illegal memory access was encountered");
    let event = session
        .enqueue()
        .expect("enqueueing does not see the failure yet");
    let err = event.wait().unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Rebuild);
    assert_eq!(
        crate::util::error_chain(&err),
        format!(
            "inference of {} failed on tensorrt: an illegal memory access was encountered",
            dir.path().join("scale.onnx").display()
        )
    );
    // CUDA errors are sticky: the session's views report it too.
    assert_eq!(
        session.output(0).unwrap_err().kind(),
        BackendErrorKind::Rebuild
    );
}

#[test]
fn a_session_dropped_with_a_run_in_flight_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = scale_model(dir.path(), 2.0);
    let prepared = backend(MissingEngine::BuildFake)
        .prepare(&model, &shapes(1 << 16))
        .unwrap();
    let mut session = prepared.session().unwrap();
    fill(&mut session, 0.0);
    let stream = session.stream().clone();
    let (release, gate) = mpsc::channel::<()>();
    stream.launch_host(move || gate.recv().unwrap());
    let event = session.enqueue().unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        release.send(()).unwrap();
    });
    // The run still writes the session's output buffer: dropping must wait for it.
    drop(session);
    assert!(event.is_complete(), "dropped before the run finished");
    event.wait().unwrap();
    releaser.join().unwrap();
}

/// A model with a built fake engine, and the sidecar's path.
fn built(dir: &Path) -> (OnnxModel, PathBuf) {
    let model = scale_model(dir, 2.0);
    backend(MissingEngine::BuildFake)
        .prepare(&model, &shapes(4))
        .unwrap();
    (model, dir.join("scale.engine.json"))
}

fn edit_sidecar(path: &Path, edit: impl FnOnce(&mut Sidecar)) {
    let mut sidecar = engine::read_sidecar(path).unwrap();
    edit(&mut sidecar);
    engine::write_sidecar(path, &sidecar).unwrap();
}

#[test]
fn each_engine_mismatch_is_one_line_with_the_build_command() {
    let dir = tempfile::tempdir().unwrap();
    let model = scale_model(dir.path(), 2.0);
    let strict = backend(MissingEngine::Fail);
    let onnx = dir.path().join("scale.onnx").display().to_string();
    let engine_path = dir.path().join("scale.engine").display().to_string();
    let command = format!("trtexec --onnx={onnx} --saveEngine={engine_path} --shapes=x:1x4");

    let line = prepare_error(&strict, &model, &shapes(4));
    assert_eq!(
        line,
        format!(
            "cannot prepare {onnx} on tensorrt: no TensorRT engine {engine_path} for {onnx}; build it: {command}"
        )
    );

    let (model, sidecar) = built(dir.path());
    edit_sidecar(&sidecar, |s| s.tensorrt_version = "10.0.1".into());
    let line = prepare_error(&strict, &model, &shapes(4));
    assert!(line.contains(&format!("{engine_path} was built by TensorRT 10.0.1, this machine has TensorRT 10.3.0-fake; rebuild it: {command}")), "{line}");

    let (model, sidecar) = built(&tempdir_reset(dir.path()));
    edit_sidecar(&sidecar, |s| {
        s.gpu_name = "Orin (nvgpu)".into();
        s.compute_capability = [8, 7];
    });
    let line = prepare_error(&strict, &model, &shapes(4));
    assert!(line.contains("was built for GPU Orin (nvgpu) (compute 8.7), this machine has fake GPU (host memory) (compute 0.0); rebuild it here: trtexec"), "{line}");

    let (model, _) = built(&tempdir_reset(dir.path()));
    let line = prepare_error(&strict, &model, &shapes(6));
    assert!(
        line.contains("was built for input shapes x:1x4, expected x:1x6; rebuild it: trtexec"),
        "{line}"
    );
    assert!(line.ends_with("--shapes=x:1x6"), "{line}");

    let line = prepare_error(
        &strict,
        &model,
        &PrepareOptions {
            precision: Precision::Fp16,
            ..shapes(4)
        },
    );
    assert!(
        line.contains("was built for fp32 precision, expected fp16; rebuild it: trtexec"),
        "{line}"
    );
    assert!(line.ends_with(" --fp16"), "{line}");

    let changed = scale_model(dir.path(), 3.0);
    let line = prepare_error(&strict, &changed, &shapes(4));
    assert!(line.contains(&format!("{engine_path} was built from another {onnx} (sha256 {}, the file now has {}); rebuild it: {command}", model.sha256(), changed.sha256())), "{line}");

    std::fs::write(dir.path().join("scale.engine.json"), "{ not json").unwrap();
    let line = prepare_error(&strict, &changed, &shapes(4));
    assert!(line.contains("scale.engine.json is unreadable ("), "{line}");
    assert!(line.ends_with(&command), "{line}");
}

/// Empties `dir` for the next case (the engine files only; the ONNX is rewritten).
fn tempdir_reset(dir: &Path) -> PathBuf {
    for f in ["scale.engine", "scale.engine.json"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    dir.to_path_buf()
}

#[test]
fn a_broken_engine_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = built(dir.path());
    let engine_path = dir.path().join("scale.engine");
    let bytes = std::fs::read(&engine_path).unwrap();
    let strict = backend(MissingEngine::Fail);
    let cases: [(&str, Vec<u8>); 5] = [
        ("bad magic", b"NOT-AN-ENGINE-AT-ALL".to_vec()),
        ("bad magic", Vec::new()),
        ("truncated header", bytes[..fake::MAGIC.len() + 10].to_vec()),
        (
            "its network is unreadable",
            bytes[..bytes.len() - 7].to_vec(),
        ),
        ("its network is unreadable", {
            let mut b = bytes[..fake::MAGIC.len()].to_vec();
            let json = br#"{"tensorrt_version":"10.3.0-fake","precision":"fp32","inputs":[],"outputs":[]}"#;
            b.extend_from_slice(&(json.len() as u32).to_le_bytes());
            b.extend_from_slice(json);
            b.extend_from_slice(b"\xff\xff\xff garbage");
            b
        }),
    ];
    for (want, broken) in cases {
        std::fs::write(&engine_path, &broken).unwrap();
        let line = prepare_error(&strict, &model, &shapes(4));
        assert!(
            line.contains(&format!(
                "cannot load {}: TensorRT cannot deserialize the engine:",
                engine_path.display()
            )),
            "{line}"
        );
        assert!(line.contains(want), "{want}: {line}");
        assert!(line.contains("rebuild it: trtexec --onnx="), "{line}");
    }
}

#[test]
fn engine_tensors_are_checked_against_the_onnx_contract() {
    let dir = tempfile::tempdir().unwrap();
    let model = scale_model(dir.path(), 2.0);
    let strict = backend(MissingEngine::Fail);
    let engine_path = dir.path().join("scale.engine");
    let with_engine_of = |g: Graph, shapes: &[(String, Vec<usize>)]| {
        let other = OnnxModel::from_proto("other", &g.into_model("other", &[]));
        fake::write_fake_engine(&other, shapes, Precision::Fp32, &engine_path).unwrap();
        let inputs = model.resolve_shapes(&self::shapes(4).shapes).unwrap();
        let target = engine::Target {
            tensorrt_version: fake::FAKE_VERSION,
            gpu_name: "fake GPU (host memory)",
            compute_capability: (0, 0),
            precision: Precision::Fp32,
            exact_precision: true,
            inputs: &inputs,
            onnx_sha256: model.sha256(),
        };
        engine::write_sidecar(
            &engine::sidecar_path(&engine_path),
            &Sidecar::for_build(&target, std::time::SystemTime::now()),
        )
        .unwrap();
    };
    let fixed = [Dim::Fixed(1), Dim::Fixed(4)];

    // Input named otherwise.
    let mut g = Graph::new();
    let z = g.input("z", &fixed);
    let two = g.scalar(2.0);
    let y = g.mul(&z, &two);
    g.output(&y, "y", &fixed);
    with_engine_of(g, &[("z".into(), vec![1, 4])]);
    let line = prepare_error(&strict, &model, &shapes(4));
    assert!(
        line.contains(&format!(
            "{}: engine input `z` is not an input of",
            engine_path.display()
        )),
        "{line}"
    );

    // Output named otherwise.
    let mut g = Graph::new();
    let x = g.input("x", &fixed);
    let two = g.scalar(2.0);
    let y = g.mul(&x, &two);
    g.output(&y, "image", &fixed);
    with_engine_of(g, &[("x".into(), vec![1, 4])]);
    let line = prepare_error(&strict, &model, &shapes(4));
    assert!(
        line.contains("engine output `image` is not an output of"),
        "{line}"
    );

    // Input of another shape.
    let wide = [Dim::Fixed(1), Dim::Fixed(8)];
    let mut g = Graph::new();
    let x = g.input("x", &wide);
    let two = g.scalar(2.0);
    let y = g.mul(&x, &two);
    g.output(&y, "y", &wide);
    with_engine_of(g, &[("x".into(), vec![1, 8])]);
    let line = prepare_error(&strict, &model, &shapes(4));
    assert!(
        line.contains("input `x` has shape [1, 8] in the engine, expected [1, 4]"),
        "{line}"
    );
}

/// An engine built with a profile (the builder's path, through the fake builder) runs every
/// shape within it, each giving tract's result, and refuses one outside it with one line
/// naming the range.
#[test]
fn an_engine_built_with_a_profile_runs_any_shape_within_it() {
    use crate::backend::recipe::Recipe;
    use engine_build::{build_engine, BuildRequest};
    let dir = tempfile::tempdir().unwrap();
    let model = scale_model(dir.path(), 3.0);
    let recipe = Recipe::parse(
        Path::new("scale.toml"),
        "network = \"faco\"\nprecision = \"fp16\"\n[inputs.x]\nmin = [1, 2]\nopt = [1, 8]\nmax = [1, 64]\n",
    )
    .unwrap();
    let onnx = PathBuf::from(&model.label);
    let mut events = Vec::new();
    let report = build_engine(
        &BuildRequest {
            onnx: &onnx,
            recipe: &recipe,
            device_class: None,
            precision: None,
            calib: None,
            timing_cache: None,
            out_dir: dir.path(),
            device: 0,
        },
        &mut |ev| events.push(format!("{ev:?}")),
    )
    .unwrap();
    assert_eq!(report.engine, dir.path().join("scale.engine"));
    assert!(
        events.iter().any(|e| e.contains("Timing tactics")),
        "{events:?}"
    );
    assert!(report
        .trtexec
        .contains("--minShapes=x:1x2 --optShapes=x:1x8 --maxShapes=x:1x64"));
    let trt = backend(MissingEngine::Fail);
    for n in [2, 5, 8, 64] {
        let prepared = trt.prepare(&model, &shapes(n)).unwrap();
        let mut session = prepared.session().unwrap();
        fill(&mut session, 1.0);
        session.run().unwrap();
        let got = session.output_f32(0).unwrap().to_vec();
        let want: Vec<f32> = (0..n)
            .map(|k| (1.0 + k as f32 * 0.25) * 3.0 + 0.5)
            .collect();
        assert_eq!(got, want, "n = {n}");
    }
    let line = prepare_error(&trt, &model, &shapes(65));
    assert!(line.contains("x:1x2..1x64"), "{line}");
    assert!(line.contains("expected x:1x65"), "{line}");
}

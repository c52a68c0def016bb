//! Import refuses bad checkpoints with one clear error naming the file, the key and the
//! expected versus found shape (the official loader silently keeps random weights instead).

mod common;

use common::golden;
use moda_edge::model::import::{import, import_checkpoint, normalise_keys, ImportOptions, Network};
use moda_edge::model::{load_checkpoint, CheckpointError, Tensor};

fn faco_checkpoint() -> moda_edge::model::Checkpoint {
    let mut ck = load_checkpoint(&golden("faco/checkpoint.pkl")).unwrap();
    normalise_keys(&mut ck);
    ck
}

#[test]
fn truncated_checkpoint_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(golden("faco/checkpoint.pkl")).unwrap();
    let path = dir.path().join("FaCo.pkl");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = import(Network::Faco, &path, &ImportOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("FaCo.pkl"), "{msg}");
    assert!(
        matches!(
            err,
            CheckpointError::NotTorch { .. } | CheckpointError::Corrupt { .. }
        ),
        "{msg}"
    );
}

#[test]
fn faco_checkpoint_given_to_import_moda_is_wrong_kind() {
    let err = import(
        Network::Moda,
        &golden("faco/checkpoint.pkl"),
        &ImportOptions::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CheckpointError::WrongKind { .. }), "{msg}");
    assert!(
        msg.contains("checkpoint.pkl") && msg.contains("MODA") && msg.contains("FaCo"),
        "{msg}"
    );
}

#[test]
fn renderer_checkpoint_given_to_import_faco_is_wrong_kind() {
    let err = import(
        Network::Faco,
        &golden("render_small/checkpoint.pkl"),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, CheckpointError::WrongKind { .. }), "{err}");
}

#[test]
fn missing_key_names_the_key_and_its_expected_shape() {
    let mut ck = faco_checkpoint();
    ck.tensors
        .remove("decoder.layers.2.bias")
        .expect("golden FaCo has this key");
    let msg = import_checkpoint(Network::Faco, &ck, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("missing key `decoder.layers.2.bias`") && msg.contains("[512]"),
        "{msg}"
    );
}

#[test]
fn unexpected_key_is_refused() {
    let mut ck = faco_checkpoint();
    ck.tensors.insert(
        "decoder.extra.weight".into(),
        Tensor::f32(vec![2], vec![0.0, 1.0]),
    );
    let msg = import_checkpoint(Network::Faco, &ck, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("unexpected key `decoder.extra.weight`"),
        "{msg}"
    );
}

#[test]
fn shape_mismatch_names_expected_and_found() {
    let mut ck = faco_checkpoint();
    let t = ck.tensors.get_mut("decoder.layers.2.bias").unwrap();
    *t = Tensor::f32(vec![511], vec![0.0; 511]);
    let msg = import_checkpoint(Network::Faco, &ck, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("decoder.layers.2.bias") && msg.contains("[511]") && msg.contains("[512]"),
        "{msg}"
    );
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = common::moda_edge_command().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn cli_reports_bad_checkpoints_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let out = out.to_str().unwrap();

    let faco = golden("faco/checkpoint.pkl");
    let (ok, _, err) = cli(&["import", "moda", faco.to_str().unwrap(), "-o", out]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("error: ") && err.contains("not a MODA checkpoint"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let (ok, _, err) = cli(&["import", "faco", "/nonexistent/FaCo.pkl", "-o", out]);
    assert!(
        !ok && err.contains("/nonexistent/FaCo.pkl") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert_eq!(
        err.matches("os error 2").count(),
        1,
        "cause said once: {err}"
    );

    let not_torch = dir.path().join("notes.txt");
    std::fs::write(&not_torch, "hello").unwrap();
    let (ok, _, err) = cli(&["import", "renderer", not_torch.to_str().unwrap(), "-o", out]);
    assert!(
        !ok && err.contains("notes.txt") && err.contains("not a PyTorch checkpoint"),
        "{err}"
    );
    assert!(
        !std::path::Path::new(out).exists(),
        "nothing written on failure"
    );
}

#[test]
fn cli_infer_lists_expected_inputs_on_a_wrong_name() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("faco.onnx");
    let (ok, _, err) = cli(&[
        "import",
        "faco",
        golden("faco/checkpoint.pkl").to_str().unwrap(),
        "-o",
        model.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let lip = golden("faco/input_lip.npy");
    let (ok, _, err) = cli(&[
        "infer",
        model.to_str().unwrap(),
        "--input",
        &format!("lips={}", lip.display()),
        "-o",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("no input named `lips`")
            && err.contains("lip [1, F, 120]")
            && err.contains("template [1, 1434]"),
        "{err}"
    );

    let eye = golden("faco/input_eye.npy");
    let tpl = golden("faco/input_ref.npy");
    let out_dir = dir.path().join("out");
    let (ok, stdout, err) = cli(&[
        "infer",
        model.to_str().unwrap(),
        "--input",
        &format!("lip={}", lip.display()),
        "--input",
        &format!("eye={}", eye.display()),
        "--input",
        &format!("template={}", tpl.display()),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("mesh.npy"), "{stdout}");
    let mesh = moda_edge::util::npy::read(&out_dir.join("mesh.npy")).unwrap();
    let golden_mesh = common::golden_npy("faco/out_vertices.npy");
    assert!(common::max_abs_diff(&mesh, &golden_mesh) <= 1e-3);
}

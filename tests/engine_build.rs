//! `moda-edge engine build`: with the fake shim (feature `tensorrt-fake`) the built engines are
//! the ones `render --backend tensorrt` then loads (nothing rebuilt, video identical to the CPU
//! backend's), the timing cache is reused on the next build, and mistakes are one line; a build
//! without TensorRT says so in one line.

mod common;

use std::path::{Path, PathBuf};

use common::Finished;

fn engines_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("engines")
}

fn engine_build(args: &[&std::ffi::OsStr]) -> Finished {
    let mut c = common::moda_edge_command();
    c.args(["engine", "build"]).args(args);
    common::run_with_timeout(c, 300)
}

fn os<S: AsRef<std::ffi::OsStr> + ?Sized>(s: &S) -> &std::ffi::OsStr {
    s.as_ref()
}

/// One line on stderr, starting with `error: ` and holding every `needle`.
fn assert_one_error_line(f: &Finished, needles: &[&str]) {
    assert_eq!(f.code, Some(1), "{}", f.stderr);
    let lines: Vec<&str> = f.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", f.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    for n in needles {
        assert!(lines[0].contains(n), "{} lacks {n}", lines[0]);
    }
}

#[test]
fn a_recipe_mistake_is_one_line_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(engines_dir().join("faco.toml"))
        .unwrap()
        .replace(
            "workspace_mib = 512\nkeep_fp32",
            "workspace = 512\nkeep_fp32",
        );
    std::fs::write(&recipe, text).unwrap();
    let f = engine_build(&[
        os("--onnx"),
        os("models/faco.onnx"),
        os("--recipe"),
        recipe.as_os_str(),
        os("-o"),
        dir.path().as_os_str(),
    ]);
    assert_one_error_line(
        &f,
        &["bad.toml", "unknown key `workspace`", "workspace_mib"],
    );
}

#[cfg(not(any(feature = "tensorrt", feature = "tensorrt-fake")))]
#[test]
fn without_tensorrt_engine_build_is_one_line_naming_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let f = engine_build(&[
        os("--onnx"),
        os("models/faco.onnx"),
        os("--recipe"),
        engines_dir().join("faco.toml").as_os_str(),
        os("-o"),
        dir.path().as_os_str(),
    ]);
    assert_one_error_line(
        &f,
        &[
            "no TensorRT builder",
            "--features jetson",
            "libnvinfer.so.10",
            "libnvonnxparser.so.10",
        ],
    );
}

#[cfg(feature = "tensorrt-fake")]
mod fake {
    use super::*;

    /// Every file of `dirs` with its bytes.
    fn snapshot(dirs: &[&Path]) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        for d in dirs {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() {
                    out.push((p.clone(), std::fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn built_engines_are_the_ones_render_uses_and_give_the_cpu_backends_video() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        common::write_tiny_models(&models);
        let avatar = dir.path().join("avatar");
        moda_edge::face::avatar::write_synthetic(&models.join("renderer.onnx"), 256, &avatar)
            .unwrap();
        // The shipped renderer recipe is for 512²; the tiny avatar's renderer is 256².
        let renderer_recipe = dir.path().join("renderer256.toml");
        let text = std::fs::read_to_string(engines_dir().join("renderer.toml"))
            .unwrap()
            .replace("512, 512", "256, 256");
        std::fs::write(&renderer_recipe, text).unwrap();
        let builds = [
            (
                models.join("moda.onnx"),
                engines_dir().join("moda.toml"),
                &models,
            ),
            (
                models.join("faco.onnx"),
                engines_dir().join("faco.toml"),
                &models,
            ),
            (avatar.join("renderer.onnx"), renderer_recipe, &avatar),
        ];
        for (onnx, recipe, out) in &builds {
            let f = engine_build(&[
                os("--onnx"),
                onnx.as_os_str(),
                os("--recipe"),
                recipe.as_os_str(),
                os("--device-class"),
                os("agx"),
                os("-o"),
                out.as_os_str(),
            ]);
            assert_eq!(f.code, Some(0), "{}", f.stderr);
            assert!(
                f.stdout.contains("equivalent: trtexec --onnx="),
                "{}",
                f.stdout
            );
            assert!(f.stdout.contains("--fp16"), "{}", f.stdout);
        }
        let moda =
            moda_edge::backend::tensorrt::engine::read_sidecar(&models.join("moda.engine.json"))
                .unwrap();
        assert_eq!(moda.precision, "fp16");
        assert_eq!(moda.profiles.len(), 2, "{moda:?}");
        let before = snapshot(&[&models, &avatar]);

        let wav = dir.path().join("speech.wav");
        // 0.8 s: MODA's window is 12 000-odd samples, not the profile's opt (53 333), so only
        // an engine that honours its profile serves it.
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
        let trt = render("tensorrt");
        // The fake CLI writes an engine it lacks or that does not fit: nothing was written,
        // so the engines built above ran.
        assert!(
            snapshot(&[&models, &avatar]) == before,
            "render rebuilt an engine"
        );
        let cpu = render("cpu");
        assert!(cpu.len() > 1000);
        assert!(cpu == trt, "the two backends' videos differ");
    }

    #[test]
    fn the_timing_cache_is_written_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        common::write_tiny_models(&models);
        let cache = dir.path().join("timing.cache");
        let build = || {
            engine_build(&[
                os("--onnx"),
                models.join("faco.onnx").as_os_str(),
                os("--recipe"),
                engines_dir().join("faco.toml").as_os_str(),
                os("--timing-cache"),
                cache.as_os_str(),
                os("-o"),
                models.as_os_str(),
            ])
        };
        let first = build();
        assert_eq!(first.code, Some(0), "{}", first.stderr);
        assert!(first.stderr.contains("timing cache"), "{}", first.stderr);
        assert!(first.stderr.contains("written"), "{}", first.stderr);
        assert!(
            first
                .stdout
                .contains(&format!("--timingCacheFile={}", cache.display())),
            "{}",
            first.stdout
        );
        let written = std::fs::read_to_string(&cache).unwrap();
        assert!(written.starts_with(moda_edge::backend::tensorrt::fake_builder::TIMING_MAGIC));
        let second = build();
        assert_eq!(second.code, Some(0), "{}", second.stderr);
        assert!(
            second.stderr.contains(&format!(
                "timing cache {} reused ({} bytes)",
                cache.display(),
                written.len()
            )),
            "{}",
            second.stderr
        );
        // The network was timed once: the cache holds one entry for it, not two.
        assert_eq!(std::fs::read_to_string(&cache).unwrap(), written);

        // A file that is not a timing cache is refused in one line.
        std::fs::write(&cache, "not a cache").unwrap();
        let f = build();
        assert_one_error_line(
            &f,
            &["faco.onnx", "timing cache is not one of this TensorRT"],
        );
    }

    #[test]
    fn int8_without_qdq_or_a_calibration_cache_and_a_bad_cache_are_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        common::write_tiny_models(&models);
        let args = |extra: &[&std::ffi::OsStr]| {
            let mut a = vec![
                os("--onnx").to_owned(),
                models.join("faco.onnx").into_os_string(),
                os("--recipe").to_owned(),
                engines_dir().join("faco.toml").into_os_string(),
                os("-o").to_owned(),
                models.clone().into_os_string(),
            ];
            a.extend(extra.iter().map(|s| s.to_os_string()));
            a
        };
        let run = |extra: &[&std::ffi::OsStr]| {
            let a = args(extra);
            let refs: Vec<&std::ffi::OsStr> = a.iter().map(|s| s.as_os_str()).collect();
            engine_build(&refs)
        };
        let f = run(&[os("--precision"), os("int8")]);
        assert_one_error_line(&f, &["faco.onnx", "no Q/DQ nodes", "--calib"]);

        let calib = dir.path().join("faco.calib");
        std::fs::write(&calib, "TRT-100300-EntropyCalibration2\nlip: 3c010a14\n").unwrap();
        let f = run(&[
            os("--precision"),
            os("int8"),
            os("--calib"),
            calib.as_os_str(),
        ]);
        assert_eq!(f.code, Some(0), "{}", f.stderr);
        assert!(f.stdout.contains("--int8"), "{}", f.stdout);
        assert!(
            f.stdout.contains(&format!("--calib={}", calib.display())),
            "{}",
            f.stdout
        );
        let sidecar =
            moda_edge::backend::tensorrt::engine::read_sidecar(&models.join("faco.engine.json"))
                .unwrap();
        assert_eq!(sidecar.precision, "int8");

        std::fs::write(&calib, "garbage").unwrap();
        let f = run(&[
            os("--precision"),
            os("int8"),
            os("--calib"),
            calib.as_os_str(),
        ]);
        assert_one_error_line(&f, &["calibration cache"]);

        let f = run(&[os("--calib"), calib.as_os_str()]);
        assert_one_error_line(&f, &["--calib is for INT8 builds"]);
    }

    #[test]
    fn a_kept_layer_missing_from_the_graph_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        common::write_tiny_models(&models);
        let recipe = dir.path().join("faco.toml");
        let text = std::fs::read_to_string(engines_dir().join("faco.toml"))
            .unwrap()
            .replace("keep_fp32 = []", "keep_fp32 = [\"/no/such/Softmax\"]");
        std::fs::write(&recipe, text).unwrap();
        let f = engine_build(&[
            os("--onnx"),
            models.join("faco.onnx").as_os_str(),
            os("--recipe"),
            recipe.as_os_str(),
            os("-o"),
            models.as_os_str(),
        ]);
        assert_one_error_line(&f, &["faco.onnx", "no layer named `/no/such/Softmax`"]);
        assert!(!models.join("faco.engine").exists());
    }
}

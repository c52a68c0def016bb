//! Build script.
//!
//! 1. The CUDA kernels of `kernels/` compiled as C++ (`kernels/host/harness.cpp` includes them
//!    after `kernels/host/cuda_host.h`, which maps the CUDA built-ins) into a static library that
//!    only the crate's unit tests link (`src/gpu/host.rs`): the same source that NVRTC compiles
//!    for the GPU runs on the CPU and is compared bit for bit with the Rust stages.
//! 2. With feature `tensorrt`: the C++ shim over TensorRT 10 (`src/backend/tensorrt/shim/`),
//!    against `TENSORRT_INCLUDE_DIR` and `CUDA_INCLUDE_DIR` (JetPack's paths by default). The shim
//!    opens libnvinfer with `dlopen` when the program asks for it, so nothing of TensorRT or CUDA
//!    is needed to link.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=src/backend/tensorrt/shim");
    for var in ["TENSORRT_INCLUDE_DIR", "CUDA_INCLUDE_DIR"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    kernels_for_the_host();
    if env::var_os("CARGO_FEATURE_TENSORRT").is_some() {
        if env::var_os("CARGO_FEATURE_TENSORRT_FAKE").is_some() {
            panic!("features `tensorrt` and `tensorrt-fake` exclude each other: pick one");
        }
        tensorrt_shim();
    }
}

/// The kernels as plain C++: `-ffp-contract=off` because the GPU build runs with `--fmad=false`
/// and the drawing must round like the Rust rasterizer (GCC contracts `a*b+c` into one fused
/// multiply-add on aarch64 otherwise).
fn kernels_for_the_host() {
    let harness = PathBuf::from("kernels/host/harness.cpp");
    if !harness.exists() {
        return;
    }
    cc::Build::new()
        .cpp(true)
        .file(harness)
        .include("kernels")
        .flag("-std=c++17")
        .flag("-ffp-contract=off")
        .flag("-fno-exceptions")
        .flag("-fno-rtti")
        .warnings(true)
        .extra_warnings(true)
        // Linked by `#[link]` in the test-only module, so the library never reaches a product
        // binary.
        .cargo_metadata(false)
        .compile("moda_kernels_host");
    let out = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rustc-link-search=native={out}");
}

/// `TENSORRT_INCLUDE_DIR` (default `/usr/include/<triple>`, where JetPack puts `NvInfer.h`) and
/// `CUDA_INCLUDE_DIR` (default `/usr/local/cuda/include`), both with `-isystem` so that the
/// headers' own warnings stay quiet.
fn tensorrt_shim() {
    let target = env::var("TARGET").unwrap_or_default();
    let triple = if target.starts_with("aarch64") {
        "aarch64-linux-gnu"
    } else {
        "x86_64-linux-gnu"
    };
    let trt = env::var("TENSORRT_INCLUDE_DIR").unwrap_or_else(|_| format!("/usr/include/{triple}"));
    let cuda = env::var("CUDA_INCLUDE_DIR").unwrap_or_else(|_| "/usr/local/cuda/include".into());
    for (what, dir, var) in [
        ("NvInfer.h", &trt, "TENSORRT_INCLUDE_DIR"),
        ("cuda_runtime_api.h", &cuda, "CUDA_INCLUDE_DIR"),
    ] {
        if !PathBuf::from(dir).join(what).exists() {
            panic!(
                "feature `tensorrt`: {what} not found in {dir}; install TensorRT/CUDA (JetPack) or \
                 set {var} to the folder that holds it (see README, \"GPU path\")"
            );
        }
    }
    cc::Build::new()
        .cpp(true)
        .file("src/backend/tensorrt/shim/moda_trt.cpp")
        .file("src/backend/tensorrt/shim/moda_trt_build.cpp")
        .flag("-std=c++17")
        // With exceptions: every entry point catches what TensorRT or the standard library
        // throws and returns it as a message, so nothing unwinds into Rust.
        .flag(format!("-isystem{trt}"))
        .flag(format!("-isystem{cuda}"))
        .warnings(true)
        .extra_warnings(true)
        .compile("moda_trt_shim");
    println!("cargo:rustc-link-lib=dylib=dl");
}

//! The shim's builder entry points (`moda_trt_builder_*`, `moda_trt_bytes_*`) in Rust for tests
//! and CI (feature `tensorrt-fake`), next to the fake runtime of [`super::fake`].
//!
//! Its "build" checks what TensorRT would (flags that exclude each other, every input's shape
//! or profile, kept layers that exist in the graph, a timing cache of its own format, an INT8
//! calibration cache that starts like TensorRT's), reports progress phases through the callback
//! and writes a [fake engine](super::fake_engine) that the fake runtime runs, with the
//! profile's bounds. Its timing cache is a small text file: [`TIMING_MAGIC`] and one line per
//! network (ONNX sha256) already timed; a network found there is built with no timing steps,
//! so the reuse path is visible in the progress.

use std::collections::BTreeSet;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;

use super::fake::{entry, null_argument, write_message};
use super::fake_engine::{profile_engine_bytes, FakeProfile, FAKE_VERSION};
use super::ffi;
use crate::backend::{OnnxModel, Precision};
use crate::model::contract::DeclaredDim;

/// The first line of the fake's timing cache.
pub const TIMING_MAGIC: &str = "MODA-FAKE-TIMING-1\n";

struct FakeBuilder;

struct FakeBytes(Vec<u8>);

type Failure = (c_int, String);

fn failed(msg: String) -> Failure {
    (ffi::FAILED, msg)
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: pointers are null or valid for what they point to.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_builder_create(
    out: *mut *mut ffi::moda_trt_builder,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    entry(err, err_len, || {
        if out.is_null() {
            return Err(null_argument("moda_trt_builder_create"));
        }
        // SAFETY: `out` is a valid out-pointer (checked non-null; the C contract).
        unsafe { *out = Box::into_raw(Box::new(FakeBuilder)).cast() };
        Ok(())
    })
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// A non-null `builder` came from `moda_trt_builder_create` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_builder_destroy(builder: *mut ffi::moda_trt_builder) {
    if !builder.is_null() {
        // SAFETY: a non-null builder came from `Box::into_raw` in `moda_trt_builder_create`.
        drop(unsafe { Box::from_raw(builder.cast::<FakeBuilder>()) });
    }
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: `buf` is null or valid for `buf_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_builder_version(
    builder: *const ffi::moda_trt_builder,
    buf: *mut c_char,
    buf_len: usize,
) -> c_int {
    let (code, text) = if builder.is_null() {
        (ffi::BAD_ARGUMENT, "moda_trt_builder_version: null builder")
    } else {
        (ffi::OK, FAKE_VERSION)
    };
    // SAFETY: the C contract: `buf` is null or valid for `buf_len` bytes.
    unsafe { write_message(buf, buf_len, text) };
    code
}

/// Calls the progress callback of `o`, if any.
fn report(o: &ffi::moda_trt_build_options, event: i32, phase: &str, step: i32, nb: i32) {
    if let Some(f) = o.progress {
        let name = CString::new(phase).unwrap_or_default();
        // SAFETY: the header's contract: the callback and its user pointer are valid during
        // the build; `name` lives across the call.
        unsafe { f(o.progress_user, event, name.as_ptr(), step, nb) };
    }
}

/// A phase of `steps` steps, each reported.
fn phase(o: &ffi::moda_trt_build_options, name: &str, steps: i32) {
    report(o, ffi::PHASE_START, name, 0, steps);
    for step in 0..steps {
        report(o, ffi::PHASE_STEP, name, step, 0);
    }
    report(o, ffi::PHASE_FINISH, name, 0, 0);
}

/// # Safety
/// `ptr` is null or valid for `len` bytes.
unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller's promise.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// # Safety
/// `name` is null or NUL-terminated.
unsafe fn text(name: *const c_char) -> Result<String, Failure> {
    if name.is_null() {
        return Err((ffi::BAD_ARGUMENT, "null name".into()));
    }
    // SAFETY: the caller's promise.
    Ok(unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned())
}

/// One input's min/opt/max from the options, or its declared fixed shape.
fn profiles(
    model: &OnnxModel,
    given: &[(String, FakeProfile)],
) -> Result<Vec<FakeProfile>, Failure> {
    for (name, _) in given {
        if !model.inputs.iter().any(|d| &d.name == name) {
            return Err(failed(format!(
                "bad profile for input {name}: no such input"
            )));
        }
    }
    model
        .inputs
        .iter()
        .map(|d| {
            if let Some((_, p)) = given.iter().find(|(n, _)| n == &d.name) {
                let (_, min, opt, max) = p;
                let ordered = min.len() == d.dims.len()
                    && opt.len() == min.len()
                    && max.len() == min.len()
                    && min
                        .iter()
                        .zip(opt)
                        .zip(max)
                        .all(|((a, b), c)| a <= b && b <= c);
                if !ordered {
                    return Err(failed(format!(
                        "bad profile for input {}: {min:?} {opt:?} {max:?}",
                        d.name
                    )));
                }
                return Ok(p.clone());
            }
            let fixed: Option<Vec<usize>> = d
                .dims
                .iter()
                .map(|x| match x {
                    DeclaredDim::Fixed(f) => Some(*f),
                    DeclaredDim::Sym(_) => None,
                })
                .collect();
            let fixed = fixed.ok_or_else(|| {
                failed(format!(
                    "input {} has dynamic dimensions and no optimization profile",
                    d.name
                ))
            })?;
            Ok((d.name.clone(), fixed.clone(), fixed.clone(), fixed))
        })
        .collect()
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: pointers are null or valid for what they point to, `options`'
/// arrays hold their counts, names are NUL-terminated, the handle came from this module.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_builder_build(
    builder: *mut ffi::moda_trt_builder,
    onnx: *const c_void,
    onnx_len: usize,
    options: *const ffi::moda_trt_build_options,
    engine: *mut *mut ffi::moda_trt_bytes,
    timing_cache: *mut *mut ffi::moda_trt_bytes,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    entry(err, err_len, || {
        if builder.is_null() || onnx.is_null() || options.is_null() {
            return Err(null_argument("moda_trt_builder_build"));
        }
        // SAFETY: `options` is non-null and valid (the C contract).
        let o = unsafe { &*options };
        // SAFETY: the C contract: `onnx` holds `onnx_len` bytes, the arrays their counts.
        let (bytes, given, layers, cache, calib) = unsafe {
            (
                slice(onnx.cast::<u8>(), onnx_len),
                slice(o.profiles, o.nb_profiles),
                slice(o.layers, o.nb_layers),
                slice(o.timing_cache.cast::<u8>(), o.timing_cache_len),
                slice(o.calibration_cache.cast::<u8>(), o.calibration_cache_len),
            )
        };
        let strongly = o.flags & ffi::BUILD_STRONGLY_TYPED != 0;
        if strongly && o.flags & (ffi::BUILD_FP16 | ffi::BUILD_INT8) != 0 {
            return Err((
                ffi::BAD_ARGUMENT,
                "a strongly typed network takes its precision from the graph; FP16 and INT8 \
                 builder flags cannot be combined with it"
                    .into(),
            ));
        }
        report(o, ffi::PHASE_START, "Building engine", 0, 3);
        let model = OnnxModel::from_bytes(Path::new("network"), bytes.to_vec())
            .map_err(|e| failed(format!("the ONNX parser refused the graph: {e}")))?;
        let proto = crate::model::onnx::decode(bytes)
            .map_err(|e| failed(format!("the ONNX parser refused the graph: {e}")))?;
        let nodes: Vec<String> = proto
            .graph
            .as_ref()
            .map(|g| g.node.iter().map(|n| n.name.clone()).collect())
            .unwrap_or_default();
        phase(o, "Parsing ONNX", 1);
        report(o, ffi::PHASE_STEP, "Building engine", 0, 0);
        for keep in layers {
            // SAFETY: the C contract: layer names are NUL-terminated.
            let name = unsafe { text(keep.layer) }?;
            if keep.dtype != ffi::DTYPE_FLOAT && keep.dtype != ffi::DTYPE_HALF {
                return Err((ffi::BAD_ARGUMENT, "layer precision: dtype not 0/1".into()));
            }
            if !nodes.contains(&name) {
                return Err(failed(format!(
                    "no layer named `{name}` in the parsed network (names are the ONNX node names)"
                )));
            }
        }
        let mut named = Vec::with_capacity(given.len());
        for p in given {
            // SAFETY: the C contract: input names are NUL-terminated.
            let name = unsafe { text(p.input) }?;
            let nb = usize::try_from(p.nb_dims)
                .ok()
                .filter(|&n| n <= ffi::MAX_DIMS)
                .ok_or((ffi::BAD_ARGUMENT, "profile: bad rank".to_string()))?;
            let dims = |d: &[i64]| -> Vec<usize> {
                d[..nb]
                    .iter()
                    .map(|&x| usize::try_from(x).unwrap_or(0))
                    .collect()
            };
            named.push((
                name.clone(),
                (name, dims(&p.min), dims(&p.opt), dims(&p.max)),
            ));
        }
        let profiles = profiles(&model, &named)?;
        let mut timed: BTreeSet<String> = BTreeSet::new();
        if !cache.is_empty() {
            let text = std::str::from_utf8(cache)
                .ok()
                .filter(|t| t.starts_with(TIMING_MAGIC));
            let Some(text) = text else {
                return Err(failed(
                    "the timing cache is not one of this TensorRT".into(),
                ));
            };
            timed.extend(text[TIMING_MAGIC.len()..].lines().map(String::from));
        }
        let int8 = o.flags & ffi::BUILD_INT8 != 0;
        if int8 && !calib.is_empty() && !calib.starts_with(b"TRT-") {
            return Err(failed(
                "the INT8 calibration cache does not start with a TRT-<version>-<algorithm> line"
                    .into(),
            ));
        }
        let precision = if int8 {
            Precision::Int8
        } else if o.flags & ffi::BUILD_FP16 != 0 {
            Precision::Fp16
        } else {
            Precision::Fp32
        };
        report(o, ffi::PHASE_STEP, "Building engine", 1, 0);
        let sha = model.sha256().to_string();
        let steps = if timed.contains(&sha) {
            0
        } else {
            nodes.len().max(1) as i32
        };
        phase(o, "Timing tactics", steps);
        let plan = profile_engine_bytes(&model, &profiles, precision).map_err(|e| {
            failed(format!(
                "buildSerializedNetwork failed: {}",
                crate::util::error_chain(&e)
            ))
        })?;
        timed.insert(sha);
        report(o, ffi::PHASE_STEP, "Building engine", 2, 0);
        report(o, ffi::PHASE_FINISH, "Building engine", 0, 0);
        let mut cache_out = TIMING_MAGIC.to_string();
        for t in &timed {
            cache_out.push_str(t);
            cache_out.push('\n');
        }
        if !engine.is_null() {
            // SAFETY: a non-null out-pointer is valid (the C contract).
            unsafe { *engine = Box::into_raw(Box::new(FakeBytes(plan))).cast() };
        }
        if !timing_cache.is_null() {
            // SAFETY: as above.
            unsafe {
                *timing_cache = Box::into_raw(Box::new(FakeBytes(cache_out.into_bytes()))).cast()
            };
        }
        Ok(())
    })
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// `bytes` is null or a live `moda_trt_bytes` of this module.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_bytes_data(bytes: *const ffi::moda_trt_bytes) -> *const c_void {
    if bytes.is_null() {
        return std::ptr::null();
    }
    // SAFETY: the caller's promise.
    unsafe { &*bytes.cast::<FakeBytes>() }.0.as_ptr().cast()
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// As [`moda_trt_bytes_data`].
#[no_mangle]
pub unsafe extern "C" fn moda_trt_bytes_size(bytes: *const ffi::moda_trt_bytes) -> usize {
    if bytes.is_null() {
        return 0;
    }
    // SAFETY: the caller's promise.
    unsafe { &*bytes.cast::<FakeBytes>() }.0.len()
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// `bytes` is null or a live `moda_trt_bytes` of this module, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_bytes_destroy(bytes: *mut ffi::moda_trt_bytes) {
    if !bytes.is_null() {
        // SAFETY: a non-null value came from `Box::into_raw` in `moda_trt_builder_build`.
        drop(unsafe { Box::from_raw(bytes.cast::<FakeBytes>()) });
    }
}

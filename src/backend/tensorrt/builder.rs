//! The shim's engine builder (`moda_trt_builder_*` in `shim/moda_trt.h`) behind a safe handle:
//! [`Builder::build`] takes the ONNX bytes and a [`BuildSpec`] and returns the serialized engine
//! and the timing cache, reporting TensorRT's progress phases to a closure.

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{self, NonNull};

use super::ffi;
use super::handles::{call, ShimError};

/// One input's optimization profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileSpec {
    pub input: String,
    pub min: Vec<usize>,
    pub opt: Vec<usize>,
    pub max: Vec<usize>,
}

/// The float type a named layer is kept in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepIn {
    Fp32,
    Fp16,
}

/// Everything one build is configured with (the builder-config phase's options).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildSpec {
    pub fp16: bool,
    pub int8: bool,
    pub strongly_typed: bool,
    pub workspace_bytes: u64,
    pub profiles: Vec<ProfileSpec>,
    /// Layers kept in a float type; their precision is obeyed.
    pub keep: Vec<(String, KeepIn)>,
    /// A serialized timing cache to start from (empty: none).
    pub timing_cache: Vec<u8>,
    /// An INT8 calibration cache for implicit INT8 (empty: none).
    pub calibration_cache: Vec<u8>,
}

/// A progress event of the build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildProgress<'a> {
    Start { phase: &'a str, steps: i32 },
    Step { phase: &'a str, step: i32 },
    Finish { phase: &'a str },
}

/// What a build returns.
pub struct Built {
    pub engine: Vec<u8>,
    pub timing_cache: Vec<u8>,
}

/// An IBuilder with libnvinfer and libnvonnxparser opened.
pub struct Builder {
    raw: NonNull<ffi::moda_trt_builder>,
    version: String,
}

// SAFETY: the builder is used by one thread at a time (`&mut self` for builds); TensorRT's
// builder is not bound to the creating thread.
unsafe impl Send for Builder {}

type ProgressFn<'a> = &'a mut dyn FnMut(BuildProgress<'_>);

/// The C progress callback: `user` is a `*mut ProgressFn` live for the build call.
unsafe extern "C" fn progress_trampoline(
    user: *mut c_void,
    event: i32,
    phase: *const c_char,
    step: i32,
    nb_steps: i32,
) {
    if user.is_null() {
        return;
    }
    // SAFETY: `build` passes a pointer to its `ProgressFn`, which outlives the build call this
    // callback runs inside, and nothing else uses it meanwhile.
    let f = unsafe { &mut *user.cast::<ProgressFn<'_>>() };
    let phase = if phase.is_null() {
        ""
    } else {
        // SAFETY: the header's contract: a NUL-terminated phase name valid during the call.
        unsafe { CStr::from_ptr(phase) }.to_str().unwrap_or("?")
    };
    let ev = match event {
        ffi::PHASE_START => BuildProgress::Start {
            phase,
            steps: nb_steps,
        },
        ffi::PHASE_STEP => BuildProgress::Step { phase, step },
        ffi::PHASE_FINISH => BuildProgress::Finish { phase },
        // An event a later shim may add: nothing to show.
        _ => return,
    };
    // Nothing may unwind into the C++ caller.
    let _ = crate::backend::guard::catch(|| f(ev));
}

fn take_bytes(raw: *mut ffi::moda_trt_bytes) -> Vec<u8> {
    if raw.is_null() {
        return Vec::new();
    }
    // SAFETY: `raw` is a live moda_trt_bytes the shim returned; data/size describe its buffer.
    let out = unsafe {
        let data = ffi::moda_trt_bytes_data(raw).cast::<u8>();
        let len = ffi::moda_trt_bytes_size(raw);
        if data.is_null() || len == 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(data, len).to_vec()
        }
    };
    // SAFETY: `raw` is live and not used after this.
    unsafe { ffi::moda_trt_bytes_destroy(raw) };
    out
}

fn dims8(what: &str, dims: &[usize]) -> Result<[i64; ffi::MAX_DIMS], ShimError> {
    if dims.len() > ffi::MAX_DIMS {
        return Err(ShimError {
            code: ffi::BAD_ARGUMENT,
            message: format!("{what} has more than 8 dimensions"),
        });
    }
    let mut out = [0i64; ffi::MAX_DIMS];
    for (o, &d) in out.iter_mut().zip(dims) {
        *o = d as i64;
    }
    Ok(out)
}

fn c_name(name: &str) -> Result<CString, ShimError> {
    CString::new(name).map_err(|_| ShimError {
        code: ffi::BAD_ARGUMENT,
        message: format!("name `{name}` holds a NUL byte"),
    })
}

impl Builder {
    /// Opens libnvinfer.so.10 and libnvonnxparser.so.10 and creates a builder.
    ///
    /// # Errors
    /// The shim's message, naming the missing library ([`ShimError::is_no_library`]).
    pub fn create() -> Result<Builder, ShimError> {
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` is a valid out-pointer; the message buffer comes from `call`.
        call(|err, len| unsafe { ffi::moda_trt_builder_create(&mut raw, err, len) })?;
        let raw = NonNull::new(raw).ok_or_else(|| ShimError {
            code: ffi::INTERNAL,
            message: "moda_trt_builder_create returned no builder".into(),
        })?;
        let mut buf = [0 as c_char; 64];
        // SAFETY: `raw` is the live builder just created; `buf` holds 64 bytes.
        let rc = unsafe { ffi::moda_trt_builder_version(raw.as_ptr(), buf.as_mut_ptr(), 64) };
        buf[63] = 0;
        // SAFETY: `buf` is NUL-terminated.
        let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
        let version = if rc == ffi::OK {
            text.into_owned()
        } else {
            format!("unknown ({text})")
        };
        Ok(Builder { raw, version })
    }

    /// The loaded library's version, `10.3.0`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Parses `onnx` and builds it under `spec`.
    ///
    /// # Errors
    /// The shim's message: the parser's errors, a bad profile, an unknown layer, a failed build.
    pub fn build(
        &mut self,
        onnx: &[u8],
        spec: &BuildSpec,
        mut progress: ProgressFn<'_>,
    ) -> Result<Built, ShimError> {
        let names: Vec<CString> = spec
            .profiles
            .iter()
            .map(|p| c_name(&p.input))
            .collect::<Result<_, _>>()?;
        let profiles: Vec<ffi::moda_trt_profile> = spec
            .profiles
            .iter()
            .zip(&names)
            .map(|(p, name)| {
                Ok(ffi::moda_trt_profile {
                    input: name.as_ptr(),
                    nb_dims: p.opt.len() as i32,
                    min: dims8(&p.input, &p.min)?,
                    opt: dims8(&p.input, &p.opt)?,
                    max: dims8(&p.input, &p.max)?,
                })
            })
            .collect::<Result<_, ShimError>>()?;
        let layer_names: Vec<CString> = spec
            .keep
            .iter()
            .map(|(n, _)| c_name(n))
            .collect::<Result<_, _>>()?;
        let layers: Vec<ffi::moda_trt_layer_precision> = spec
            .keep
            .iter()
            .zip(&layer_names)
            .map(|((_, keep), name)| ffi::moda_trt_layer_precision {
                layer: name.as_ptr(),
                dtype: match keep {
                    KeepIn::Fp32 => ffi::DTYPE_FLOAT,
                    KeepIn::Fp16 => ffi::DTYPE_HALF,
                },
            })
            .collect();
        let mut flags = 0;
        for (on, bit) in [
            (spec.fp16, ffi::BUILD_FP16),
            (spec.int8, ffi::BUILD_INT8),
            (spec.strongly_typed, ffi::BUILD_STRONGLY_TYPED),
            (!spec.keep.is_empty(), ffi::BUILD_OBEY_PRECISION),
        ] {
            if on {
                flags |= bit;
            }
        }
        let bytes_or_null = |b: &[u8]| {
            if b.is_empty() {
                ptr::null()
            } else {
                b.as_ptr().cast::<c_void>()
            }
        };
        let options = ffi::moda_trt_build_options {
            flags,
            workspace_bytes: spec.workspace_bytes,
            profiles: profiles.as_ptr(),
            nb_profiles: profiles.len(),
            layers: layers.as_ptr(),
            nb_layers: layers.len(),
            timing_cache: bytes_or_null(&spec.timing_cache),
            timing_cache_len: spec.timing_cache.len(),
            calibration_cache: bytes_or_null(&spec.calibration_cache),
            calibration_cache_len: spec.calibration_cache.len(),
            progress: Some(progress_trampoline),
            progress_user: (&mut progress as *mut ProgressFn<'_>).cast(),
        };
        let mut engine = ptr::null_mut();
        let mut cache = ptr::null_mut();
        // SAFETY: the builder is live; `onnx`, `options` and every buffer and name it points
        // to (`profiles`, `layers`, `names`, `layer_names`, the caches, `progress`) live until
        // the call returns; the out-pointers are valid.
        let result = call(|err, len| unsafe {
            ffi::moda_trt_builder_build(
                self.raw.as_ptr(),
                onnx.as_ptr().cast(),
                onnx.len(),
                &options,
                &mut engine,
                &mut cache,
                err,
                len,
            )
        });
        let engine = take_bytes(engine);
        let timing_cache = take_bytes(cache);
        result?;
        Ok(Built {
            engine,
            timing_cache,
        })
    }
}

impl Drop for Builder {
    fn drop(&mut self) {
        // SAFETY: the handle is live and owned by this value.
        unsafe { ffi::moda_trt_builder_destroy(self.raw.as_ptr()) }
    }
}

/// With the real shim: on a machine without TensorRT the builder is an error naming the
/// missing library and JetPack; with TensorRT it is version 10.
#[cfg(all(test, feature = "tensorrt"))]
mod tests {
    use super::*;

    #[test]
    fn a_builder_opens_libnvinfer_and_the_parser_or_says_which_is_missing() {
        match Builder::create() {
            Ok(builder) => assert!(
                builder.version().starts_with("10."),
                "{}",
                builder.version()
            ),
            Err(e) => {
                assert!(e.is_no_library(), "{e:?}");
                assert!(
                    e.message.starts_with("cannot load libnvinfer.so.10 (")
                        || e.message.starts_with("cannot load libnvonnxparser.so.10 ("),
                    "{e}"
                );
                assert!(e.message.contains("JetPack 6"), "{e}");
            }
        }
    }
}

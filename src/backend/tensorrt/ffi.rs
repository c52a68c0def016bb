//! The C interface of `shim/moda_trt.h`, declared once. With feature `tensorrt` the C++ shim
//! (compiled by build.rs) defines these symbols; with `tensorrt-fake`, [`super::fake`] defines
//! the same symbols in Rust, so the backend makes the identical calls in both builds.
//!
//! Conventions (see the header): functions that can fail return [`OK`] or another code and
//! write a NUL-terminated message into the caller's `err` buffer; handles are opaque.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void};

pub const OK: c_int = 0;
/// libnvinfer.so.10 (or a symbol of it) is missing.
pub const NO_LIBRARY: c_int = 1;
/// TensorRT refused the call. (This and the next two are the header's codes; the backend
/// tells only [`NO_LIBRARY`] apart, the fake returns them.)
#[allow(dead_code)]
pub const FAILED: c_int = 2;
/// A null or out-of-range argument.
#[allow(dead_code)]
pub const BAD_ARGUMENT: c_int = 3;
/// An exception or allocation failure inside the shim.
pub const INTERNAL: c_int = 4;

pub const NAME_LEN: usize = 256;
pub const MAX_DIMS: usize = 8;

/// nvinfer1::DataType values the backend uses.
pub const DTYPE_FLOAT: i32 = 0;
pub const DTYPE_HALF: i32 = 1;

/// Opaque `moda_trt_runtime`.
#[repr(C)]
pub struct moda_trt_runtime {
    _private: [u8; 0],
}

/// Opaque `moda_trt_engine`.
#[repr(C)]
pub struct moda_trt_engine {
    _private: [u8; 0],
}

/// Opaque `moda_trt_context`.
#[repr(C)]
pub struct moda_trt_context {
    _private: [u8; 0],
}

/// `moda_trt_io`: one input or output tensor of an engine.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct moda_trt_io {
    pub name: [c_char; NAME_LEN],
    pub is_input: i32,
    pub dtype: i32,
    pub nb_dims: i32,
    pub dims: [i64; MAX_DIMS],
}

impl moda_trt_io {
    pub const ZERO: moda_trt_io = moda_trt_io {
        name: [0; NAME_LEN],
        is_input: 0,
        dtype: 0,
        nb_dims: 0,
        dims: [0; MAX_DIMS],
    };
}

/// Opaque `moda_trt_builder`.
#[repr(C)]
pub struct moda_trt_builder {
    _private: [u8; 0],
}

/// Opaque `moda_trt_bytes`.
#[repr(C)]
pub struct moda_trt_bytes {
    _private: [u8; 0],
}

pub const BUILD_FP16: u32 = 1;
pub const BUILD_INT8: u32 = 2;
pub const BUILD_STRONGLY_TYPED: u32 = 4;
pub const BUILD_OBEY_PRECISION: u32 = 8;

pub const PHASE_START: i32 = 0;
pub const PHASE_STEP: i32 = 1;
pub const PHASE_FINISH: i32 = 2;

/// `moda_trt_progress_fn`.
pub type moda_trt_progress_fn = Option<
    unsafe extern "C" fn(user: *mut c_void, event: i32, phase: *const c_char, step: i32, nb: i32),
>;

/// `moda_trt_profile`: one input's min/opt/max.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct moda_trt_profile {
    pub input: *const c_char,
    pub nb_dims: i32,
    pub min: [i64; MAX_DIMS],
    pub opt: [i64; MAX_DIMS],
    pub max: [i64; MAX_DIMS],
}

/// `moda_trt_layer_precision`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct moda_trt_layer_precision {
    pub layer: *const c_char,
    pub dtype: i32,
}

/// `moda_trt_build_options`.
#[repr(C)]
pub struct moda_trt_build_options {
    pub flags: u32,
    pub workspace_bytes: u64,
    pub profiles: *const moda_trt_profile,
    pub nb_profiles: usize,
    pub layers: *const moda_trt_layer_precision,
    pub nb_layers: usize,
    pub timing_cache: *const c_void,
    pub timing_cache_len: usize,
    pub calibration_cache: *const c_void,
    pub calibration_cache_len: usize,
    pub progress: moda_trt_progress_fn,
    pub progress_user: *mut c_void,
}

extern "C" {
    pub fn moda_trt_builder_create(
        out: *mut *mut moda_trt_builder,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn moda_trt_builder_destroy(builder: *mut moda_trt_builder);
    pub fn moda_trt_builder_version(
        builder: *const moda_trt_builder,
        buf: *mut c_char,
        buf_len: usize,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    pub fn moda_trt_builder_build(
        builder: *mut moda_trt_builder,
        onnx: *const c_void,
        onnx_len: usize,
        options: *const moda_trt_build_options,
        engine: *mut *mut moda_trt_bytes,
        timing_cache: *mut *mut moda_trt_bytes,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn moda_trt_bytes_data(bytes: *const moda_trt_bytes) -> *const c_void;
    pub fn moda_trt_bytes_size(bytes: *const moda_trt_bytes) -> usize;
    pub fn moda_trt_bytes_destroy(bytes: *mut moda_trt_bytes);
}

extern "C" {
    pub fn moda_trt_runtime_create(
        out: *mut *mut moda_trt_runtime,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn moda_trt_runtime_destroy(runtime: *mut moda_trt_runtime);
    pub fn moda_trt_runtime_version(
        runtime: *const moda_trt_runtime,
        buf: *mut c_char,
        buf_len: usize,
    ) -> c_int;

    pub fn moda_trt_engine_deserialize(
        runtime: *mut moda_trt_runtime,
        data: *const c_void,
        len: usize,
        out: *mut *mut moda_trt_engine,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn moda_trt_engine_destroy(engine: *mut moda_trt_engine);
    pub fn moda_trt_engine_io_count(engine: *const moda_trt_engine) -> i32;
    pub fn moda_trt_engine_io(
        engine: *const moda_trt_engine,
        index: i32,
        out: *mut moda_trt_io,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;

    pub fn moda_trt_context_create(
        engine: *mut moda_trt_engine,
        out: *mut *mut moda_trt_context,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn moda_trt_context_destroy(context: *mut moda_trt_context);
    pub fn moda_trt_context_set_input_shape(
        context: *mut moda_trt_context,
        name: *const c_char,
        dims: *const i64,
        nb_dims: i32,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn moda_trt_context_tensor_shape(
        context: *const moda_trt_context,
        name: *const c_char,
        dims: *mut i64,
        nb_dims: *mut i32,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn moda_trt_context_set_tensor_address(
        context: *mut moda_trt_context,
        name: *const c_char,
        address: *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn moda_trt_context_enqueue(
        context: *mut moda_trt_context,
        stream: *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

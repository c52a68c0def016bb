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

//! The shim's C interface ([`super::ffi`]) implemented in Rust over tract, for tests and CI
//! (feature `tensorrt-fake`): the backend makes the same FFI calls as with TensorRT, on host
//! memory and [fake streams](super::fake_stream).
//!
//! Deserializing a [fake engine file](super::fake_engine) prepares its ONNX graph on tract for
//! the header's shapes; enqueueing a context pushes a job on the fake stream that
//! copies the bound input addresses (host pointers) into a tract session, runs it and copies
//! the outputs to their bound addresses. The engine computes in float32 whatever precision its
//! header records (tract runs the graph as written).

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;
use std::ptr;
use std::sync::{Arc, Mutex};

use super::fake_stream::FakeStream;
use super::ffi;
use crate::backend::guard;
use crate::backend::tract::{TractBackend, TractPrepared, TractSession};
use crate::backend::{Backend, OnnxModel, Precision, PrepareOptions, Prepared, Session};

use super::fake_engine::{code_size, parse};
pub use super::fake_engine::{
    fake_engine_bytes, write_fake_engine, FakeHeader, FakeTensor, FAKE_VERSION, MAGIC,
};

struct FakeRuntime;

/// What an engine and its contexts share: the IO tensors and the graph, prepared on tract once
/// per set of input shapes (a fixed engine has one; an engine with profiles one per shape set
/// its contexts are given).
struct EngineInner {
    io: Vec<(FakeTensor, bool)>,
    model: OnnxModel,
    plans: Mutex<HashMap<Vec<Vec<usize>>, Arc<TractPrepared>>>,
}

impl EngineInner {
    fn input_names(&self) -> impl Iterator<Item = &str> {
        self.io
            .iter()
            .filter(|(_, i)| *i)
            .map(|(t, _)| t.name.as_str())
    }

    /// The graph prepared for `shapes` (one per input, in `io` order).
    fn plan(&self, shapes: &[Vec<usize>]) -> Result<Arc<TractPrepared>, (c_int, String)> {
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = plans.get(shapes) {
            return Ok(Arc::clone(p));
        }
        let opts = PrepareOptions {
            shapes: self
                .input_names()
                .map(String::from)
                .zip(shapes.iter().cloned())
                .collect(),
            precision: Precision::Fp32,
        };
        let prepared = TractBackend::default()
            .prepare(&self.model, &opts)
            .map_err(|e| (ffi::FAILED, crate::util::error_chain(&e)))?;
        let prepared = Arc::new(prepared);
        plans.insert(shapes.to_vec(), Arc::clone(&prepared));
        Ok(prepared)
    }
}

struct FakeEngine {
    inner: Arc<EngineInner>,
}

/// A bound tensor: session index, host address, bytes.
#[derive(Clone, Copy)]
struct Binding {
    index: usize,
    address: usize,
    bytes: usize,
}

/// A context's graph for its current input shapes.
struct Current {
    prepared: Arc<TractPrepared>,
    session: Arc<Mutex<TractSession>>,
}

struct FakeContext {
    engine: Arc<EngineInner>,
    /// Every input's shape, in `io` order: the engine's (`opt`) shapes until set.
    shapes: Vec<Vec<usize>>,
    current: Option<Current>,
    addresses: HashMap<String, usize>,
}

impl FakeContext {
    /// The graph and session for the current shapes, prepared on first use after a change.
    fn current(&mut self) -> Result<&Current, (c_int, String)> {
        if self.current.is_none() {
            let prepared = self.engine.plan(&self.shapes)?;
            let session = prepared
                .session()
                .map_err(|e| (ffi::FAILED, crate::util::error_chain(&e)))?;
            self.current = Some(Current {
                prepared,
                session: Arc::new(Mutex::new(session)),
            });
        }
        Ok(self.current.as_ref().expect("set above"))
    }
}

/// Writes `msg` into the caller's buffer (truncated, NUL-terminated).
///
/// # Safety
/// `err` is null or valid for `len` bytes.
pub(super) unsafe fn write_message(err: *mut c_char, len: usize, msg: &str) {
    if err.is_null() || len == 0 {
        return;
    }
    let n = msg.len().min(len - 1);
    // SAFETY: `err` is valid for `len` bytes (caller) and `n + 1 <= len`.
    unsafe {
        ptr::copy_nonoverlapping(msg.as_ptr(), err.cast::<u8>(), n);
        *err.add(n) = 0;
    }
}

/// Runs `body` with panics caught (nothing unwinds through `extern "C"`); an `Err` or a panic
/// is written to `err` with its code.
pub(super) fn entry(
    err: *mut c_char,
    len: usize,
    body: impl FnOnce() -> Result<(), (c_int, String)>,
) -> c_int {
    let result = guard::catch(body).unwrap_or_else(|panic| Err((ffi::INTERNAL, panic)));
    match result {
        Ok(()) => ffi::OK,
        Err((code, msg)) => {
            // SAFETY: the C contract: `err` is null or valid for `len` bytes.
            unsafe { write_message(err, len, &msg) };
            code
        }
    }
}

pub(super) fn null_argument(what: &str) -> (c_int, String) {
    (ffi::BAD_ARGUMENT, format!("{what}: null argument"))
}

fn name_of(name: *const c_char) -> Result<String, (c_int, String)> {
    if name.is_null() {
        return Err(null_argument("tensor name"));
    }
    // SAFETY: the C contract: a non-null name is NUL-terminated.
    Ok(unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned())
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: pointers are null or valid for what they point to, and handles
/// are live and come from this module.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_runtime_create(
    out: *mut *mut ffi::moda_trt_runtime,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    entry(err, err_len, || {
        if out.is_null() {
            return Err(null_argument("moda_trt_runtime_create"));
        }
        // SAFETY: `out` is a valid out-pointer (checked non-null; the C contract).
        unsafe { *out = Box::into_raw(Box::new(FakeRuntime)).cast() };
        Ok(())
    })
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: pointers are null or valid for what they point to, and handles
/// are live and come from this module.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_runtime_destroy(runtime: *mut ffi::moda_trt_runtime) {
    if !runtime.is_null() {
        // SAFETY: a non-null runtime came from `moda_trt_runtime_create`'s `Box::into_raw`.
        drop(unsafe { Box::from_raw(runtime.cast::<FakeRuntime>()) });
    }
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: pointers are null or valid for what they point to, and handles
/// are live and come from this module.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_runtime_version(
    runtime: *const ffi::moda_trt_runtime,
    buf: *mut c_char,
    buf_len: usize,
) -> c_int {
    if runtime.is_null() {
        // SAFETY: the C contract: `buf` is null or valid for `buf_len` bytes.
        unsafe { write_message(buf, buf_len, "moda_trt_runtime_version: null runtime") };
        return ffi::BAD_ARGUMENT;
    }
    // SAFETY: as above.
    unsafe { write_message(buf, buf_len, FAKE_VERSION) };
    ffi::OK
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: pointers are null or valid for what they point to, and handles
/// are live and come from this module.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_engine_deserialize(
    runtime: *mut ffi::moda_trt_runtime,
    data: *const c_void,
    len: usize,
    out: *mut *mut ffi::moda_trt_engine,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    entry(err, err_len, || {
        if runtime.is_null() || data.is_null() || out.is_null() {
            return Err(null_argument("moda_trt_engine_deserialize"));
        }
        // SAFETY: the C contract: `data` is valid for `len` bytes during the call.
        let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
        let failed = |what: String| {
            (
                ffi::FAILED,
                format!("TensorRT cannot deserialize the engine: {what}"),
            )
        };
        let (header, onnx) = parse(bytes).map_err(failed)?;
        let model = OnnxModel::from_bytes(Path::new("engine"), onnx.to_vec())
            .map_err(|e| failed(format!("its network is unreadable ({e})")))?;
        let io: Vec<(FakeTensor, bool)> = header
            .inputs
            .into_iter()
            .map(|t| (t, true))
            .chain(header.outputs.into_iter().map(|t| (t, false)))
            .collect();
        let inner = EngineInner {
            io,
            model,
            plans: Mutex::new(HashMap::new()),
        };
        // As TensorRT checks a plan when deserializing: the graph must prepare at the
        // engine's own shapes.
        let opt: Vec<Vec<usize>> = inner
            .io
            .iter()
            .filter(|(_, i)| *i)
            .map(|(t, _)| t.shape.clone())
            .collect();
        inner.plan(&opt).map_err(|(_, e)| failed(e))?;
        let engine = FakeEngine {
            inner: Arc::new(inner),
        };
        // SAFETY: `out` is a valid out-pointer (checked non-null; the C contract).
        unsafe { *out = Box::into_raw(Box::new(engine)).cast() };
        Ok(())
    })
}

/// The fake engine behind a handle.
///
/// # Safety
/// `engine` is non-null and came from `moda_trt_engine_deserialize`, not yet destroyed.
unsafe fn engine_ref<'a>(engine: *const ffi::moda_trt_engine) -> &'a FakeEngine {
    // SAFETY: the caller's promise.
    unsafe { &*engine.cast::<FakeEngine>() }
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: pointers are null or valid for what they point to, and handles
/// are live and come from this module.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_engine_destroy(engine: *mut ffi::moda_trt_engine) {
    if !engine.is_null() {
        // SAFETY: a non-null engine came from `Box::into_raw` in `moda_trt_engine_deserialize`.
        drop(unsafe { Box::from_raw(engine.cast::<FakeEngine>()) });
    }
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: pointers are null or valid for what they point to, and handles
/// are live and come from this module.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_engine_io_count(engine: *const ffi::moda_trt_engine) -> i32 {
    if engine.is_null() {
        return 0;
    }
    // SAFETY: a non-null engine handle is live (the C contract).
    let engine = unsafe { engine_ref(engine) };
    i32::try_from(engine.inner.io.len()).unwrap_or(0)
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: pointers are null or valid for what they point to, and handles
/// are live and come from this module.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_engine_io(
    engine: *const ffi::moda_trt_engine,
    index: i32,
    out: *mut ffi::moda_trt_io,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    entry(err, err_len, || {
        if engine.is_null() || out.is_null() {
            return Err(null_argument("moda_trt_engine_io"));
        }
        // SAFETY: a non-null engine handle is live (the C contract).
        let engine = unsafe { engine_ref(engine) };
        let (t, is_input) = usize::try_from(index)
            .ok()
            .and_then(|i| engine.inner.io.get(i))
            .ok_or((
                ffi::BAD_ARGUMENT,
                "moda_trt_engine_io: index out of range".to_string(),
            ))?;
        if t.name.len() >= ffi::NAME_LEN || t.shape.len() > ffi::MAX_DIMS {
            return Err((
                ffi::BAD_ARGUMENT,
                format!("tensor {} too long a name or shape", t.name),
            ));
        }
        let mut io = ffi::moda_trt_io::ZERO;
        for (d, &b) in io.name.iter_mut().zip(t.name.as_bytes()) {
            *d = b as c_char;
        }
        io.is_input = i32::from(*is_input);
        io.dtype = t.dtype;
        io.nb_dims = t.shape.len() as i32;
        // A dimension that varies within the profile is -1, as TensorRT reports it.
        let (lo, hi) = t.bounds();
        for (k, (d, &s)) in io.dims.iter_mut().zip(&t.shape).enumerate() {
            *d = if lo.get(k) == hi.get(k) { s as i64 } else { -1 };
        }
        // SAFETY: `out` is a valid out-pointer (checked non-null; the C contract).
        unsafe { *out = io };
        Ok(())
    })
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: pointers are null or valid for what they point to, and handles
/// are live and come from this module.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_context_create(
    engine: *mut ffi::moda_trt_engine,
    out: *mut *mut ffi::moda_trt_context,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    entry(err, err_len, || {
        if engine.is_null() || out.is_null() {
            return Err(null_argument("moda_trt_context_create"));
        }
        // SAFETY: a non-null engine handle is live (the C contract).
        let engine = unsafe { engine_ref(engine) };
        let inner = Arc::clone(&engine.inner);
        let shapes = inner
            .io
            .iter()
            .filter(|(_, i)| *i)
            .map(|(t, _)| t.shape.clone())
            .collect();
        let mut context = FakeContext {
            engine: inner,
            shapes,
            current: None,
            addresses: HashMap::new(),
        };
        context.current()?;
        // SAFETY: `out` is a valid out-pointer (checked non-null; the C contract).
        unsafe { *out = Box::into_raw(Box::new(context)).cast() };
        Ok(())
    })
}

/// The fake context behind a handle.
///
/// # Safety
/// `context` is non-null, came from `moda_trt_context_create`, is not yet destroyed and not
/// used by another thread during `'a`.
unsafe fn context_mut<'a>(context: *mut ffi::moda_trt_context) -> &'a mut FakeContext {
    // SAFETY: the caller's promise.
    unsafe { &mut *context.cast::<FakeContext>() }
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: pointers are null or valid for what they point to, and handles
/// are live and come from this module.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_context_destroy(context: *mut ffi::moda_trt_context) {
    if !context.is_null() {
        // SAFETY: a non-null context came from `Box::into_raw` in `moda_trt_context_create`.
        drop(unsafe { Box::from_raw(context.cast::<FakeContext>()) });
    }
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: pointers are null or valid for what they point to, and handles
/// are live and come from this module.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_context_set_input_shape(
    context: *mut ffi::moda_trt_context,
    name: *const c_char,
    dims: *const i64,
    nb_dims: i32,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    entry(err, err_len, || {
        let nb = usize::try_from(nb_dims).map_err(|_| null_argument("nb_dims"))?;
        if context.is_null() || (dims.is_null() && nb > 0) {
            return Err(null_argument("moda_trt_context_set_input_shape"));
        }
        let name = name_of(name)?;
        // SAFETY: a non-null context handle is live and used by this thread (the C contract).
        let context = unsafe { context_mut(context) };
        let dims = if nb == 0 {
            &[][..]
        } else {
            // SAFETY: the C contract: `dims` holds `nb_dims` values.
            unsafe { std::slice::from_raw_parts(dims, nb) }
        };
        let Some((k, (t, _))) = context
            .engine
            .io
            .iter()
            .filter(|(_, is_input)| *is_input)
            .enumerate()
            .find(|(_, (t, _))| t.name == name)
        else {
            return Err((
                ffi::FAILED,
                format!("setInputShape failed for {name}: no such input"),
            ));
        };
        let wanted: Option<Vec<usize>> = dims.iter().map(|&d| usize::try_from(d).ok()).collect();
        let Some(wanted) = wanted.filter(|w| t.admits(w)) else {
            let (lo, hi) = t.bounds();
            return Err((
                ffi::FAILED,
                format!(
                    "setInputShape failed for {name}: {dims:?} outside the engine's profile \
                     {lo:?}..={hi:?}"
                ),
            ));
        };
        if context.shapes[k] != wanted {
            context.shapes[k] = wanted;
            context.current = None;
        }
        Ok(())
    })
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: pointers are null or valid for what they point to, and handles
/// are live and come from this module.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_context_tensor_shape(
    context: *const ffi::moda_trt_context,
    name: *const c_char,
    dims: *mut i64,
    nb_dims: *mut i32,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    entry(err, err_len, || {
        if context.is_null() || dims.is_null() || nb_dims.is_null() {
            return Err(null_argument("moda_trt_context_tensor_shape"));
        }
        let name = name_of(name)?;
        // SAFETY: a non-null context handle is live and used by this thread (the C contract);
        // the shim's contexts prepare their graph lazily, as TensorRT infers shapes lazily.
        let context = unsafe { context_mut(context.cast_mut()) };
        let position = context.engine.input_names().position(|n| n == name);
        let shape: Vec<usize> = match position {
            Some(k) => context.shapes[k].clone(),
            None => {
                let current = context.current()?;
                let Some(d) = current.prepared.outputs().iter().find(|d| d.name == name) else {
                    return Err((ffi::FAILED, format!("no shape for tensor {name}")));
                };
                d.shape.clone()
            }
        };
        let t = FakeTensor {
            name: name.clone(),
            dtype: 0,
            shape,
            min: None,
            max: None,
        };
        for (i, &s) in t.shape.iter().enumerate() {
            // SAFETY: the C contract: `dims` holds MODA_TRT_MAX_DIMS values; i < 8.
            unsafe { *dims.add(i) = s as i64 };
        }
        // SAFETY: `nb_dims` is a valid out-pointer (checked non-null).
        unsafe { *nb_dims = t.shape.len() as i32 };
        Ok(())
    })
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: pointers are null or valid for what they point to, and handles
/// are live and come from this module.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_context_set_tensor_address(
    context: *mut ffi::moda_trt_context,
    name: *const c_char,
    address: *mut c_void,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    entry(err, err_len, || {
        if context.is_null() || address.is_null() {
            return Err(null_argument("moda_trt_context_set_tensor_address"));
        }
        let name = name_of(name)?;
        // SAFETY: a non-null context handle is live and used by this thread (the C contract).
        let context = unsafe { context_mut(context) };
        if !context.engine.io.iter().any(|(t, _)| t.name == name) {
            return Err((
                ffi::FAILED,
                format!("setTensorAddress failed for {name}: no such tensor"),
            ));
        }
        context.addresses.insert(name, address as usize);
        Ok(())
    })
}

/// The fake of the C function of the same name in `shim/moda_trt.h`.
///
/// # Safety
/// The header's contract: pointers are null or valid for what they point to, and handles
/// are live and come from this module.
#[no_mangle]
pub unsafe extern "C" fn moda_trt_context_enqueue(
    context: *mut ffi::moda_trt_context,
    stream: *mut c_void,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    entry(err, err_len, || {
        if context.is_null() || stream.is_null() {
            return Err(null_argument("moda_trt_context_enqueue"));
        }
        // SAFETY: a non-null context handle is live and used by this thread (the C contract).
        let context = unsafe { context_mut(context) };
        let engine = Arc::clone(&context.engine);
        let shapes = context.shapes.clone();
        let (prepared, session) = {
            let c = context.current()?;
            (Arc::clone(&c.prepared), Arc::clone(&c.session))
        };
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        for (t, is_input) in &engine.io {
            let Some(&address) = context.addresses.get(&t.name) else {
                return Err((
                    ffi::FAILED,
                    format!("enqueueV3 failed: tensor {} has no address", t.name),
                ));
            };
            let dims: &[usize] = if *is_input {
                &shapes[inputs.len()]
            } else {
                prepared
                    .outputs()
                    .iter()
                    .find(|d| d.name == t.name)
                    .map(|d| d.shape.as_slice())
                    .unwrap_or(&t.shape)
            };
            let bytes = dims.iter().product::<usize>() * code_size(t.dtype);
            if *is_input {
                inputs.push(Binding {
                    index: inputs.len(),
                    address,
                    bytes,
                });
            } else {
                outputs.push(Binding {
                    index: outputs.len(),
                    address,
                    bytes,
                });
            }
        }

        // SAFETY: the C contract: `stream` is a live fake stream's handle.
        let queue = unsafe { FakeStream::queue(stream) };
        queue.push(Box::new(move || run(&session, &inputs, &outputs)));
        Ok(())
    })
}

/// One run on the stream's thread: bound inputs in, tract, outputs out.
fn run(
    session: &Mutex<TractSession>,
    inputs: &[Binding],
    outputs: &[Binding],
) -> Result<(), String> {
    let mut session = session.lock().unwrap_or_else(|p| p.into_inner());
    for b in inputs {
        let dst = bytes_mut(session.input(b.index).map_err(|e| e.to_string())?);
        if dst.len() != b.bytes {
            return Err(format!(
                "input {} holds {} bytes, the binding {}",
                b.index,
                dst.len(),
                b.bytes
            ));
        }
        // SAFETY: `set_tensor_address`'s contract: the bound buffer holds the tensor's bytes
        // and stays valid, untouched by the host, until this run completes.
        unsafe { ptr::copy_nonoverlapping(b.address as *const u8, dst.as_mut_ptr(), b.bytes) };
    }
    session.run().map_err(|e| crate::util::error_chain(&e))?;
    for b in outputs {
        let src = bytes_of(session.output(b.index).map_err(|e| e.to_string())?);
        if src.len() != b.bytes {
            return Err(format!(
                "output {} holds {} bytes, the binding {}",
                b.index,
                src.len(),
                b.bytes
            ));
        }
        // SAFETY: as above, for the output's buffer.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), b.address as *mut u8, b.bytes) };
    }
    Ok(())
}

fn bytes_mut(view: crate::backend::HostMut<'_>) -> &mut [u8] {
    use crate::backend::HostMut;
    match view {
        // SAFETY: any f32 is 4 plain bytes; the byte slice covers exactly the same memory.
        HostMut::F32(s) => unsafe {
            std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), s.len() * 4)
        },
        // SAFETY: any f16 is 2 plain bytes, as above.
        HostMut::F16(s) => unsafe {
            std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), s.len() * 2)
        },
    }
}

fn bytes_of(view: crate::backend::HostRef<'_>) -> &[u8] {
    use crate::backend::HostRef;
    match view {
        // SAFETY: as in `bytes_mut`.
        HostRef::F32(s) => unsafe { std::slice::from_raw_parts(s.as_ptr().cast(), s.len() * 4) },
        // SAFETY: as in `bytes_mut`.
        HostRef::F16(s) => unsafe { std::slice::from_raw_parts(s.as_ptr().cast(), s.len() * 2) },
    }
}

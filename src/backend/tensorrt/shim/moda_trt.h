/* moda_trt: the C interface moda-edge uses to reach TensorRT 10.
 *
 * Opaque handles, plain C types, no exceptions: every function catches whatever the C++ side
 * throws and reports it as a message. Functions that can fail return 0 on success and a
 * non-zero MODA_TRT_* code otherwise, and write a NUL-terminated, possibly truncated message
 * into the caller's `err` buffer (`err_len` bytes, may be 0). Handles are destroyed in reverse
 * order of creation: contexts, then engines, then the runtime.
 *
 * libnvinfer.so.10 is opened with dlopen by moda_trt_runtime_create, so a program linked with
 * this shim starts on a machine without TensorRT and gets an error message from that call.
 *
 * The same functions are implemented in Rust over tract for tests (src/backend/tensorrt/fake.rs,
 * feature `tensorrt-fake`); both follow this header. */
#ifndef MODA_TRT_H
#define MODA_TRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
#define MODA_TRT_OK 0
/* libnvinfer.so.10 or one of its symbols is missing (the machine has no TensorRT). */
#define MODA_TRT_NO_LIBRARY 1
/* TensorRT refused the call (bad engine bytes, wrong tensor name, wrong shape...). */
#define MODA_TRT_FAILED 2
/* An argument is null or out of range. */
#define MODA_TRT_BAD_ARGUMENT 3
/* An exception or allocation failure inside the shim. */
#define MODA_TRT_INTERNAL 4

/* Longest tensor name the IO description carries (with its NUL). */
#define MODA_TRT_NAME_LEN 256
#define MODA_TRT_MAX_DIMS 8

typedef struct moda_trt_runtime moda_trt_runtime;
typedef struct moda_trt_engine moda_trt_engine;
typedef struct moda_trt_context moda_trt_context;

/* One input or output tensor of an engine. `dtype` is nvinfer1::DataType's value
 * (0 float32, 1 float16, 2 int8, 3 int32, 4 bool, 5 uint8, 6 fp8, 7 bf16, 8 int64);
 * `dims` is the engine's shape, -1 for a dimension fixed only by moda_trt_context_set_input_shape. */
typedef struct moda_trt_io {
    char name[MODA_TRT_NAME_LEN];
    int32_t is_input;
    int32_t dtype;
    int32_t nb_dims;
    int64_t dims[MODA_TRT_MAX_DIMS];
} moda_trt_io;

/* Opens libnvinfer.so.10 and creates a runtime whose logger keeps the last error message
 * (appended to the messages of later failures). */
int moda_trt_runtime_create(moda_trt_runtime** out, char* err, size_t err_len);
void moda_trt_runtime_destroy(moda_trt_runtime* runtime);
/* The loaded library's version, "10.3.0" (getInferLibVersion), into buf. */
int moda_trt_runtime_version(const moda_trt_runtime* runtime, char* buf, size_t buf_len);

/* Deserializes a serialized engine (the bytes of a .engine file; copied by TensorRT). */
int moda_trt_engine_deserialize(moda_trt_runtime* runtime, const void* data, size_t len,
                                moda_trt_engine** out, char* err, size_t err_len);
void moda_trt_engine_destroy(moda_trt_engine* engine);
/* Number of input and output tensors. */
int32_t moda_trt_engine_io_count(const moda_trt_engine* engine);
/* Tensor `index` (0 <= index < io_count). */
int moda_trt_engine_io(const moda_trt_engine* engine, int32_t index, moda_trt_io* out,
                       char* err, size_t err_len);

int moda_trt_context_create(moda_trt_engine* engine, moda_trt_context** out, char* err,
                            size_t err_len);
void moda_trt_context_destroy(moda_trt_context* context);
int moda_trt_context_set_input_shape(moda_trt_context* context, const char* name,
                                     const int64_t* dims, int32_t nb_dims, char* err,
                                     size_t err_len);
/* The shape of tensor `name` in this context, once every input shape is set (outputs of an
 * engine with dynamic inputs have concrete shapes only here). `dims` holds MODA_TRT_MAX_DIMS. */
int moda_trt_context_tensor_shape(const moda_trt_context* context, const char* name,
                                  int64_t* dims, int32_t* nb_dims, char* err, size_t err_len);
/* `address` is where the tensor lives for the device (a device or host-mapped pointer). */
int moda_trt_context_set_tensor_address(moda_trt_context* context, const char* name,
                                        void* address, char* err, size_t err_len);
/* Enqueues one inference on `stream` (a cudaStream_t); returns before it completes. */
int moda_trt_context_enqueue(moda_trt_context* context, void* stream, char* err, size_t err_len);

/* ---- Engine building (moda-edge engine build) -------------------------------------------
 *
 * moda_trt_builder_create opens libnvinfer.so.10 and libnvonnxparser.so.10 with dlopen; one
 * moda_trt_builder_build call parses an ONNX graph from memory, configures the builder from a
 * moda_trt_build_options and returns the serialized engine and the updated timing cache.
 * Byte buffers the shim returns are moda_trt_bytes, freed with moda_trt_bytes_destroy. */

typedef struct moda_trt_builder moda_trt_builder;
typedef struct moda_trt_bytes moda_trt_bytes;

/* moda_trt_build_options.flags */
#define MODA_TRT_BUILD_FP16 1u
/* INT8: from the graph's Q/DQ nodes (explicit), or from calibration_cache (implicit). */
#define MODA_TRT_BUILD_INT8 2u
/* The network is created strongly typed (types follow the graph; FP16/INT8 flags are then
 * refused by TensorRT, so the shim refuses them first). */
#define MODA_TRT_BUILD_STRONGLY_TYPED 4u
/* Layers given in `layers` keep their precision (BuilderFlag::kOBEY_PRECISION_CONSTRAINTS);
 * without it TensorRT may override them. */
#define MODA_TRT_BUILD_OBEY_PRECISION 8u

/* Progress events (IProgressMonitor): a phase starts with nb_steps steps, a step of it is
 * done, a phase finishes. `phase` is valid during the call only. Called on the building
 * thread; must not throw or unwind. */
#define MODA_TRT_PHASE_START 0
#define MODA_TRT_PHASE_STEP 1
#define MODA_TRT_PHASE_FINISH 2
typedef void (*moda_trt_progress_fn)(void* user, int32_t event, const char* phase,
                                     int32_t step, int32_t nb_steps);

/* One input's optimization profile (min <= opt <= max, element-wise). */
typedef struct moda_trt_profile {
    const char* input;
    int32_t nb_dims;
    int64_t min[MODA_TRT_MAX_DIMS];
    int64_t opt[MODA_TRT_MAX_DIMS];
    int64_t max[MODA_TRT_MAX_DIMS];
} moda_trt_profile;

/* A layer (by the name the ONNX parser gives it) whose computation and outputs are kept in
 * `dtype` (0 float32, 1 float16). */
typedef struct moda_trt_layer_precision {
    const char* layer;
    int32_t dtype;
} moda_trt_layer_precision;

typedef struct moda_trt_build_options {
    uint32_t flags;
    /* Workspace memory pool limit in bytes; 0 keeps TensorRT's default (the device memory). */
    uint64_t workspace_bytes;
    /* One profile entry per input; the whole set is one optimization profile. */
    const moda_trt_profile* profiles;
    size_t nb_profiles;
    const moda_trt_layer_precision* layers;
    size_t nb_layers;
    /* A serialized timing cache to start from (null/0: an empty one). */
    const void* timing_cache;
    size_t timing_cache_len;
    /* An INT8 calibration cache (TRT-<version>-EntropyCalibration2 text) for implicit INT8:
     * the calibrator only returns it, it never runs a batch. null/0: none. */
    const void* calibration_cache;
    size_t calibration_cache_len;
    moda_trt_progress_fn progress;
    void* progress_user;
} moda_trt_build_options;

/* Opens libnvinfer.so.10 and libnvonnxparser.so.10 and creates an IBuilder. */
int moda_trt_builder_create(moda_trt_builder** out, char* err, size_t err_len);
void moda_trt_builder_destroy(moda_trt_builder* builder);
/* The loaded library's version, "10.3.0". */
int moda_trt_builder_version(const moda_trt_builder* builder, char* buf, size_t buf_len);
/* Parses `onnx` (the bytes of an .onnx file whose external data, if any, is not supported),
 * builds it under `options` and returns the serialized engine and the timing cache after the
 * build (either output may be null when not wanted). */
int moda_trt_builder_build(moda_trt_builder* builder, const void* onnx, size_t onnx_len,
                           const moda_trt_build_options* options, moda_trt_bytes** engine,
                           moda_trt_bytes** timing_cache, char* err, size_t err_len);

const void* moda_trt_bytes_data(const moda_trt_bytes* bytes);
size_t moda_trt_bytes_size(const moda_trt_bytes* bytes);
void moda_trt_bytes_destroy(moda_trt_bytes* bytes);

#ifdef __cplusplus
}
#endif

#endif /* MODA_TRT_H */

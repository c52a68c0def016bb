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

#ifdef __cplusplus
}
#endif

#endif /* MODA_TRT_H */

// moda_trt: the C interface of moda_trt.h over TensorRT 10's C++ API.
//
// Every extern "C" function runs its body inside `guard`, which catches every exception (a
// bad_alloc of a message string, anything TensorRT might throw) and turns it into an error
// message: nothing unwinds into Rust. libnvinfer.so.10 is opened with dlopen in
// moda_trt_runtime_create and closed when the runtime is destroyed; the shim links only libdl.

#include "moda_trt.h"
#include "moda_trt_common.h"

#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <string>

using namespace moda_trt_detail;

struct moda_trt_runtime {
    void* library = nullptr;
    LastErrorLogger logger;
    nvinfer1::IRuntime* runtime = nullptr;
    int32_t version = 0;

    // `what` failed: the message, with TensorRT's last logged error when there is one.
    int fail(char* err, size_t err_len, std::string const& what) const {
        std::string msg = what;
        std::string const last = logger.last();
        if (!last.empty()) {
            msg += ": ";
            msg += last;
        }
        write_message(err, err_len, msg.c_str());
        return MODA_TRT_FAILED;
    }
};

struct moda_trt_engine {
    moda_trt_runtime* owner = nullptr;
    nvinfer1::ICudaEngine* engine = nullptr;
};

struct moda_trt_context {
    moda_trt_engine* owner = nullptr;
    nvinfer1::IExecutionContext* context = nullptr;
};

extern "C" {

int moda_trt_runtime_create(moda_trt_runtime** out, char* err, size_t err_len) {
    return guard(err, err_len, [&]() -> int {
        if (out == nullptr) {
            write_message(err, err_len, "moda_trt_runtime_create: null output");
            return MODA_TRT_BAD_ARGUMENT;
        }
        *out = nullptr;
        void* library = open_library("libnvinfer.so.10", "TensorRT 10", err, err_len);
        if (library == nullptr) {
            return MODA_TRT_NO_LIBRARY;
        }
        auto create = reinterpret_cast<CreateRuntimeFn>(dlsym(library, "createInferRuntime_INTERNAL"));
        auto version = reinterpret_cast<VersionFn>(dlsym(library, "getInferLibVersion"));
        if (create == nullptr || version == nullptr) {
            dlclose(library);
            write_message(err, err_len,
                          "libnvinfer.so.10 lacks createInferRuntime_INTERNAL or "
                          "getInferLibVersion: not a TensorRT 10 library (reinstall JetPack 6)");
            return MODA_TRT_NO_LIBRARY;
        }
        auto* rt = new moda_trt_runtime();
        rt->library = library;
        rt->version = version();
        rt->runtime = static_cast<nvinfer1::IRuntime*>(create(&rt->logger, NV_TENSORRT_VERSION));
        if (rt->runtime == nullptr) {
            char version_text[32];
            std::snprintf(version_text, sizeof version_text, "%d", static_cast<int>(rt->version));
            int const code = rt->fail(err, err_len,
                                      std::string("createInferRuntime failed (library version ") +
                                          version_text + ", shim built for " +
                                          std::to_string(NV_TENSORRT_VERSION) + ")");
            dlclose(library);
            delete rt;
            return code;
        }
        *out = rt;
        return MODA_TRT_OK;
    });
}

void moda_trt_runtime_destroy(moda_trt_runtime* runtime) {
    if (runtime == nullptr) {
        return;
    }
    try {
        delete runtime->runtime;
        if (runtime->library != nullptr) {
            dlclose(runtime->library);
        }
        delete runtime;
    } catch (...) {
        // Destruction is best effort; nothing may escape into the caller.
    }
}

int moda_trt_runtime_version(const moda_trt_runtime* runtime, char* buf, size_t buf_len) {
    return guard(buf, buf_len, [&]() -> int {
        if (runtime == nullptr) {
            write_message(buf, buf_len, "moda_trt_runtime_version: null runtime");
            return MODA_TRT_BAD_ARGUMENT;
        }
        write_version(buf, buf_len, runtime->version);
        return MODA_TRT_OK;
    });
}

int moda_trt_engine_deserialize(moda_trt_runtime* runtime, const void* data, size_t len,
                                moda_trt_engine** out, char* err, size_t err_len) {
    return guard(err, err_len, [&]() -> int {
        if (runtime == nullptr || data == nullptr || out == nullptr) {
            write_message(err, err_len, "moda_trt_engine_deserialize: null argument");
            return MODA_TRT_BAD_ARGUMENT;
        }
        *out = nullptr;
        nvinfer1::ICudaEngine* engine = runtime->runtime->deserializeCudaEngine(data, len);
        if (engine == nullptr) {
            return runtime->fail(err, err_len, "TensorRT cannot deserialize the engine");
        }
        auto* handle = new moda_trt_engine();
        handle->owner = runtime;
        handle->engine = engine;
        *out = handle;
        return MODA_TRT_OK;
    });
}

void moda_trt_engine_destroy(moda_trt_engine* engine) {
    if (engine == nullptr) {
        return;
    }
    try {
        delete engine->engine;
        delete engine;
    } catch (...) {
        // Best effort, as above.
    }
}

int32_t moda_trt_engine_io_count(const moda_trt_engine* engine) {
    if (engine == nullptr) {
        return 0;
    }
    try {
        return engine->engine->getNbIOTensors();
    } catch (...) {
        return 0;
    }
}

int moda_trt_engine_io(const moda_trt_engine* engine, int32_t index, moda_trt_io* out,
                       char* err, size_t err_len) {
    return guard(err, err_len, [&]() -> int {
        if (engine == nullptr || out == nullptr) {
            write_message(err, err_len, "moda_trt_engine_io: null argument");
            return MODA_TRT_BAD_ARGUMENT;
        }
        nvinfer1::ICudaEngine const& e = *engine->engine;
        if (index < 0 || index >= e.getNbIOTensors()) {
            write_message(err, err_len, "moda_trt_engine_io: index out of range");
            return MODA_TRT_BAD_ARGUMENT;
        }
        char const* name = e.getIOTensorName(index);
        if (name == nullptr) {
            return engine->owner->fail(err, err_len, "getIOTensorName failed");
        }
        if (std::strlen(name) >= MODA_TRT_NAME_LEN) {
            write_message(err, err_len, "moda_trt_engine_io: tensor name longer than 255 bytes");
            return MODA_TRT_BAD_ARGUMENT;
        }
        std::memset(out, 0, sizeof *out);
        std::snprintf(out->name, sizeof out->name, "%s", name);
        out->is_input = e.getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? 1 : 0;
        out->dtype = static_cast<int32_t>(e.getTensorDataType(name));
        nvinfer1::Dims64 const dims = e.getTensorShape(name);
        if (dims.nbDims < 0 || dims.nbDims > MODA_TRT_MAX_DIMS) {
            return engine->owner->fail(err, err_len, std::string("no shape for tensor ") + name);
        }
        out->nb_dims = dims.nbDims;
        for (int32_t i = 0; i < dims.nbDims; ++i) {
            out->dims[i] = dims.d[i];
        }
        return MODA_TRT_OK;
    });
}

int moda_trt_context_create(moda_trt_engine* engine, moda_trt_context** out, char* err,
                            size_t err_len) {
    return guard(err, err_len, [&]() -> int {
        if (engine == nullptr || out == nullptr) {
            write_message(err, err_len, "moda_trt_context_create: null argument");
            return MODA_TRT_BAD_ARGUMENT;
        }
        *out = nullptr;
        nvinfer1::IExecutionContext* context = engine->engine->createExecutionContext();
        if (context == nullptr) {
            return engine->owner->fail(err, err_len, "createExecutionContext failed");
        }
        auto* handle = new moda_trt_context();
        handle->owner = engine;
        handle->context = context;
        *out = handle;
        return MODA_TRT_OK;
    });
}

void moda_trt_context_destroy(moda_trt_context* context) {
    if (context == nullptr) {
        return;
    }
    try {
        delete context->context;
        delete context;
    } catch (...) {
        // Best effort, as above.
    }
}

int moda_trt_context_set_input_shape(moda_trt_context* context, const char* name,
                                     const int64_t* dims, int32_t nb_dims, char* err,
                                     size_t err_len) {
    return guard(err, err_len, [&]() -> int {
        if (context == nullptr || name == nullptr || (dims == nullptr && nb_dims > 0) ||
            nb_dims < 0 || nb_dims > MODA_TRT_MAX_DIMS) {
            write_message(err, err_len, "moda_trt_context_set_input_shape: bad argument");
            return MODA_TRT_BAD_ARGUMENT;
        }
        nvinfer1::Dims64 shape{};
        shape.nbDims = nb_dims;
        for (int32_t i = 0; i < nb_dims; ++i) {
            shape.d[i] = dims[i];
        }
        if (!context->context->setInputShape(name, shape)) {
            return context->owner->owner->fail(err, err_len,
                                               std::string("setInputShape failed for ") + name);
        }
        return MODA_TRT_OK;
    });
}

int moda_trt_context_tensor_shape(const moda_trt_context* context, const char* name,
                                  int64_t* dims, int32_t* nb_dims, char* err, size_t err_len) {
    return guard(err, err_len, [&]() -> int {
        if (context == nullptr || name == nullptr || dims == nullptr || nb_dims == nullptr) {
            write_message(err, err_len, "moda_trt_context_tensor_shape: null argument");
            return MODA_TRT_BAD_ARGUMENT;
        }
        nvinfer1::Dims64 const shape = context->context->getTensorShape(name);
        if (shape.nbDims < 0 || shape.nbDims > MODA_TRT_MAX_DIMS) {
            return context->owner->owner->fail(err, err_len,
                                               std::string("no shape for tensor ") + name);
        }
        *nb_dims = shape.nbDims;
        for (int32_t i = 0; i < shape.nbDims; ++i) {
            dims[i] = shape.d[i];
        }
        return MODA_TRT_OK;
    });
}

int moda_trt_context_set_tensor_address(moda_trt_context* context, const char* name,
                                        void* address, char* err, size_t err_len) {
    return guard(err, err_len, [&]() -> int {
        if (context == nullptr || name == nullptr || address == nullptr) {
            write_message(err, err_len, "moda_trt_context_set_tensor_address: null argument");
            return MODA_TRT_BAD_ARGUMENT;
        }
        if (!context->context->setTensorAddress(name, address)) {
            return context->owner->owner->fail(
                err, err_len, std::string("setTensorAddress failed for ") + name);
        }
        return MODA_TRT_OK;
    });
}

int moda_trt_context_enqueue(moda_trt_context* context, void* stream, char* err, size_t err_len) {
    return guard(err, err_len, [&]() -> int {
        if (context == nullptr) {
            write_message(err, err_len, "moda_trt_context_enqueue: null context");
            return MODA_TRT_BAD_ARGUMENT;
        }
        if (!context->context->enqueueV3(static_cast<cudaStream_t>(stream))) {
            return context->owner->owner->fail(err, err_len, "enqueueV3 failed");
        }
        return MODA_TRT_OK;
    });
}

}  // extern "C"

// Shared by moda_trt.cpp (runtime) and moda_trt_build.cpp (builder): the logger that keeps the
// last error, message writing and the exception guard of every extern "C" entry point.
#ifndef MODA_TRT_COMMON_H
#define MODA_TRT_COMMON_H

#include "moda_trt.h"

#include <NvInferRuntime.h>

#include <dlfcn.h>

#include <cstdio>
#include <exception>
#include <mutex>
#include <new>
#include <string>

namespace moda_trt_detail {

// Keeps the last message of severity error or worse; TensorRT may log from any thread.
class LastErrorLogger final : public nvinfer1::ILogger {
public:
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
        if (severity > Severity::kERROR || msg == nullptr) {
            return;
        }
        try {
            std::lock_guard<std::mutex> lock(mutex_);
            last_ = msg;
        } catch (...) {
            // A message that cannot be kept is dropped; the failing call still reports.
        }
    }

    std::string last() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return last_;
    }

private:
    mutable std::mutex mutex_;
    std::string last_;
};

inline void write_message(char* buf, size_t len, char const* msg) noexcept {
    if (buf == nullptr || len == 0) {
        return;
    }
    std::snprintf(buf, len, "%s", msg);
}

// Runs `body` (which returns a MODA_TRT_* code), turning exceptions into MODA_TRT_INTERNAL.
// Opens the shared library `name`, or writes why not (naming the library, `what` it is and
// where it comes from) and returns null.
inline void* open_library(char const* name, char const* what, char* err, size_t err_len) {
    void* library = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) {
        char const* why = dlerror();
        std::string msg = std::string("cannot load ") + name + " (" +
                          (why != nullptr ? why : "not found") +
                          "): " + what + " is not installed; on a Jetson it comes with JetPack 6 "
                          "(sudo apt install nvidia-jetpack), elsewhere add TensorRT's lib "
                          "folder to LD_LIBRARY_PATH";
        write_message(err, err_len, msg.c_str());
    }
    return library;
}

// Writes TensorRT's version number (major·10000 + minor·100 + patch, as getInferLibVersion
// returns it) as "major.minor.patch".
inline void write_version(char* buf, size_t len, int32_t v) noexcept {
    char text[32];
    std::snprintf(text, sizeof text, "%d.%d.%d", static_cast<int>(v / 10000),
                  static_cast<int>(v / 100 % 100), static_cast<int>(v % 100));
    write_message(buf, len, text);
}

template <typename Body>
inline int guard(char* err, size_t err_len, Body body) noexcept {
    try {
        return body();
    } catch (std::bad_alloc const&) {
        write_message(err, err_len, "moda_trt: out of memory");
    } catch (std::exception const& e) {
        write_message(err, err_len, e.what());
    } catch (...) {
        write_message(err, err_len, "moda_trt: unknown C++ exception");
    }
    return MODA_TRT_INTERNAL;
}

using CreateRuntimeFn = void* (*)(void*, int32_t);
using VersionFn = int32_t (*)();

}  // namespace moda_trt_detail

#endif  // MODA_TRT_COMMON_H

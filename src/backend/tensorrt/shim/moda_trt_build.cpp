// moda_trt builder: the engine-building half of moda_trt.h over TensorRT 10's IBuilder and the
// ONNX parser. Same rules as moda_trt.cpp: every extern "C" function runs inside `guard`, no
// exception reaches the caller, and both libraries are opened with dlopen so that a program
// linked with the shim starts (and reports) on a machine without TensorRT.

#include "moda_trt.h"
#include "moda_trt_common.h"

#include <NvInfer.h>
#include <NvOnnxParser.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace moda_trt_detail;

namespace {

using CreateBuilderFn = void* (*)(void*, int32_t);
using CreateParserFn = void* (*)(void*, void*, int);

// IProgressMonitor forwarding every event to the C callback.
class ProgressForwarder final : public nvinfer1::IProgressMonitor {
public:
    ProgressForwarder(moda_trt_progress_fn fn, void* user) : fn_(fn), user_(user) {}

    void phaseStart(char const* phaseName, char const* /*parentPhase*/,
                    int32_t nbSteps) noexcept override {
        fn_(user_, MODA_TRT_PHASE_START, phaseName != nullptr ? phaseName : "", 0, nbSteps);
    }

    bool stepComplete(char const* phaseName, int32_t step) noexcept override {
        fn_(user_, MODA_TRT_PHASE_STEP, phaseName != nullptr ? phaseName : "", step, 0);
        return true;
    }

    void phaseFinish(char const* phaseName) noexcept override {
        fn_(user_, MODA_TRT_PHASE_FINISH, phaseName != nullptr ? phaseName : "", 0, 0);
    }

private:
    moda_trt_progress_fn fn_;
    void* user_;
};

// Implicit INT8 from a calibration cache only: TensorRT reads the cache and never asks for a
// batch (getBatch answers "no more data"). The implicit calibrators are deprecated in
// TensorRT 10 (explicit Q/DQ graphs are the primary path); JetPack 6's 10.3 still has them.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
class CacheOnlyCalibrator final : public nvinfer1::IInt8EntropyCalibrator2 {
public:
    CacheOnlyCalibrator(void const* data, size_t len)
        : cache_(static_cast<char const*>(data), static_cast<char const*>(data) + len) {}

    int32_t getBatchSize() const noexcept override { return 1; }

    bool getBatch(void* /*bindings*/[], char const* /*names*/[],
                  int32_t /*nbBindings*/) noexcept override {
        return false;
    }

    void const* readCalibrationCache(std::size_t& length) noexcept override {
        length = cache_.size();
        return cache_.empty() ? nullptr : cache_.data();
    }

    void writeCalibrationCache(void const* /*ptr*/, std::size_t /*length*/) noexcept override {}

private:
    std::vector<char> cache_;
};
#pragma GCC diagnostic pop

template <typename T>
struct Deleter {
    void operator()(T* p) const noexcept { delete p; }
};
template <typename T>
using Owned = std::unique_ptr<T, Deleter<T>>;

bool fill_dims(nvinfer1::Dims64& dims, int32_t nb, int64_t const* values) {
    if (nb < 0 || nb > MODA_TRT_MAX_DIMS) {
        return false;
    }
    dims.nbDims = nb;
    for (int32_t i = 0; i < nb; ++i) {
        dims.d[i] = values[i];
    }
    return true;
}

}  // namespace

struct moda_trt_bytes {
    std::vector<unsigned char> data;
};

struct moda_trt_builder {
    void* nvinfer = nullptr;
    void* parser_library = nullptr;
    CreateParserFn create_parser = nullptr;
    LastErrorLogger logger;
    nvinfer1::IBuilder* builder = nullptr;
    int32_t version = 0;

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

namespace {

moda_trt_bytes* copy_bytes(nvinfer1::IHostMemory const& memory) {
    auto* out = new moda_trt_bytes();
    auto const* begin = static_cast<unsigned char const*>(memory.data());
    out->data.assign(begin, begin + memory.size());
    return out;
}

// Builds under `o`; `network` was parsed already.
int build_network(moda_trt_builder& b, nvinfer1::INetworkDefinition& network,
                  moda_trt_build_options const& o, moda_trt_bytes** engine,
                  moda_trt_bytes** timing_cache, char* err, size_t err_len) {
    Owned<nvinfer1::IBuilderConfig> config(b.builder->createBuilderConfig());
    if (!config) {
        return b.fail(err, err_len, "createBuilderConfig failed");
    }
    bool const strongly = (o.flags & MODA_TRT_BUILD_STRONGLY_TYPED) != 0;
    if (strongly && (o.flags & (MODA_TRT_BUILD_FP16 | MODA_TRT_BUILD_INT8)) != 0) {
        write_message(err, err_len,
                      "a strongly typed network takes its precision from the graph; FP16 and "
                      "INT8 builder flags cannot be combined with it");
        return MODA_TRT_BAD_ARGUMENT;
    }
    if ((o.flags & MODA_TRT_BUILD_FP16) != 0) {
        config->setFlag(nvinfer1::BuilderFlag::kFP16);
    }
    if ((o.flags & MODA_TRT_BUILD_INT8) != 0) {
        config->setFlag(nvinfer1::BuilderFlag::kINT8);
    }
    if ((o.flags & MODA_TRT_BUILD_OBEY_PRECISION) != 0) {
        config->setFlag(nvinfer1::BuilderFlag::kOBEY_PRECISION_CONSTRAINTS);
    }
    if (o.workspace_bytes > 0) {
        config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE,
                                   static_cast<std::size_t>(o.workspace_bytes));
    }
    for (size_t i = 0; i < o.nb_layers; ++i) {
        moda_trt_layer_precision const& keep = o.layers[i];
        if (keep.layer == nullptr || (keep.dtype != 0 && keep.dtype != 1)) {
            write_message(err, err_len, "layer precision: null name or dtype not 0/1");
            return MODA_TRT_BAD_ARGUMENT;
        }
        auto const dtype = static_cast<nvinfer1::DataType>(keep.dtype);
        bool found = false;
        for (int32_t l = 0; l < network.getNbLayers(); ++l) {
            nvinfer1::ILayer* layer = network.getLayer(l);
            if (layer == nullptr || std::strcmp(layer->getName(), keep.layer) != 0) {
                continue;
            }
            found = true;
            layer->setPrecision(dtype);
            for (int32_t k = 0; k < layer->getNbOutputs(); ++k) {
                layer->setOutputType(k, dtype);
            }
        }
        if (!found) {
            std::string msg = std::string("no layer named `") + keep.layer +
                              "` in the parsed network (names are the ONNX node names)";
            write_message(err, err_len, msg.c_str());
            return MODA_TRT_FAILED;
        }
    }
    // Owned by the builder; kept for the calibrator below.
    nvinfer1::IOptimizationProfile* profile = nullptr;
    if (o.nb_profiles > 0) {
        profile = b.builder->createOptimizationProfile();
        if (profile == nullptr) {
            return b.fail(err, err_len, "createOptimizationProfile failed");
        }
        for (size_t i = 0; i < o.nb_profiles; ++i) {
            moda_trt_profile const& p = o.profiles[i];
            nvinfer1::Dims64 lo{};
            nvinfer1::Dims64 mid{};
            nvinfer1::Dims64 hi{};
            if (p.input == nullptr || !fill_dims(lo, p.nb_dims, p.min) ||
                !fill_dims(mid, p.nb_dims, p.opt) || !fill_dims(hi, p.nb_dims, p.max)) {
                write_message(err, err_len, "profile: null input name or bad rank");
                return MODA_TRT_BAD_ARGUMENT;
            }
            using Sel = nvinfer1::OptProfileSelector;
            if (!profile->setDimensions(p.input, Sel::kMIN, lo) ||
                !profile->setDimensions(p.input, Sel::kOPT, mid) ||
                !profile->setDimensions(p.input, Sel::kMAX, hi)) {
                return b.fail(err, err_len, std::string("bad profile for input ") + p.input);
            }
        }
        if (config->addOptimizationProfile(profile) < 0) {
            return b.fail(err, err_len, "addOptimizationProfile refused the profile");
        }
    }
    Owned<nvinfer1::ITimingCache> cache(
        config->createTimingCache(o.timing_cache, o.timing_cache != nullptr ? o.timing_cache_len : 0));
    if (!cache) {
        return b.fail(err, err_len, "the timing cache is not one of this TensorRT");
    }
    if (!config->setTimingCache(*cache, false)) {
        return b.fail(err, err_len, "setTimingCache failed");
    }
    std::unique_ptr<CacheOnlyCalibrator> calibrator;
    if (o.calibration_cache != nullptr && o.calibration_cache_len > 0) {
        calibrator.reset(new CacheOnlyCalibrator(o.calibration_cache, o.calibration_cache_len));
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        config->setInt8Calibrator(calibrator.get());
        // With dynamic inputs TensorRT wants a calibration profile even when the cache
        // answers every scale.
        if (profile != nullptr && !config->setCalibrationProfile(profile)) {
            return b.fail(err, err_len, "setCalibrationProfile refused the profile");
        }
#pragma GCC diagnostic pop
    }
    std::unique_ptr<ProgressForwarder> monitor;
    if (o.progress != nullptr) {
        monitor.reset(new ProgressForwarder(o.progress, o.progress_user));
        config->setProgressMonitor(monitor.get());
    }
    Owned<nvinfer1::IHostMemory> plan(b.builder->buildSerializedNetwork(network, *config));
    if (!plan || plan->size() == 0) {
        return b.fail(err, err_len, "buildSerializedNetwork failed");
    }
    if (timing_cache != nullptr) {
        nvinfer1::ITimingCache const* used = config->getTimingCache();
        Owned<nvinfer1::IHostMemory> blob(used != nullptr ? used->serialize() : nullptr);
        if (!blob) {
            return b.fail(err, err_len, "cannot serialize the timing cache");
        }
        *timing_cache = copy_bytes(*blob);
    }
    if (engine != nullptr) {
        *engine = copy_bytes(*plan);
    }
    return MODA_TRT_OK;
}

}  // namespace

extern "C" {

int moda_trt_builder_create(moda_trt_builder** out, char* err, size_t err_len) {
    return guard(err, err_len, [&]() -> int {
        if (out == nullptr) {
            write_message(err, err_len, "moda_trt_builder_create: null output");
            return MODA_TRT_BAD_ARGUMENT;
        }
        *out = nullptr;
        void* nvinfer = open_library("libnvinfer.so.10", "TensorRT 10", err, err_len);
        if (nvinfer == nullptr) {
            return MODA_TRT_NO_LIBRARY;
        }
        auto create = reinterpret_cast<CreateBuilderFn>(dlsym(nvinfer, "createInferBuilder_INTERNAL"));
        auto version = reinterpret_cast<VersionFn>(dlsym(nvinfer, "getInferLibVersion"));
        if (create == nullptr || version == nullptr) {
            dlclose(nvinfer);
            write_message(err, err_len,
                          "libnvinfer.so.10 lacks createInferBuilder_INTERNAL or "
                          "getInferLibVersion: not a TensorRT 10 library (reinstall JetPack 6)");
            return MODA_TRT_NO_LIBRARY;
        }
        void* parser = open_library("libnvonnxparser.so.10", "TensorRT 10's ONNX parser", err, err_len);
        if (parser == nullptr) {
            dlclose(nvinfer);
            return MODA_TRT_NO_LIBRARY;
        }
        auto create_parser =
            reinterpret_cast<CreateParserFn>(dlsym(parser, "createNvOnnxParser_INTERNAL"));
        if (create_parser == nullptr) {
            dlclose(parser);
            dlclose(nvinfer);
            write_message(err, err_len,
                          "libnvonnxparser.so.10 lacks createNvOnnxParser_INTERNAL: not "
                          "TensorRT 10's ONNX parser (reinstall JetPack 6)");
            return MODA_TRT_NO_LIBRARY;
        }
        auto* b = new moda_trt_builder();
        b->nvinfer = nvinfer;
        b->parser_library = parser;
        b->create_parser = create_parser;
        b->version = version();
        b->builder = static_cast<nvinfer1::IBuilder*>(create(&b->logger, NV_TENSORRT_VERSION));
        if (b->builder == nullptr) {
            int const code = b->fail(err, err_len,
                                     "createInferBuilder failed (library version " +
                                         std::to_string(b->version) + ", shim built for " +
                                         std::to_string(NV_TENSORRT_VERSION) + ")");
            dlclose(parser);
            dlclose(nvinfer);
            delete b;
            return code;
        }
        *out = b;
        return MODA_TRT_OK;
    });
}

void moda_trt_builder_destroy(moda_trt_builder* builder) {
    if (builder == nullptr) {
        return;
    }
    try {
        delete builder->builder;
        if (builder->parser_library != nullptr) {
            dlclose(builder->parser_library);
        }
        if (builder->nvinfer != nullptr) {
            dlclose(builder->nvinfer);
        }
        delete builder;
    } catch (...) {
        // Best effort: nothing may escape into the caller.
    }
}

int moda_trt_builder_version(const moda_trt_builder* builder, char* buf, size_t buf_len) {
    return guard(buf, buf_len, [&]() -> int {
        if (builder == nullptr) {
            write_message(buf, buf_len, "moda_trt_builder_version: null builder");
            return MODA_TRT_BAD_ARGUMENT;
        }
        write_version(buf, buf_len, builder->version);
        return MODA_TRT_OK;
    });
}

int moda_trt_builder_build(moda_trt_builder* builder, const void* onnx, size_t onnx_len,
                           const moda_trt_build_options* options, moda_trt_bytes** engine,
                           moda_trt_bytes** timing_cache, char* err, size_t err_len) {
    return guard(err, err_len, [&]() -> int {
        if (builder == nullptr || onnx == nullptr || options == nullptr ||
            (options->nb_profiles > 0 && options->profiles == nullptr) ||
            (options->nb_layers > 0 && options->layers == nullptr)) {
            write_message(err, err_len, "moda_trt_builder_build: null argument");
            return MODA_TRT_BAD_ARGUMENT;
        }
        if (engine != nullptr) {
            *engine = nullptr;
        }
        if (timing_cache != nullptr) {
            *timing_cache = nullptr;
        }
        uint32_t const network_flags =
            (options->flags & MODA_TRT_BUILD_STRONGLY_TYPED) != 0
                ? 1U << static_cast<uint32_t>(
                      nvinfer1::NetworkDefinitionCreationFlag::kSTRONGLY_TYPED)
                : 0U;
        Owned<nvinfer1::INetworkDefinition> network(
            builder->builder->createNetworkV2(network_flags));
        if (!network) {
            return builder->fail(err, err_len, "createNetworkV2 failed");
        }
        Owned<nvonnxparser::IParser> parser(static_cast<nvonnxparser::IParser*>(
            builder->create_parser(network.get(), &builder->logger, NV_ONNX_PARSER_VERSION)));
        if (!parser) {
            return builder->fail(err, err_len, "createNvOnnxParser failed");
        }
        if (!parser->parse(onnx, onnx_len)) {
            std::string msg = "the ONNX parser refused the graph";
            for (int i = 0; i < parser->getNbErrors(); ++i) {
                nvonnxparser::IParserError const* e = parser->getError(i);
                if (e != nullptr) {
                    msg += i == 0 ? ": " : "; ";
                    msg += e->desc();
                    if (e->nodeName() != nullptr && e->nodeName()[0] != '\0') {
                        msg += std::string(" (node ") + e->nodeName() + ")";
                    }
                }
            }
            write_message(err, err_len, msg.c_str());
            return MODA_TRT_FAILED;
        }
        return build_network(*builder, *network, *options, engine, timing_cache, err, err_len);
    });
}

const void* moda_trt_bytes_data(const moda_trt_bytes* bytes) {
    return bytes != nullptr ? bytes->data.data() : nullptr;
}

size_t moda_trt_bytes_size(const moda_trt_bytes* bytes) {
    return bytes != nullptr ? bytes->data.size() : 0;
}

void moda_trt_bytes_destroy(moda_trt_bytes* bytes) {
    delete bytes;
}

}  // extern "C"

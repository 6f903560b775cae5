// attn_deploy::FusedAttention as a TensorRT IPluginV3 (Core, Build and Runtime capabilities) and its
// IPluginCreatorV3One: name "FusedAttention", version "1", namespace "attn_deploy", one field
// `scale` (float32). The contract is DESIGN.md section 2. The kernel is the Triton one
// (attn_deploy/ops/triton_kernel.py), compiled ahead of time into cubins embedded in this library;
// enqueue() picks the cubin for the device and shapes and launches it on TensorRT's stream
// (fused_attention_launcher.cpp, CUDA driver API).
//
// Two ways in, built as two libraries from this one file (see CMakeLists.txt), because TensorRT's
// IPluginRegistry::loadLibrary refuses a library whose creators are already registered:
//  - libattn_deploy_fused_attention.so exports setLoggerFinder/getCreators, for loadLibrary
//    (trt.get_plugin_registry().load_library, trtexec --dynamicPlugins, build-trt --plugin);
//  - libattn_deploy_fused_attention_static.so (ATTN_DEPLOY_STATIC_REGISTRATION) registers its
//    creator when dlopen'ed, for ctypes.CDLL / Polygraphy --plugins / trtexec --staticPlugins.
#include "fused_attention_kernel.h"

#include <NvInferRuntime.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace attn_deploy
{
namespace
{

using namespace nvinfer1;

constexpr char const* kPluginName = "FusedAttention";
constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "attn_deploy";
constexpr char const* kScaleField = "scale";

ILoggerFinder* gLoggerFinder{nullptr};

void logError(std::string const& message) noexcept
{
    std::string const line = std::string("[attn_deploy::FusedAttention] ") + message;
    ILogger* logger = gLoggerFinder != nullptr ? gLoggerFinder->findLogger() : nullptr;
    if (logger != nullptr)
    {
        logger->log(ILogger::Severity::kERROR, line.c_str());
    }
    else
    {
        std::fprintf(stderr, "%s\n", line.c_str());
    }
}

//! The kernel's dtype for a TensorRT type, if this library has cubins for it.
bool attentionType(DataType type, AttentionDType* out = nullptr) noexcept
{
    AttentionDType dtype{};
    switch (type)
    {
    case DataType::kFLOAT: dtype = AttentionDType::kFloat32; break;
    case DataType::kHALF: dtype = AttentionDType::kFloat16; break;
    case DataType::kBF16: dtype = AttentionDType::kBFloat16; break;
    default: return false;
    }
    if (out != nullptr)
    {
        *out = dtype;
    }
    return fusedAttentionHasDType(dtype);
}

//! What supportsFormatCombination accepts, for error messages.
std::string supportedTypes()
{
    std::string out;
    char const* const names[] = {"float32", "float16", "bfloat16"};
    for (int32_t t = 0; t < 3; ++t)
    {
        if (fusedAttentionHasDType(static_cast<AttentionDType>(t)))
        {
            out += (out.empty() ? "" : "/") + std::string(names[t]);
        }
    }
    return out.empty() ? "no dtype (no cubins embedded)" : out;
}

//! Why these input shapes cannot run, or an empty string. Dimensions < 0 are unknown (build time).
std::string checkShapes(Dims const* dims, int32_t nbInputs)
{
    if (nbInputs != 3 && nbInputs != 4)
    {
        return "expects 3 inputs (Q, K, V) or 4 (Q, K, V, bias), got " + std::to_string(nbInputs);
    }
    for (int32_t i = 0; i < 3; ++i)
    {
        if (dims[i].nbDims != 4)
        {
            return "Q, K and V must be 4-D [B, H, N, d]; input " + std::to_string(i) + " has rank "
                + std::to_string(dims[i].nbDims);
        }
    }
    auto known = [](int64_t a, int64_t b) { return a >= 0 && b >= 0; };
    Dims const& q = dims[0];
    Dims const& k = dims[1];
    Dims const& v = dims[2];
    for (int32_t a = 0; a < 2; ++a)
    {
        if ((known(q.d[a], k.d[a]) && q.d[a] != k.d[a]) || (known(k.d[a], v.d[a]) && k.d[a] != v.d[a]))
        {
            return "Q, K and V must share B and H (no broadcasting of Q/K/V)";
        }
    }
    if (known(q.d[3], k.d[3]) && q.d[3] != k.d[3])
    {
        return "Q and K must share dk";
    }
    if (known(k.d[2], v.d[2]) && k.d[2] != v.d[2])
    {
        return "K and V must share Nk";
    }
    if (q.d[3] >= 0 && v.d[3] >= 0)
    {
        if (char const* reason = fusedAttentionUnsupportedReason(static_cast<int32_t>(q.d[3]), static_cast<int32_t>(v.d[3])))
        {
            return reason;
        }
    }
    if (nbInputs == 4)
    {
        Dims const& bias = dims[3];
        if (bias.nbDims < 0 || bias.nbDims > 4)
        {
            return "bias must have rank 0 to 4 (broadcastable to [B, H, Nq, Nk])";
        }
        int64_t const full[4] = {q.d[0], q.d[1], q.d[2], k.d[2]};
        for (int32_t i = 0; i < bias.nbDims; ++i)
        {
            int64_t const want = full[4 - bias.nbDims + i];
            if (known(bias.d[i], want) && bias.d[i] != 1 && bias.d[i] != want)
            {
                return "bias does not broadcast to [B, H, Nq, Nk]";
            }
        }
    }
    return {};
}

class FusedAttentionPlugin final : public IPluginV3,
                                   public IPluginV3OneCore,
                                   public IPluginV3OneBuild,
                                   public IPluginV3OneRuntime
{
public:
    explicit FusedAttentionPlugin(float scale) noexcept
        : mScale(scale)
    {
        mSerialField = PluginField(kScaleField, &mScale, PluginFieldType::kFLOAT32, 1);
        mSerialFields.nbFields = 1;
        mSerialFields.fields = &mSerialField;
    }

    FusedAttentionPlugin(FusedAttentionPlugin const& other) noexcept
        : FusedAttentionPlugin(other.mScale)
    {
        mNbInputs = other.mNbInputs;
    }

    FusedAttentionPlugin& operator=(FusedAttentionPlugin const&) = delete;
    ~FusedAttentionPlugin() override = default;

    // IPluginV3
    IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override
    {
        switch (type)
        {
        case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
        case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
        case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
        }
        return nullptr;
    }

    IPluginV3* clone() noexcept override
    {
        try
        {
            return new FusedAttentionPlugin(*this);
        }
        catch (std::exception const& e)
        {
            logError(std::string("clone failed: ") + e.what());
        }
        return nullptr;
    }

    // IPluginV3OneCore
    AsciiChar const* getPluginName() const noexcept override
    {
        return kPluginName;
    }

    AsciiChar const* getPluginVersion() const noexcept override
    {
        return kPluginVersion;
    }

    AsciiChar const* getPluginNamespace() const noexcept override
    {
        return kPluginNamespace;
    }

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override
    {
        return 1;
    }

    int32_t getOutputDataTypes(
        DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept override
    {
        if (nbOutputs != 1 || nbInputs < 3 || !attentionType(inputTypes[0]))
        {
            logError("output type: expects 3 or 4 inputs of one dtype (" + supportedTypes() + ") and 1 output");
            return 1;
        }
        outputTypes[0] = inputTypes[0];
        return 0;
    }

    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
        int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& /*exprBuilder*/) noexcept override
    {
        if (nbOutputs != 1 || (nbInputs != 3 && nbInputs != 4) || inputs[0].nbDims != 4 || inputs[2].nbDims != 4)
        {
            logError("output shape: expects Q [B,H,Nq,dk], K [B,H,Nk,dk], V [B,H,Nk,dv] (+ optional bias)");
            return 1;
        }
        outputs[0] = inputs[0];             // [B, H, Nq, .]
        outputs[0].d[3] = inputs[2].d[3];   // dv
        return 0;
    }

    bool supportsFormatCombination(
        int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept override
    {
        if ((nbInputs != 3 && nbInputs != 4) || nbOutputs != 1 || pos < 0 || pos >= nbInputs + nbOutputs)
        {
            return false;
        }
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != TensorFormat::kLINEAR)
        {
            return false;
        }
        // Linear (row-major, contiguous) tensors of one dtype for Q, K, V, bias and O: a dtype the
        // embedded cubins were compiled for (float32, float16, bfloat16 if built); float32 softmax
        // and accumulation whatever the dtype.
        return pos == 0 ? attentionType(desc.type) : desc.type == inOut[0].desc.type;
    }

    int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/,
        int32_t /*nbOutputs*/) noexcept override
    {
        try
        {
            std::vector<Dims> maxDims;
            for (int32_t i = 0; i < nbInputs; ++i)
            {
                maxDims.push_back(in[i].desc.dims);
            }
            std::string reason = checkShapes(maxDims.data(), nbInputs);
            if (reason.empty())
            {
                for (int32_t i = 0; i < nbInputs; ++i)
                {
                    maxDims[i] = in[i].max;  // the profile's largest shapes bound dk and dv
                }
                reason = checkShapes(maxDims.data(), nbInputs);
            }
            if (!reason.empty())
            {
                logError(reason);
                return 1;
            }
            mNbInputs = nbInputs;
            return 0;
        }
        catch (std::exception const& e)
        {
            logError(std::string("configurePlugin: ") + e.what());
        }
        return 1;
    }

    size_t getWorkspaceSize(DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
        DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept override
    {
        return 0;  // shared memory and registers only
    }

    char const* getMetadataString() noexcept override
    {
        mMetadata = "scale=" + std::to_string(mScale);
        return mMetadata.c_str();
    }

    // IPluginV3OneRuntime
    int32_t onShapeChange(
        PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t /*nbOutputs*/) noexcept override
    {
        try
        {
            std::vector<Dims> dims;
            for (int32_t i = 0; i < nbInputs; ++i)
            {
                dims.push_back(in[i].dims);
            }
            std::string reason = checkShapes(dims.data(), nbInputs);
            AttentionDType dtype{};
            if (reason.empty() && !attentionType(in[0].type, &dtype))
            {
                reason = "Q/K/V must be " + supportedTypes();
            }
            if (reason.empty())
            {
                // Load the cubins enqueue will launch now, not inside enqueue (which may run under graph capture).
                reason = fusedAttentionPrepare(dtype, nbInputs == 4, static_cast<int32_t>(in[0].dims.d[3]),
                    static_cast<int32_t>(in[2].dims.d[3]));
            }
            if (!reason.empty())
            {
                logError(reason);
                return 1;
            }
            mNbInputs = nbInputs;
            return 0;
        }
        catch (std::exception const& e)
        {
            logError(std::string("onShapeChange: ") + e.what());
        }
        return 1;
    }

    int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
        void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept override
    {
        Dims const& q = inputDesc[0].dims;
        Dims const& v = inputDesc[2].dims;
        AttentionParams params;
        if (!attentionType(inputDesc[0].type, &params.dtype))
        {
            logError("enqueue: Q/K/V must be " + supportedTypes());
            return 1;
        }
        params.q = inputs[0];
        params.k = inputs[1];
        params.v = inputs[2];
        params.out = outputs[0];
        params.batch = q.d[0];
        params.heads = q.d[1];
        params.nq = q.d[2];
        params.nk = inputDesc[1].dims.d[2];
        params.dk = static_cast<int32_t>(q.d[3]);
        params.dv = static_cast<int32_t>(v.d[3]);
        params.scale = mScale;
        if (mNbInputs == 4)
        {
            params.bias = inputs[3];
            if (!setBroadcastBiasStrides(params, inputDesc[3].dims.nbDims, inputDesc[3].dims.d))
            {
                logError("bias does not broadcast to [B, H, Nq, Nk]");
                return 1;
            }
        }
        std::string const error = fusedAttentionForward(params, reinterpret_cast<CUstream>(stream));
        if (!error.empty())
        {
            logError(error);
            return 1;
        }
        return 0;
    }

    IPluginV3* attachToContext(IPluginResourceContext* /*context*/) noexcept override
    {
        return clone();  // no per-context resources
    }

    PluginFieldCollection const* getFieldsToSerialize() noexcept override
    {
        return &mSerialFields;
    }

private:
    float mScale;
    // enqueue() is not told how many inputs there are: configurePlugin() and onShapeChange() (which
    // TensorRT calls before the first enqueue of a context) record it; 4 means a bias is present.
    int32_t mNbInputs{3};
    PluginField mSerialField;
    PluginFieldCollection mSerialFields{};
    std::string mMetadata;
};

class FusedAttentionCreator final : public IPluginCreatorV3One
{
public:
    FusedAttentionCreator()
    {
        mFields.emplace_back(kScaleField, nullptr, PluginFieldType::kFLOAT32, 1);
        mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
        mFieldCollection.fields = mFields.data();
    }

    IPluginV3* createPlugin(AsciiChar const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept override
    {
        try
        {
            bool found = false;
            float scale = 1.0F;
            for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
            {
                PluginField const& field = fc->fields[i];
                if (field.name == nullptr || std::strcmp(field.name, kScaleField) != 0 || field.data == nullptr || field.length < 1)
                {
                    continue;  // plugin_namespace / plugin_version and unknown fields are not ours
                }
                if (field.type == PluginFieldType::kFLOAT32)
                {
                    scale = *static_cast<float const*>(field.data);
                }
                else if (field.type == PluginFieldType::kFLOAT64)
                {
                    scale = static_cast<float>(*static_cast<double const*>(field.data));
                }
                else
                {
                    logError("field 'scale' must be float32 (or float64)");
                    return nullptr;
                }
                found = true;
            }
            if (!found)
            {
                logError("missing required field 'scale' (the FusedAttention node's `scale` attribute)");
                return nullptr;
            }
            return new FusedAttentionPlugin(scale);
        }
        catch (std::exception const& e)
        {
            logError(std::string("createPlugin: ") + e.what());
        }
        return nullptr;
    }

    PluginFieldCollection const* getFieldNames() noexcept override
    {
        return &mFieldCollection;
    }

    AsciiChar const* getPluginName() const noexcept override
    {
        return kPluginName;
    }

    AsciiChar const* getPluginVersion() const noexcept override
    {
        return kPluginVersion;
    }

    AsciiChar const* getPluginNamespace() const noexcept override
    {
        return kPluginNamespace;
    }

private:
    std::vector<PluginField> mFields;
    PluginFieldCollection mFieldCollection{};
};

FusedAttentionCreator& creatorInstance()
{
    static FusedAttentionCreator creator;
    return creator;
}

} // namespace
} // namespace attn_deploy

#if ATTN_DEPLOY_STATIC_REGISTRATION
namespace
{
//! Registers the creator when the library is dlopen'ed (what REGISTER_TENSORRT_PLUGIN does, with the
//! namespace passed explicitly).
struct StaticRegistration
{
    StaticRegistration()
    {
        getPluginRegistry()->registerCreator(attn_deploy::creatorInstance(), attn_deploy::kPluginNamespace);
    }
};
StaticRegistration const gStaticRegistration{};
} // namespace
#else
// TENSORRTAPI exports only inside TensorRT's own build, so the entry points say it themselves.
#define ATTN_DEPLOY_EXPORT __attribute__((visibility("default")))

extern "C" ATTN_DEPLOY_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    attn_deploy::gLoggerFinder = finder;
}

extern "C" ATTN_DEPLOY_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&attn_deploy::creatorInstance()};
    nbCreators = 1;
    return creators;
}
#endif

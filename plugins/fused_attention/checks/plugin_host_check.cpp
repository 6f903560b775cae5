// Loads the plugin library the way IPluginRegistry::loadLibrary does (dlopen + getCreators) and
// drives the creator and plugin through TensorRT's interfaces, without libnvinfer or a GPU.
// Compiled and run by tests/trt_plugin/test_compile.py wherever TensorRT headers exist.
#include <NvInferRuntime.h>

#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

using namespace nvinfer1;

namespace
{

int gFailures = 0;

void check(bool ok, char const* what)
{
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    gFailures += ok ? 0 : 1;
}

Dims dims4(int64_t a, int64_t b, int64_t c, int64_t d)
{
    Dims x{};
    x.nbDims = 4;
    x.d[0] = a;
    x.d[1] = b;
    x.d[2] = c;
    x.d[3] = d;
    return x;
}

DynamicPluginTensorDesc desc(Dims const& d, DataType type = DataType::kFLOAT, TensorFormat format = TensorFormat::kLINEAR)
{
    DynamicPluginTensorDesc x{};
    x.desc.dims = d;
    x.desc.type = type;
    x.desc.format = format;
    x.min = d;
    x.opt = d;
    x.max = d;
    return x;
}

float scaleOf(IPluginV3OneRuntime* runtime)
{
    PluginFieldCollection const* fc = runtime->getFieldsToSerialize();
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
    {
        if (std::strcmp(fc->fields[i].name, "scale") == 0 && fc->fields[i].type == PluginFieldType::kFLOAT32)
        {
            return *static_cast<float const*>(fc->fields[i].data);
        }
    }
    return -1.0F;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2)
    {
        std::fprintf(stderr, "usage: plugin_host_check LIBRARY\n");
        return 2;
    }
    void* handle = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr)
    {
        std::fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(handle, "getCreators"));
    check(getCreators != nullptr, "exports getCreators");
    check(dlsym(handle, "setLoggerFinder") != nullptr, "exports setLoggerFinder");
    // The embedded cubins' table says which dtypes the plugin must accept (the ones it has cubins for).
    using Table = char const* (*)();
    auto table = reinterpret_cast<Table>(dlsym(handle, "attn_deploy_fused_attention_cubin_table"));
    check(table != nullptr, "exports attn_deploy_fused_attention_cubin_table");
    std::string const rows = table != nullptr ? table() : "";
    auto embedded = [&rows](char const* dtype) { return rows.find(std::string("\"dtype\": \"") + dtype + "\"") != std::string::npos; };
    bool const hasF32 = embedded("fp32");
    bool const hasF16 = embedded("fp16");
    bool const hasBF16 = embedded("bf16");
    check(hasF32 || hasF16 || hasBF16, "cubins embedded");
    if (getCreators == nullptr)
    {
        return 1;
    }
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators(n);
    check(n == 1 && creators != nullptr && creators[0] != nullptr, "one creator");
    InterfaceInfo const info = creators[0]->getInterfaceInfo();
    check(std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") == 0 && info.major == 1, "creator is IPluginCreatorV3One 1.x");
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    check(std::strcmp(creator->getPluginName(), "FusedAttention") == 0, "name FusedAttention");
    check(std::strcmp(creator->getPluginVersion(), "1") == 0, "version 1");
    check(std::strcmp(creator->getPluginNamespace(), "attn_deploy") == 0, "namespace attn_deploy");
    PluginFieldCollection const* names = creator->getFieldNames();
    check(names != nullptr && names->nbFields == 1 && std::strcmp(names->fields[0].name, "scale") == 0
            && names->fields[0].type == PluginFieldType::kFLOAT32,
        "field scale: float32");

    PluginFieldCollection empty{};
    check(creator->createPlugin("fa", &empty, TensorRTPhase::kBUILD) == nullptr, "no scale: createPlugin refuses");
    float const scale = 0.125F;
    char const ns[] = "attn_deploy";
    PluginField fields[2] = {PluginField("plugin_namespace", ns, PluginFieldType::kCHAR, sizeof(ns)),
        PluginField("scale", &scale, PluginFieldType::kFLOAT32, 1)};
    PluginFieldCollection fc{2, fields};
    IPluginV3* plugin = creator->createPlugin("fa", &fc, TensorRTPhase::kBUILD);
    check(plugin != nullptr, "createPlugin with scale (and the parser's plugin_namespace field)");
    if (plugin == nullptr)
    {
        return 1;
    }
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    check(core != nullptr && build != nullptr && runtime != nullptr, "core, build and runtime capabilities");
    check(std::strcmp(core->getPluginName(), "FusedAttention") == 0 && std::strcmp(core->getPluginNamespace(), "attn_deploy") == 0,
        "core: name and namespace");
    check(std::strcmp(build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0
            && std::strcmp(runtime->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME") == 0,
        "capability interface kinds");
    check(build->getNbOutputs() == 1, "one output");
    check(build->getWorkspaceSize(nullptr, 0, nullptr, 0) == 0, "no workspace");

    DataType in3[3] = {DataType::kHALF, DataType::kHALF, DataType::kHALF};
    DataType outType = DataType::kFLOAT;
    check((build->getOutputDataTypes(&outType, 1, in3, 3) == 0 && outType == DataType::kHALF) == hasF16,
        "fp16 in, fp16 out (where fp16 cubins are embedded)");

    // SAGAN: Q [1,1,N,32], K [1,1,N,32], V [1,1,N,256] -> O [1,1,N,256]
    DynamicPluginTensorDesc io[5] = {desc(dims4(1, 1, 300, 32)), desc(dims4(1, 1, 300, 32)), desc(dims4(1, 1, 300, 256)),
        desc(dims4(1, 1, 300, 256)), desc(dims4(1, 1, 300, 256))};
    check(build->supportsFormatCombination(0, io, 3, 1) == hasF32, "fp32 linear Q accepted iff fp32 cubins are embedded");
    io[0].desc.type = DataType::kBF16;
    check(build->supportsFormatCombination(0, io, 3, 1) == hasBF16, "bf16 linear Q accepted iff bf16 cubins are embedded");
    io[0].desc.type = DataType::kHALF;
    check(build->supportsFormatCombination(0, io, 3, 1) == hasF16, "fp16 linear Q accepted iff fp16 cubins are embedded");
    check(!build->supportsFormatCombination(1, io, 3, 1), "K's type must follow Q's");
    io[1].desc.type = DataType::kHALF;
    check(build->supportsFormatCombination(1, io, 3, 1), "fp16 K after fp16 Q");
    io[0].desc.type = DataType::kINT8;
    check(!build->supportsFormatCombination(0, io, 3, 1), "int8 refused");
    io[0].desc.type = DataType::kFLOAT;
    io[0].desc.format = TensorFormat::kCHW32;
    check(!build->supportsFormatCombination(0, io, 3, 1), "non-linear format refused");
    check(!build->supportsFormatCombination(0, io, 2, 1), "2 inputs refused");

    DynamicPluginTensorDesc ok[4] = {desc(dims4(1, 1, 300, 32)), desc(dims4(1, 1, 300, 32)), desc(dims4(1, 1, 300, 256)),
        desc(dims4(1, 1, 1, 300))};
    DynamicPluginTensorDesc out = desc(dims4(1, 1, 300, 256));
    check(build->configurePlugin(ok, 3, &out, 1) == 0, "configure SAGAN dk=32 dv=256");
    check(build->configurePlugin(ok, 4, &out, 1) == 0, "configure with a [1,1,1,Nk] bias");
    DynamicPluginTensorDesc scalarBias[4] = {ok[0], ok[1], ok[2], ok[3]};
    scalarBias[3].desc.dims.nbDims = 0;
    scalarBias[3].min = scalarBias[3].opt = scalarBias[3].max = scalarBias[3].desc.dims;
    check(build->configurePlugin(scalarBias, 4, &out, 1) == 0, "configure with a scalar bias (finalize's zero bias)");
    DynamicPluginTensorDesc bad[4] = {ok[0], ok[1], ok[2], ok[3]};
    DynamicPluginTensorDesc sagan2048[3] = {ok[0], ok[1], desc(dims4(1, 1, 300, 2048))};
    sagan2048[0] = sagan2048[1] = desc(dims4(1, 1, 300, 256));
    DynamicPluginTensorDesc out2048 = desc(dims4(1, 1, 300, 2048));
    check(build->configurePlugin(sagan2048, 3, &out2048, 1) == 0, "configure SAGAN C=2048: dk=256 dv=2048");
    DynamicPluginTensorDesc wide[3] = {desc(dims4(2, 4, 50, 600)), desc(dims4(2, 4, 70, 600)), desc(dims4(2, 4, 70, 40))};
    check(build->configurePlugin(wide, 3, &out, 1) == 0, "configure dk=600 (chunked) dv=40");
    bad[2] = desc(dims4(1, 1, 300, 0));
    check(build->configurePlugin(bad, 3, &out, 1) != 0, "dv=0 refused at configure");
    bad[2] = ok[2];
    bad[1] = desc(dims4(1, 1, 300, 16));
    check(build->configurePlugin(bad, 3, &out, 1) != 0, "dk mismatch refused");
    bad[1] = ok[1];
    bad[3] = desc(dims4(1, 1, 7, 300));
    check(build->configurePlugin(bad, 4, &out, 1) != 0, "non-broadcastable bias refused");
    bad[3] = ok[3];
    bad[2].max.d[3] = 4096;  // a profile whose dv grows to 4096: dv is split across programs, no limit
    check(build->configurePlugin(bad, 3, &out, 1) == 0, "profile max dv=4096 accepted");

    // getOutputShapes only rewires the expressions: [B,H,Nq] of Q and dv of V.
    IDimensionExpr const* tokens[12];
    DimsExprs exprs[3];
    for (int i = 0; i < 3; ++i)
    {
        exprs[i].nbDims = 4;
        for (int j = 0; j < 4; ++j)
        {
            tokens[i * 4 + j] = reinterpret_cast<IDimensionExpr const*>(static_cast<uintptr_t>(0x1000 + 16 * (i * 4 + j)));
            exprs[i].d[j] = tokens[i * 4 + j];
        }
    }
    DimsExprs outExpr{};
    alignas(16) unsigned char unusedBuilder[64] = {};
    check(build->getOutputShapes(exprs, 3, nullptr, 0, &outExpr, 1, *reinterpret_cast<IExprBuilder*>(unusedBuilder)) == 0
            && outExpr.nbDims == 4 && outExpr.d[0] == tokens[0] && outExpr.d[1] == tokens[1] && outExpr.d[2] == tokens[2]
            && outExpr.d[3] == tokens[11],
        "output shape [B, H, Nq, dv]");

    PluginTensorDesc rt[4] = {ok[0].desc, ok[1].desc, ok[2].desc, ok[3].desc};
    for (PluginTensorDesc& d : rt)
    {
        d.type = hasF16 ? DataType::kHALF : (hasF32 ? DataType::kFLOAT : DataType::kBF16);  // a dtype with cubins
    }
    check(runtime->onShapeChange(rt, 4, &out.desc, 1) == 0, "onShapeChange with bias");
    if (!hasBF16)
    {
        PluginTensorDesc bf16[4] = {rt[0], rt[1], rt[2], rt[3]};
        for (PluginTensorDesc& d : bf16)
        {
            d.type = DataType::kBF16;
        }
        check(runtime->onShapeChange(bf16, 4, &out.desc, 1) != 0, "onShapeChange: a dtype without cubins refused");
    }
    rt[2].dims.d[2] = 299;
    check(runtime->onShapeChange(rt, 4, &out.desc, 1) != 0, "onShapeChange: Nk mismatch refused");
    check(std::abs(scaleOf(runtime) - scale) < 1e-9F, "serialises scale");

    // Round trip as at deserialisation: the serialised fields recreate an equal plugin.
    IPluginV3* restored = creator->createPlugin("fa", runtime->getFieldsToSerialize(), TensorRTPhase::kRUNTIME);
    check(restored != nullptr
            && std::abs(scaleOf(static_cast<IPluginV3OneRuntime*>(restored->getCapabilityInterface(PluginCapabilityType::kRUNTIME))) - scale) < 1e-9F,
        "recreated from serialised fields");
    IPluginV3* cloned = plugin->clone();
    check(cloned != nullptr
            && std::abs(scaleOf(static_cast<IPluginV3OneRuntime*>(cloned->getCapabilityInterface(PluginCapabilityType::kRUNTIME))) - scale) < 1e-9F,
        "clone keeps scale");
    IPluginV3* attached = runtime->attachToContext(nullptr);
    check(attached != nullptr && attached != plugin, "attachToContext clones");

    // enqueue's argument guard fails cleanly (no device memory is touched).
    void const* noInputs[4] = {nullptr, nullptr, nullptr, nullptr};
    void* noOutputs[1] = {nullptr};
    check(runtime->enqueue(rt, &out.desc, noInputs, noOutputs, nullptr, nullptr) != 0, "enqueue with null buffers reports an error");

    delete attached;
    delete cloned;
    delete restored;
    delete plugin;
    std::printf("%d failure(s)\n", gFailures);
    return gFailures == 0 ? 0 : 1;
}

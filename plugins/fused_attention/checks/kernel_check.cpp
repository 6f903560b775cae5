// The kernel library without TensorRT: bias strides, cubin selection and the embedded table on any
// machine; `run` executes the embedded cubins on the current GPU against a float64 CPU reference.
//
//   kernel_check strides B H Nq Nk [d0 [d1 [d2 [d3]]]]  -> "sb sh si sj" or "reject" (no dims: scalar bias)
//   kernel_check select < queries    one "ARCH fp16|bf16|fp32 BIAS(0|1) DK DV ALIGNED(0|1) MAXSHARED" a line -> the chosen
//                                    variant's key (or "none") a line
//   kernel_check table                                    -> the embedded images' table (JSON)
//   kernel_check run [DEVICE]                             -> GPU: one line per case with its max relative error
//                                                            (skipped where this build has no cubin for it);
//                                                            exit 1 if any case is out of tolerance or none ran
#include "cuda_driver.h"
#include "fused_attention_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace
{

using attn_deploy::AttentionDType;

int strides(int argc, char** argv)
{
    if (argc < 6 || argc > 10)
    {
        std::fprintf(stderr, "usage: strides B H Nq Nk dims...\n");
        return 2;
    }
    attn_deploy::AttentionParams p;
    p.batch = std::atoll(argv[2]);
    p.heads = std::atoll(argv[3]);
    p.nq = std::atoll(argv[4]);
    p.nk = std::atoll(argv[5]);
    int64_t dims[4] = {0, 0, 0, 0};
    int const rank = argc - 6;
    for (int i = 0; i < rank; ++i)
    {
        dims[i] = std::atoll(argv[6 + i]);
    }
    if (!attn_deploy::setBroadcastBiasStrides(p, rank, dims))
    {
        std::printf("reject\n");
        return 0;
    }
    std::printf("%lld %lld %lld %lld\n", static_cast<long long>(p.biasStride[0]), static_cast<long long>(p.biasStride[1]),
        static_cast<long long>(p.biasStride[2]), static_cast<long long>(p.biasStride[3]));
    return 0;
}

bool parseDType(char const* name, AttentionDType& dtype)
{
    if (std::strcmp(name, "fp32") == 0)
    {
        dtype = AttentionDType::kFloat32;
    }
    else if (std::strcmp(name, "fp16") == 0)
    {
        dtype = AttentionDType::kFloat16;
    }
    else if (std::strcmp(name, "bf16") == 0)
    {
        dtype = AttentionDType::kBFloat16;
    }
    else
    {
        return false;
    }
    return true;
}

//! One query "ARCH DTYPE BIAS DK DV ALIGNED MAXSHARED" per line on stdin; one key (or "none") per line on stdout.
int select()
{
    int maxShared = 0;
    int arch = 0;
    char dtypeName[8] = {};
    int bias = 0;
    int dk = 0;
    int dv = 0;
    int aligned = 0;
    while (std::scanf("%d %7s %d %d %d %d %d", &arch, dtypeName, &bias, &dk, &dv, &aligned, &maxShared) == 7)
    {
        AttentionDType dtype{};
        if (!parseDType(dtypeName, dtype))
        {
            std::fprintf(stderr, "select: dtype %s is not fp16, bf16 or fp32\n", dtypeName);
            return 2;
        }
        int32_t const i = attn_deploy::selectCubin(arch, dtype, bias != 0, dk, dv, aligned != 0, maxShared);
        std::printf("%s\n", i < 0 ? "none" : attn_deploy::kCubinImages[i].key);
    }
    return 0;
}

// Host conversions (round to nearest even), so the check needs no CUDA headers beyond cuda.h.
uint16_t toHalf(float f)
{
    uint32_t x;
    std::memcpy(&x, &f, 4);
    uint32_t const sign = (x >> 16) & 0x8000U;
    int32_t const exp = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
    uint32_t mant = x & 0x7fffffU;
    if (((x >> 23) & 0xff) == 0xff)
    {
        return static_cast<uint16_t>(sign | 0x7c00U | (mant != 0 ? 0x200U : 0U));
    }
    if (exp >= 31)
    {
        return static_cast<uint16_t>(sign | 0x7c00U);
    }
    if (exp <= 0)
    {
        if (exp < -10)
        {
            return static_cast<uint16_t>(sign);
        }
        mant |= 0x800000U;
        uint32_t const shift = static_cast<uint32_t>(14 - exp);
        uint32_t half = mant >> shift;
        uint32_t const rest = mant & ((1U << shift) - 1);
        uint32_t const mid = 1U << (shift - 1);
        if (rest > mid || (rest == mid && (half & 1U)))
        {
            ++half;
        }
        return static_cast<uint16_t>(sign | half);
    }
    uint32_t half = (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
    uint32_t const rest = mant & 0x1fffU;
    if (rest > 0x1000U || (rest == 0x1000U && (half & 1U)))
    {
        ++half;  // may carry into the exponent: still correct, up to infinity
    }
    return static_cast<uint16_t>(sign | half);
}

float fromHalf(uint16_t h)
{
    uint32_t const sign = static_cast<uint32_t>(h & 0x8000U) << 16;
    int32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ffU;
    uint32_t x;
    if (exp == 0x1f)
    {
        x = sign | 0x7f800000U | (mant << 13);
    }
    else if (exp == 0)
    {
        if (mant == 0)
        {
            x = sign;
        }
        else
        {
            exp = 1;
            while ((mant & 0x400U) == 0)
            {
                mant <<= 1;
                --exp;
            }
            x = sign | (static_cast<uint32_t>(exp - 15 + 127) << 23) | ((mant & 0x3ffU) << 13);
        }
    }
    else
    {
        x = sign | (static_cast<uint32_t>(exp - 15 + 127) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

uint16_t toBf16(float f)
{
    uint32_t x;
    std::memcpy(&x, &f, 4);
    if (std::isnan(f))
    {
        return static_cast<uint16_t>((x >> 16) | 0x40U);
    }
    return static_cast<uint16_t>((x + 0x7fffU + ((x >> 16) & 1U)) >> 16);
}

float fromBf16(uint16_t b)
{
    uint32_t const x = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

struct Case
{
    char const* name;
    int64_t b, h, nq, nk;
    int32_t dk, dv;
    std::vector<int64_t> biasShape;  // empty: no bias
    bool hasBias;
    int32_t maskedRows;              // the first rows' bias is all -inf (their output must be NaN)
};

//! Host tensor in the device dtype: bytes to upload and the rounded values the reference uses.
struct HostTensor
{
    std::vector<unsigned char> bytes;
    std::vector<double> values;
};

HostTensor makeTensor(std::vector<float> const& data, AttentionDType dtype)
{
    HostTensor t;
    size_t const elem = dtype == AttentionDType::kFloat32 ? 4 : 2;
    t.bytes.resize(data.size() * elem);
    t.values.resize(data.size());
    for (size_t i = 0; i < data.size(); ++i)
    {
        if (dtype == AttentionDType::kFloat32)
        {
            std::memcpy(&t.bytes[i * 4], &data[i], 4);
            t.values[i] = data[i];
        }
        else
        {
            uint16_t const h = dtype == AttentionDType::kFloat16 ? toHalf(data[i]) : toBf16(data[i]);
            std::memcpy(&t.bytes[i * 2], &h, 2);
            t.values[i] = dtype == AttentionDType::kFloat16 ? fromHalf(h) : fromBf16(h);
        }
    }
    return t;
}

std::vector<float> randn(size_t n, std::mt19937& gen)
{
    std::normal_distribution<float> dist(0.0F, 1.0F);
    std::vector<float> out(n);
    for (float& x : out)
    {
        x = dist(gen);
    }
    return out;
}

struct Device
{
    attn_deploy::CudaDriver const* cu{nullptr};
    std::vector<CUdeviceptr> owned;

    CUdeviceptr upload(std::vector<unsigned char> const& bytes)
    {
        CUdeviceptr ptr = 0;
        if (cu->memAlloc(&ptr, std::max<size_t>(bytes.size(), 16)) != CUDA_SUCCESS
            || cu->memcpyHtoD(ptr, bytes.data(), bytes.size()) != CUDA_SUCCESS)
        {
            std::fprintf(stderr, "device allocation or copy failed\n");
            std::exit(2);
        }
        owned.push_back(ptr);
        return ptr;
    }

    ~Device()
    {
        for (CUdeviceptr p : owned)
        {
            cu->memFree(p);
        }
    }
};

//! Runs one case; returns the max relative error (max |got - ref| / max |ref| over rows that are not masked),
//! or infinity if a masked row is not NaN.
double runCase(Case const& c, AttentionDType dtype, Device& dev)
{
    std::mt19937 gen(1234);
    size_t const nQ = c.b * c.h * c.nq * c.dk;
    size_t const nK = c.b * c.h * c.nk * c.dk;
    size_t const nV = c.b * c.h * c.nk * c.dv;
    size_t const nO = c.b * c.h * c.nq * c.dv;
    HostTensor const q = makeTensor(randn(nQ, gen), dtype);
    HostTensor const k = makeTensor(randn(nK, gen), dtype);
    HostTensor const v = makeTensor(randn(nV, gen), dtype);
    attn_deploy::AttentionParams p;
    p.batch = c.b;
    p.heads = c.h;
    p.nq = c.nq;
    p.nk = c.nk;
    p.dk = c.dk;
    p.dv = c.dv;
    p.dtype = dtype;
    p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.dk)));
    HostTensor bias;
    if (c.hasBias)
    {
        size_t n = 1;
        for (int64_t d : c.biasShape)
        {
            n *= static_cast<size_t>(d);
        }
        std::vector<float> raw = randn(n, gen);
        int64_t const nkBias = c.biasShape.empty() ? 1 : c.biasShape.back();
        for (int32_t r = 0; r < c.maskedRows; ++r)  // bias shape [..., Nq, Nk]: row r of every leading index
        {
            for (size_t base = 0; base < n; base += static_cast<size_t>(c.nq * nkBias))
            {
                for (int64_t j = 0; j < nkBias; ++j)
                {
                    raw[base + r * nkBias + j] = -std::numeric_limits<float>::infinity();
                }
            }
        }
        bias = makeTensor(raw, dtype);
        if (!attn_deploy::setBroadcastBiasStrides(p, static_cast<int32_t>(c.biasShape.size()), c.biasShape.data()))
        {
            std::fprintf(stderr, "%s: bias does not broadcast\n", c.name);
            std::exit(2);
        }
    }
    size_t const elem = dtype == AttentionDType::kFloat32 ? 4 : 2;
    p.q = reinterpret_cast<void const*>(dev.upload(q.bytes));
    p.k = reinterpret_cast<void const*>(dev.upload(k.bytes));
    p.v = reinterpret_cast<void const*>(dev.upload(v.bytes));
    p.bias = c.hasBias ? reinterpret_cast<void const*>(dev.upload(bias.bytes)) : nullptr;
    p.out = reinterpret_cast<void*>(dev.upload(std::vector<unsigned char>(nO * elem)));
    std::string const error = attn_deploy::fusedAttentionForward(p, nullptr);
    CUresult const sync = dev.cu->ctxSynchronize();
    if (!error.empty() || sync != CUDA_SUCCESS)
    {
        std::fprintf(stderr, "%s: %s\n", c.name, error.empty() ? dev.cu->describe(sync, "kernel").c_str() : error.c_str());
        return std::numeric_limits<double>::infinity();
    }
    std::vector<unsigned char> outBytes(nO * elem);
    dev.cu->memcpyDtoH(outBytes.data(), reinterpret_cast<CUdeviceptr>(p.out), outBytes.size());

    double maxErr = 0.0;
    double maxRef = 0.0;
    bool maskedOk = true;
    std::vector<double> scores(c.nk);
    std::vector<double> ref(c.dv);
    for (int64_t b = 0; b < c.b; ++b)
    {
        for (int64_t h = 0; h < c.h; ++h)
        {
            for (int64_t i = 0; i < c.nq; ++i)
            {
                double m = -std::numeric_limits<double>::infinity();
                for (int64_t j = 0; j < c.nk; ++j)
                {
                    double s = 0.0;
                    for (int32_t d = 0; d < c.dk; ++d)
                    {
                        s += q.values[((b * c.h + h) * c.nq + i) * c.dk + d] * k.values[((b * c.h + h) * c.nk + j) * c.dk + d];
                    }
                    s *= p.scale;
                    if (c.hasBias)
                    {
                        s += bias.values[b * p.biasStride[0] + h * p.biasStride[1] + i * p.biasStride[2] + j * p.biasStride[3]];
                    }
                    scores[j] = s;
                    m = std::max(m, s);
                }
                bool const masked = std::isinf(m) && m < 0;
                double sum = 0.0;
                std::fill(ref.begin(), ref.end(), 0.0);
                for (int64_t j = 0; j < c.nk && !masked; ++j)
                {
                    double const w = std::exp(scores[j] - m);
                    sum += w;
                    for (int32_t d = 0; d < c.dv; ++d)
                    {
                        ref[d] += w * v.values[((b * c.h + h) * c.nk + j) * c.dv + d];
                    }
                }
                for (int32_t d = 0; d < c.dv; ++d)
                {
                    size_t const o = static_cast<size_t>(((b * c.h + h) * c.nq + i) * c.dv + d);
                    double got;
                    if (dtype == AttentionDType::kFloat32)
                    {
                        float f;
                        std::memcpy(&f, &outBytes[o * 4], 4);
                        got = f;
                    }
                    else
                    {
                        uint16_t bits;
                        std::memcpy(&bits, &outBytes[o * 2], 2);
                        got = dtype == AttentionDType::kFloat16 ? fromHalf(bits) : fromBf16(bits);
                    }
                    if (masked)
                    {
                        maskedOk = maskedOk && std::isnan(got);
                        continue;
                    }
                    double const want = ref[d] / sum;
                    maxRef = std::max(maxRef, std::abs(want));
                    maxErr = std::isfinite(got) ? std::max(maxErr, std::abs(got - want)) : std::numeric_limits<double>::infinity();
                }
            }
        }
    }
    if (!maskedOk)
    {
        std::fprintf(stderr, "%s: a fully masked row is not NaN\n", c.name);
        return std::numeric_limits<double>::infinity();
    }
    return maxErr / std::max(maxRef, 1e-12);
}

int run(int argc, char** argv)
{
    std::string error;
    attn_deploy::CudaDriver const* cu = attn_deploy::cudaDriver(&error);
    if (cu == nullptr)
    {
        std::fprintf(stderr, "%s\n", error.c_str());
        return 2;
    }
    CUdevice device{};
    CUcontext context{};
    if (cu->deviceGet(&device, argc > 2 ? std::atoi(argv[2]) : 0) != CUDA_SUCCESS
        || cu->devicePrimaryCtxRetain(&context, device) != CUDA_SUCCESS || cu->ctxSetCurrent(context) != CUDA_SUCCESS)
    {
        std::fprintf(stderr, "no usable CUDA device\n");
        return 2;
    }
    char name[256] = {};
    cu->deviceGetName(name, sizeof(name), device);
    int major = 0;
    int minor = 0;
    cu->deviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device);
    cu->deviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device);
    int maxShared = 0;
    cu->deviceGetAttribute(&maxShared, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device);
    std::printf("device %s sm_%d%d, %d embedded cubins\n", name, major, minor, attn_deploy::kNbCubinImages);
    std::vector<Case> const cases = {
        {"sagan-dk32-dv256", 1, 2, 200, 150, 32, 256, {}, false, 0},
        {"vit-d64-bias2d", 2, 3, 77, 130, 64, 64, {77, 130}, true, 0},
        {"dk256-bias-b1nk", 1, 2, 64, 97, 256, 256, {1, 2, 1, 97}, true, 0},
        {"dk128-dv96-scalar-bias", 1, 1, 45, 33, 128, 96, {}, true, 0},
        {"unaligned-dk40-dv24", 2, 1, 33, 65, 40, 24, {1, 1, 1, 65}, true, 0},
        {"chunked-dk512-dv2048", 1, 1, 40, 70, 512, 2048, {}, false, 0},
        {"masked-rows", 1, 2, 40, 40, 16, 16, {40, 40}, true, 3},
        {"batch-over-65535", 70000, 1, 1, 3, 16, 16, {}, false, 0},
    };
    char const* const dtypeNames[] = {"fp32", "fp16", "bf16"};
    double const tolerance[] = {1e-4, 2e-3, 1e-2};
    int failures = 0;
    int ran = 0;
    for (int32_t t = 0; t < 3; ++t)
    {
        auto const dtype = static_cast<AttentionDType>(t);
        if (attn_deploy::selectCubin(major * 10 + minor, dtype, false, 16, 16, true, maxShared) < 0
            && attn_deploy::selectCubin(major * 10 + minor, dtype, true, 16, 16, true, maxShared) < 0)
        {
            continue;  // not built for this GPU and dtype
        }
        for (Case const& c : cases)
        {
            int32_t const chosen = attn_deploy::selectCubin(
                major * 10 + minor, dtype, c.hasBias, c.dk, c.dv, c.dk % 16 == 0 && c.dv % 16 == 0, maxShared);
            if (chosen < 0)
            {
                std::printf("skip %-24s %s: no cubin for these shapes in this build\n", c.name, dtypeNames[t]);
                continue;
            }
            Device dev{cu, {}};
            double const err = runCase(c, dtype, dev);
            bool const ok = err <= tolerance[t];
            failures += ok ? 0 : 1;
            ++ran;
            std::printf("%s %-24s %s max_rel_err=%.3g tol=%.0e cubin=%s\n", ok ? "ok  " : "FAIL", c.name, dtypeNames[t], err,
                tolerance[t], attn_deploy::kCubinImages[chosen].key);
        }
    }
    std::printf("%d case(s), %d failure(s)\n", ran, failures);
    return failures == 0 && ran > 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc >= 2 && std::strcmp(argv[1], "strides") == 0)
    {
        return strides(argc, argv);
    }
    if (argc == 2 && std::strcmp(argv[1], "select") == 0)
    {
        return select();
    }
    if (argc == 2 && std::strcmp(argv[1], "table") == 0)
    {
        std::printf("%s\n", attn_deploy_fused_attention_cubin_table());
        return 0;
    }
    if (argc >= 2 && std::strcmp(argv[1], "run") == 0)
    {
        return run(argc, argv);
    }
    std::fprintf(stderr, "usage: kernel_check strides|select|table|run ...\n");
    return 2;
}

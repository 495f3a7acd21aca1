// Bit-exact regression test of the reference dot products against ggml's x86 CPU kernels.
//
// The vec_dot functions sum in the float order of the kernels that produced the shared golden
// logits (llama.cpp 34af94cd on x86 with AVX2 + AVX-512F/BW/DQ/VL/VNNI, FMA, F16C; see
// src/quant/lanes.h): with 8-bit activations, a 1-ulp difference in one matmul output can flip a
// rounding step downstream and move the logits by ~0.1, so "close" is not enough here.
//
// kExpected holds the outputs of ggml's CPU mul_mat (1 thread, LLAMAFILE and CPU_REPACK on, as in
// a default llama.cpp build; built with GCC 12 -O3) for the inputs below: 8 weight rows quantized
// by our reference quantizers and n_tokens activation rows of floats, which ggml quantizes with
// its x86 activation quantizers (ours: quantize_row_q8_0_x86 / _q8_1_x86 / quantize_row_q8_k).
// Cases with 4 tokens take ggml's prompt path (tinyBLAS, or the repacked gemm for Q4_0, IQ4_NL,
// MXFP4, Q2_K, Q4_K); "_gemv" cases take 1 token (the repacked gemv, or ggml_vec_dot_f32/f16/bf16)
// and check the *_gemv functions; "_tail" cases use a row length that is not a multiple of 16,
// where ggml's prompt path falls back to ggml_vec_dot_f32/f16/bf16 too.
// To regenerate: build ggml at that commit (GGML_NATIVE=OFF; GGML_AVX, _AVX2, _AVX512, _AVX512_VNNI,
// _FMA, _F16C and _LLAMAFILE on), build the inputs exactly as below, put the weights in the
// CPU_REPACK buffer type for the repacked types, run ggml_mul_mat and print the output bits.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "quant/float.h"
#include "quant/q2_k.h"
#include "quant/q4_k.h"
#include "quant/q8_0.h"
#include "quant/q8_1.h"
#include "quant/types.h"

namespace hearth::quant {
namespace {

constexpr int kRows = 8;

// xorshift32, uniform in [-1, 1): portable, unlike the <random> distributions.
struct Rng {
    uint32_t s;
    float next() {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        return (float)(int32_t)s * (1.0f / 2147483648.0f);
    }
};

struct Expected {
    const char* name;  // type name, plus "_tail" or "_gemv" (see above)
    int n;             // row length
    int n_tokens;      // activation rows
    uint32_t bits[kRows * 4];  // [n_tokens][kRows] f32 bit patterns of ggml's outputs
};

const Expected kExpected[] = {
    {"f32", 512, 4, {
        0xc16f4ad9, 0x4137f8f0, 0xc19da2a9, 0xc18f65ae, 0xc0cb009a, 0xc0ffc1da, 0x3f48a530, 0xc0cd78c5,
        0x408e3568, 0x4102bbea, 0xc1264ca8, 0xc0953614, 0x41b22a84, 0xc10cdba6, 0xc1bb5066, 0x415daad7,
        0x40e0535b, 0xc0ff07c8, 0xc0f5d819, 0x410b3b49, 0x4077b034, 0x41a53db2, 0xc1cf0803, 0xbf8d509c,
        0x4126a3ff, 0x41154262, 0xc16d1b82, 0xc16ce5f8, 0x4139bc2c, 0xc198e532, 0xbd87b460, 0x40b04296}},
    {"f32_tail", 205, 4, {
        0xbfc25736, 0x3fcbf380, 0x40869d37, 0x409acc87, 0x40c0e677, 0xc08ec5c7, 0xc1275a24, 0xc121dbc7,
        0xc0c320b6, 0xc075e33c, 0x40f9cdef, 0xc105da6a, 0x413f081f, 0xc0f166ca, 0x410680c5, 0xc0556386,
        0x4027d1b8, 0x4093345d, 0xc079a330, 0x406a13a3, 0xc110ebca, 0xbd12d8e6, 0xc123bf55, 0xc0f30e53,
        0xbf8b0787, 0xc105c8f1, 0x40f56ce5, 0xc1f46da3, 0x416a14b0, 0xc0c780e6, 0xc009f77a, 0xc0504e0d}},
    {"f32_gemv", 512, 1, {
        0xc16f4ada, 0x4137f8ef, 0xc19da2a8, 0xc18f65ae, 0xc0cb00a0, 0xc0ffc1dc, 0x3f48a560, 0xc0cd78c4}},
    {"f16", 512, 4, {
        0x41a03664, 0x41647542, 0x41ad7395, 0x41e6d2c8, 0xc08794ae, 0xc17719ce, 0x41f4e385, 0xc09ab426,
        0xc132cc97, 0x3f88e850, 0x41354901, 0x40a2927c, 0x40e662dc, 0xc156c7de, 0xc186e70c, 0xc1992000,
        0xc08d5022, 0xc1a78bee, 0xc1db2c6e, 0xc1b9799f, 0xc1913075, 0x41988be2, 0xc05a4dfc, 0x40e1ec72,
        0x4192273c, 0xc1a42d9a, 0xc0bb3352, 0xbe0094e0, 0x40150b0a, 0x40ceefa4, 0xc13bfc3c, 0xc1a72901}},
    {"f16_tail", 205, 4, {
        0x3f61eb72, 0xc156f821, 0x4140246d, 0x40ae7f10, 0xc13d51ac, 0x414ec661, 0x409d1121, 0x3fa5edf5,
        0xc132e564, 0x4127b8ce, 0x41d773dd, 0x40491da8, 0xbf578514, 0x4099ea63, 0x40d49b87, 0xc0c231b1,
        0x4177cfa8, 0xc03eee7c, 0xc13c9898, 0x4099003e, 0x3f5ae787, 0x404cc48d, 0xc197a7ec, 0x40af9ddd,
        0x41095a2a, 0xc1376c2d, 0x4138f244, 0x411871c2, 0xc177cb8a, 0x41212043, 0xc1817cd4, 0x4036e9ed}},
    {"f16_gemv", 512, 1, {
        0x41a03664, 0x4164753f, 0x41ad7394, 0x41e6d2c8, 0xc08794b0, 0xc17719cf, 0x41f4e383, 0xc09ab424}},
    {"bf16", 512, 4, {
        0x41072a6c, 0x403931e4, 0xc1a0f8d0, 0xc06e6a48, 0xc15c194f, 0xc1ccd7e7, 0x3e954de0, 0xc1c0c30e,
        0x41ccea6f, 0x418f13d4, 0xc1859929, 0x41260c84, 0x41d49f83, 0x414eec14, 0xc168da0e, 0x40e9d586,
        0x40439843, 0xc180865d, 0x40821671, 0xc13d0397, 0xc078c21a, 0x40545e4e, 0xc13a396f, 0x41be8738,
        0xc0aaf889, 0x41c0ea7a, 0xc0215a34, 0xc0d3a0e2, 0xc1899189, 0x4212c4fb, 0x42077db3, 0xc15eb73c}},
    {"bf16_tail", 205, 4, {
        0x40956e19, 0x4121d41e, 0xc09108d3, 0xc0a51fdd, 0xc1120d34, 0xbfa04628, 0xc021478a, 0x40a09c26,
        0xc0a699ee, 0xbed7850a, 0xc07cb5a4, 0xc12dce8e, 0xc0c098f0, 0x40bdb64b, 0x3fb28dae, 0xc0f0f8ba,
        0x411ebbd0, 0xc1204b55, 0xc11508fd, 0xbf146f78, 0xc10fd055, 0x3f021445, 0xc135fe87, 0x401e443d,
        0x3fc349b9, 0x402f1a24, 0x41169d98, 0xc0dd8ccb, 0xc17fc10f, 0xc0843965, 0x3f355e18, 0xbf71e040}},
    {"bf16_gemv", 512, 1, {
        0x41072a6c, 0x403931e0, 0xc1a0f8d0, 0xc06e6a4a, 0xc15c194e, 0xc1ccd7e8, 0x3e954e20, 0xc1c0c30d}},
    {"q8_0", 512, 4, {
        0xc118dacb, 0xc19a17e8, 0x41af106c, 0xc0d4fffe, 0xc1615271, 0x4169d044, 0x3ce8db80, 0xc13ca21a,
        0x4119c01e, 0xc0038442, 0x414f070a, 0x402f9fc2, 0xc0930696, 0xc1baae02, 0xc1051f82, 0x41b7d314,
        0x4086c2f0, 0x41194b85, 0xc19cc546, 0x41264065, 0x416261c5, 0xc0945a1a, 0x4183f1bc, 0x41a41b26,
        0xc0d4d47e, 0x419e4f24, 0x3fdb71f8, 0x40f2d98b, 0xc12784e0, 0x414f190e, 0x411cbb39, 0xc18b2381}},
    {"q4_0", 512, 4, {
        0x41f589e4, 0x41b3d11e, 0xc1b7509d, 0xc0bd92e4, 0xc11de659, 0x41df3938, 0xc19545ad, 0xc1a247c9,
        0xc081e098, 0x4113f566, 0xc084595a, 0xc1555b16, 0xbc5e132a, 0x4203fb04, 0xc064d858, 0x414c1730,
        0x41773e48, 0x40bf74b0, 0xc1328a28, 0xc09b7c0f, 0xc18daebe, 0xc12bc06e, 0x40271fa8, 0x4100966e,
        0xc1684d05, 0xc1a54ce7, 0xc0886d24, 0x41ad1c7f, 0xc115676a, 0x413e14a5, 0xc0b0f783, 0xbf11357a}},
    {"q5_0", 512, 4, {
        0xc1cca288, 0xc1cd9f5c, 0xc0097922, 0x41a155db, 0xc1ce45a0, 0xc0b6cdd4, 0x41ac612e, 0x4121e4f7,
        0x40ce238a, 0x41ab22dd, 0x41b0f08d, 0xc0ee90d0, 0x40b4d788, 0xc10a9409, 0xbfdf5e1d, 0xc0bc3db8,
        0x40f9fc8a, 0x3edf0098, 0xbf946a84, 0x415bb7be, 0xc09f864f, 0xbebe3160, 0xbf126e10, 0x400379e6,
        0x41cacead, 0xc0dd23da, 0x4071dee4, 0x40941792, 0xc1b2b2ad, 0xc0dd7510, 0xc1995d34, 0xc11ea71c}},
    {"iq4_nl", 512, 4, {
        0xc13167a4, 0xc13b815a, 0x411ad6ef, 0xc17298de, 0xc10e0b90, 0xc104ea64, 0x409d44e5, 0x4102e81e,
        0x4147173a, 0xc0b0dc88, 0xc1921151, 0xc14fb4f0, 0x4001933d, 0x40b64233, 0x403ef121, 0xc06e5b32,
        0xc1e47e04, 0x4189c574, 0x3ed3a3de, 0xc1c72046, 0x419b6be5, 0xc1c48c41, 0xc17696d3, 0x41e4919b,
        0x4193fdae, 0xc15db5b9, 0xc0329e68, 0x41b0d8fa, 0xc0d03f93, 0xc175a6ca, 0xc112be42, 0xbf0d23b2}},
    {"mxfp4", 512, 4, {
        0xc193c787, 0xc158bac2, 0x41ad7f22, 0xc0927dd8, 0x4099ef1e, 0x40a08f61, 0x4112452d, 0xbf97edfc,
        0x402563ce, 0x41b7e88d, 0x40ffe7aa, 0x418c7ba6, 0xc07ff1b0, 0x3e313020, 0xc1144e95, 0xbf519660,
        0xc141aebc, 0x41b391df, 0xc19010e0, 0x40eccfa5, 0xc15acc07, 0xc1a957f5, 0x418a838e, 0xc18caf6b,
        0x41a26a10, 0xc1789c11, 0x41302d9e, 0xc1241654, 0x40d4eece, 0x410602e8, 0xc146471c, 0xc0ba7312}},
    {"q4_1", 512, 4, {
        0xc17f65c8, 0x40119c30, 0xc09386fa, 0x410254f5, 0xc187d3ae, 0xc0d0dd18, 0xc03fb688, 0x4197f5a8,
        0x4180a49e, 0xc17da8a8, 0xbee9c600, 0xc185c1e0, 0x40dbf1d6, 0xc05d0cc0, 0x407becb8, 0x418442d4,
        0x41e42ad2, 0x412b7041, 0xc1c2a3aa, 0xc07ab654, 0x3f76e630, 0xc11aafd4, 0xc1bf9f8b, 0x40995c6e,
        0xc15de986, 0xbef92950, 0xc119aa9c, 0xc02d52ba, 0x4203983e, 0x40a78896, 0x417eb9c3, 0xc147c606}},
    {"q5_1", 512, 4, {
        0x403c5a20, 0xc20994c8, 0x405df970, 0xc1072a8c, 0x41001344, 0x41e012d9, 0xc173bf70, 0x41590185,
        0xc124ed5c, 0x406d1b00, 0xc0891288, 0x3ff2a960, 0xc1e2ac18, 0x403e34c0, 0x40fae0e4, 0x40cc5978,
        0xc1addcec, 0xc015a35c, 0xc0ffb988, 0x4153cb4c, 0x408eda9e, 0xc0f89406, 0xc13207ed, 0xc118f9ff,
        0x4249eb5c, 0xc0b02cb2, 0x3dd8c7c0, 0x40c369d8, 0x41b9002d, 0xc17a2de2, 0xc1701b82, 0x3f7c76f8}},
    {"q2_k", 512, 4, {
        0x420efeb1, 0x41177c80, 0x419656fd, 0xbfba76c0, 0x40bf7fac, 0xc18a1b46, 0xc18806b9, 0x416e6a70,
        0xc1b2c078, 0x4174cb91, 0xc07e5298, 0x40d0a964, 0x41880a88, 0x4134bc12, 0xc1404d7e, 0x410a5b8e,
        0xc1d9422f, 0x41a1a7f8, 0x40b163e8, 0x40232020, 0x3ce12000, 0xc16df7a2, 0xc0abcc70, 0xc18e2c71,
        0x4189d89a, 0xc1836d63, 0x40fe34f8, 0xc1a35cd8, 0x40ba0953, 0x4085e63c, 0xc17e4756, 0xc130195c}},
    {"q2_k_gemv", 512, 1, {
        0x420efeb2, 0x41177c80, 0x419656fd, 0xbfba76c0, 0x40bf7fb0, 0xc18a1b46, 0xc18806ba, 0x416e6a70}},
    {"q3_k", 512, 4, {
        0xc1902656, 0x413da0c8, 0x40df4cc0, 0x40adf4c1, 0xc16c5a23, 0xc002a2e2, 0xc1aac867, 0xc13379ca,
        0x41a2af70, 0x41ee5119, 0xc1d7705a, 0xc1d08bf1, 0xc1bf4401, 0xc0170ddc, 0xc0d60bbc, 0xc2025ff5,
        0x41a021dd, 0x40bba3f2, 0x41849e97, 0xc017e554, 0x412622e7, 0x3e8196f0, 0x4103608f, 0x4203184a,
        0xc165fb4e, 0xbe44c4c0, 0xc20fdc48, 0xbf241e80, 0xc131111c, 0x3fc1d9d0, 0x4009fc34, 0xc190fe46}},
    {"q4_k", 512, 4, {
        0x42116982, 0xc136c1ae, 0x4054df40, 0x3fc7a6d0, 0xc0c27e20, 0x4184a610, 0x41241ce0, 0xc138e95f,
        0xc1351954, 0x417b2b69, 0xc1822e97, 0xc15998be, 0xc1275c4c, 0xc0a02343, 0xc06ecbc6, 0xc22eff69,
        0x40ca1804, 0xc0ba5798, 0xc102f50c, 0x3dbca600, 0xc0ba4ae8, 0xc12e0fc6, 0x419490ef, 0xc0bddb70,
        0xc21308bf, 0xc0c71660, 0xc1699c2e, 0xc1200d18, 0x40a24caf, 0x40d8f884, 0x4146c87a, 0xc1914fdd}},
    {"q4_k_gemv", 512, 1, {
        0x42116982, 0xc136c1b0, 0x4054df40, 0x3fc7a6c8, 0xc0c27e28, 0x4184a610, 0x41241cde, 0xc138e95c}},
    {"q5_k", 512, 4, {
        0xc17b5b6f, 0x41143dd3, 0xc18a5559, 0xc19b7f2d, 0x40fe7086, 0xc18a3fd0, 0xc17fb2f9, 0x41f431c8,
        0x41aa6aaa, 0x406f6b30, 0xc103bbb8, 0x4092acf0, 0xc1940af2, 0xc145d44e, 0x4101c108, 0xc146650c,
        0xc1716c1e, 0xbf48a760, 0xc0cbfa54, 0xc157be7a, 0x40f22c42, 0xc10adc9d, 0xbfd67fa0, 0x40630278,
        0x4016b760, 0xc0fc6740, 0x414d30ce, 0x40b2a2e4, 0x417a91c6, 0xbf5c98b0, 0xc04b9070, 0xc191163a}},
    {"q6_k", 512, 4, {
        0xc15f21d8, 0xc123c26e, 0xc180fd28, 0xbfecd0b8, 0x40204b38, 0xc115df94, 0x4115e814, 0xc17c8910,
        0x4200fa81, 0x41f54ba8, 0x40a91a78, 0xbf7b5f40, 0x40248814, 0xbf1b2688, 0xbf9b8050, 0x4134400b,
        0xbfdd5be8, 0xc17d73a0, 0x41545e55, 0xc1c2ee66, 0x41b1064b, 0xc0f5a684, 0xc15fc498, 0x41670ce4,
        0xc1dc8210, 0xc100edf2, 0xc0d2d208, 0xbff87308, 0xc13c5e29, 0x41280b91, 0x41a2ba6e, 0xc1aeb4ce}},
    {"iq4_xs", 512, 4, {
        0xc11be484, 0xc10117c0, 0xc1ec34d0, 0x413a4729, 0xc14b695b, 0x40898949, 0x4151d280, 0x41808886,
        0xbfd0f930, 0xc110bb94, 0x41b158ca, 0x41c5dbff, 0x4120ffb5, 0x4189598f, 0xc0e886c8, 0xc14b4ced,
        0xc1f9f685, 0xc1330776, 0xc1a1b990, 0xc185caa7, 0xc1cefa1d, 0x4151fb8c, 0x40aade9c, 0xbeb99ec0,
        0xc2237a7e, 0xc115817e, 0x413cf662, 0xc0b868b6, 0xc1e00d42, 0x41fadf40, 0xc1992d20, 0x420fb026}},
};

// Our x86 activation quantization for weight type t (matches ggml's CPU backend).
std::vector<std::byte> quantize_activation(QuantType t, const float* x, int64_t n) {
    const QuantType yt = traits(t).vec_dot_type;
    std::vector<std::byte> out(row_size(yt, n));
    if (yt == QuantType::q8_0) {
        quantize_row_q8_0_x86(x, reinterpret_cast<BlockQ8_0*>(out.data()), n);
    } else if (yt == QuantType::q8_1) {
        quantize_row_q8_1_x86(x, reinterpret_cast<BlockQ8_1*>(out.data()), n);
    } else {
        traits(yt).quantize_row(x, out.data(), n);
    }
    return out;
}

// The single-token ("_gemv") order of weight type t, for the types where it differs.
float gemv_dot(QuantType t, const void* w, const void* x, int64_t n) {
    switch (t) {
        case QuantType::f32:
            return vec_dot_f32_gemv(static_cast<const float*>(w), static_cast<const float*>(x), n);
        case QuantType::f16:
            return vec_dot_f16_gemv(static_cast<const uint16_t*>(w), static_cast<const uint16_t*>(x), n);
        case QuantType::bf16:
            return vec_dot_bf16_gemv(static_cast<const uint16_t*>(w), static_cast<const uint16_t*>(x), n);
        case QuantType::q2_k:
            return vec_dot_q2_k_gemv(static_cast<const BlockQ2_K*>(w), static_cast<const BlockQ8_K*>(x), n);
        case QuantType::q4_k:
            return vec_dot_q4_k_gemv(static_cast<const BlockQ4_K*>(w), static_cast<const BlockQ8_K*>(x), n);
        default:
            ADD_FAILURE() << "no gemv order for " << type_name(t);
            return 0;
    }
}

TEST(X86Order, DotProductsMatchGgmlBitForBit) {
    for (const Expected& e : kExpected) {
        std::string base = e.name;
        const bool gemv = base.ends_with("_gemv");
        if (gemv || base.ends_with("_tail")) base.resize(base.size() - 5);
        const auto type = parse_type_name(base);
        ASSERT_TRUE(type.has_value()) << e.name;
        const QuantType t = *type;

        Rng rng{0x9e3779b9u ^ (uint32_t)t * 7919u ^ (uint32_t)e.n};
        std::vector<float> w((size_t)kRows * e.n);       // [kRows][n] weights before quantization
        std::vector<float> x((size_t)e.n_tokens * e.n);  // [n_tokens][n] activations
        for (float& v : w) v = rng.next();
        for (float& v : x) v = 2.0f * rng.next();
        const size_t row_bytes = row_size(t, e.n);
        std::vector<std::byte> wq(row_bytes * kRows);
        for (int r = 0; r < kRows; ++r) {
            traits(t).quantize_row(w.data() + (size_t)r * e.n, wq.data() + r * row_bytes, e.n);
        }

        int mismatches = 0;
        for (int tok = 0; tok < e.n_tokens; ++tok) {
            const std::vector<std::byte> xq = quantize_activation(t, x.data() + (size_t)tok * e.n, e.n);
            for (int r = 0; r < kRows; ++r) {
                const void* wr = wq.data() + r * row_bytes;
                const float got =
                    gemv ? gemv_dot(t, wr, xq.data(), e.n) : traits(t).vec_dot(wr, xq.data(), e.n);
                uint32_t got_bits;
                std::memcpy(&got_bits, &got, sizeof got_bits);
                const uint32_t want_bits = e.bits[tok * kRows + r];
                if (got_bits != want_bits) {
                    float want;
                    std::memcpy(&want, &want_bits, sizeof want);
                    ADD_FAILURE() << e.name << " token " << tok << " row " << r << ": got " << got
                                  << ", ggml " << want << " (diff " << (double)got - want << ")";
                    ++mismatches;
                }
            }
        }
        EXPECT_EQ(mismatches, 0) << e.name;
    }
}

}  // namespace
}  // namespace hearth::quant

// Writes the gguf_fuzz seed corpus with the real writer: a few small, valid files that between
// them use every value type, nested and empty arrays, several tensor types, a custom
// alignment and version 2. Synthetic bytes only (no model weights); each file is < 4 KB.
//   gguf_fuzz_seeds <dir>      (the committed seeds live in fuzz/corpus/)
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/mmap.h"
#include "gguf/gguf.h"

namespace {

using namespace hearth;
using namespace hearth::gguf;
using quant::QuantType;

std::vector<std::byte> ramp(size_t n, uint8_t seed) {
    std::vector<std::byte> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = (std::byte)(uint8_t)(seed + 3 * i);
    return b;
}

Value scalar(ValueType t, uint64_t u, int64_t i = 0, double f = 0) {
    Value v;
    v.type = t;
    v.u = u;
    v.i = i;
    v.f = f;
    return v;
}

// A llama-shaped header with a handful of small tensors.
Result<std::vector<std::byte>> tiny_model() {
    GgufWriter w;
    w.set("general.architecture", Value::make_string("llama"));
    w.set("general.name", Value::make_string("seed"));
    w.set("llama.block_count", Value::make_u32(1));
    w.set("llama.context_length", Value::make_u32(64));
    w.set("llama.embedding_length", Value::make_u32(32));
    w.set("llama.attention.head_count", Value::make_u32(2));
    w.set("llama.attention.layer_norm_rms_epsilon", Value::make_f32(1e-5f));
    w.set("llama.rope.freq_base", Value::make_f32(10000.f));
    w.set("tokenizer.ggml.model", Value::make_string("llama"));
    w.set("tokenizer.ggml.tokens", Value::make_string_array({"<unk>", "<s>", "</s>", "\xe2\x96\x81hi", "a"}));
    w.set("tokenizer.ggml.scores", Value::make_f32_array({0.f, 0.f, 0.f, -1.f, -2.f}));
    w.set("tokenizer.ggml.token_type", Value::make_i32_array({2, 3, 3, 1, 1}));
    w.set("tokenizer.ggml.bos_token_id", Value::make_u32(1));
    w.set("tokenizer.ggml.add_bos_token", Value::make_bool(true));
    HEARTH_TRY(w.add_tensor("token_embd.weight", QuantType::q8_0, {32, 5}, ramp(34 * 5, 1)));
    HEARTH_TRY(w.add_tensor("blk.0.attn_norm.weight", QuantType::f32, {32}, ramp(128, 2)));
    HEARTH_TRY(w.add_tensor("blk.0.attn_q.weight", QuantType::f16, {32, 4}, ramp(256, 3)));
    HEARTH_TRY(w.add_tensor("output.weight", QuantType::q4_0, {32, 5}, ramp(18 * 5, 4)));
    return w.serialize();
}

// No tensors; every value type, nested and empty arrays.
Result<std::vector<std::byte>> every_value_type() {
    GgufWriter w;
    w.set("u8", scalar(ValueType::u8, 200));
    w.set("i8", scalar(ValueType::i8, 0, -100));
    w.set("u16", scalar(ValueType::u16, 60000));
    w.set("i16", scalar(ValueType::i16, 0, -30000));
    w.set("u32", Value::make_u32(4000000000u));
    w.set("i32", Value::make_i32(-2000000000));
    w.set("u64", Value::make_u64(~0ull));
    w.set("i64", scalar(ValueType::i64, 0, -(1ll << 62)));
    w.set("f32", Value::make_f32(0.5f));
    w.set("f64", scalar(ValueType::f64, 0, 0, -0.25));
    w.set("bool", Value::make_bool(false));
    w.set("string", Value::make_string("text"));
    w.set("empty.string", Value::make_string(""));
    w.set("arr.u16", Value::make_array(ValueType::u16, {scalar(ValueType::u16, 1), scalar(ValueType::u16, 2)}));
    w.set("arr.bool", Value::make_array(ValueType::boolean, {Value::make_bool(true)}));
    w.set("arr.f64", Value::make_array(ValueType::f64, {scalar(ValueType::f64, 0, 0, 1.0)}));
    w.set("arr.arr.string", Value::make_array(ValueType::array, {Value::make_string_array({"x", "y"}),
                                                                 Value::make_string_array({})}));
    w.set("arr.empty", Value::make_array(ValueType::u8, {}));
    w.set("tokenizer.ggml.merges", Value::make_string_array({"a b", "ab c"}));
    return w.serialize();
}

// Alignment 64 and tensors whose sizes all need padding, in types of several block sizes.
Result<std::vector<std::byte>> aligned_64() {
    GgufWriter w(64);
    w.set("general.architecture", Value::make_string("qwen3"));
    HEARTH_TRY(w.add_tensor("a", QuantType::f32, {3}, ramp(12, 5)));
    HEARTH_TRY(w.add_tensor("b", QuantType::bf16, {5, 3}, ramp(30, 6)));
    HEARTH_TRY(w.add_tensor("c", QuantType::q4_k, {256}, ramp(144, 7)));
    HEARTH_TRY(w.add_tensor("d", QuantType::iq4_nl, {32, 1, 1, 2}, ramp(36, 8)));
    return w.serialize();
}

// Version 2 (same layout as 3), one tensor.
Result<std::vector<std::byte>> version_2() {
    GgufWriter w;
    w.set("general.architecture", Value::make_string("gpt2"));
    HEARTH_TRY(w.add_tensor("w", QuantType::f16, {8, 2}, ramp(32, 9)));
    HEARTH_ASSIGN(std::vector<std::byte> bytes, w.serialize());
    const uint32_t version = 2;
    std::memcpy(bytes.data() + 4, &version, sizeof(version));
    return bytes;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <output dir>\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    struct Seed {
        const char* name;
        Result<std::vector<std::byte>> (*make)();
    };
    const Seed seeds[] = {{"tiny_model.gguf", tiny_model},
                          {"every_value_type.gguf", every_value_type},
                          {"aligned_64.gguf", aligned_64},
                          {"version_2.gguf", version_2}};
    for (const Seed& s : seeds) {
        auto bytes = s.make();
        Status st = bytes.ok() ? write_file_atomic(dir + "/" + s.name, bytes.value()) : bytes.status();
        if (!st.ok()) {
            std::fprintf(stderr, "%s: %s\n", s.name, st.message().c_str());
            return 1;
        }
        std::printf("%s: %zu bytes\n", s.name, bytes->size());
    }
    return 0;
}

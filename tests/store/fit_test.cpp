// store::fit: the memory estimate (weights + KV pool + scratch) and the verdict against a
// machine the tests describe (mem_available / mem_total set), from test models, from a GGUF
// header alone, and from headers of full-size models (model/synth's presets: real shapes, no
// weights).
#include "store/fit.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "gguf/gguf_test_util.h"
#include "model/cuda_decoder.h"
#include "model/synth.h"
#include "store/quantize.h"
#include "store/store.h"
#include "support/testdata.h"

namespace hearth::store {
namespace {
namespace fs = std::filesystem;

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kGiB = int64_t{1} << 30;

std::string model_path(const std::string& name) { return hearth::test::testdata_path("models/" + name + ".gguf"); }

std::vector<std::byte> read_bytes(const std::string& path) {
    std::vector<uint8_t> raw;
    EXPECT_TRUE(hearth::test::read_file(path, raw)) << path;
    const auto* p = reinterpret_cast<const std::byte*>(raw.data());
    return {p, p + raw.size()};
}

FitOptions machine(int64_t available, int64_t total) {
    FitOptions o;
    o.mem_available = available;
    o.mem_total = total;
    return o;
}

// ---- the estimate ----

TEST(FitEstimate, WeightsKvAndScratchOfATestModel) {
    auto info = read_gguf_info(model_path("llama3-tiny.F16"));
    ASSERT_TRUE(info.ok()) << info.status().message();
    runtime::EngineOptions eo;
    eo.n_ctx = 512;
    eo.n_parallel = 1;
    auto e = estimate_memory(*info, eo, 0);
    ASSERT_TRUE(e.ok()) << e.status().message();
    EXPECT_EQ(e->weights_bytes, (int64_t)fs::file_size(model_path("llama3-tiny.F16")));
    // 2 layers x (K + V) x 2 KV heads x head dim 64 x 512 positions x 2 bytes (f16).
    EXPECT_EQ(e->kv_bytes, 2 * 2 * 2 * 64 * 512 * 2);
    EXPECT_EQ(e->kv.n_parallel, 1);
    // One step of 512 tokens' activations, one sequence's logits, the 8 MiB floor.
    EXPECT_EQ(e->compute_bytes, 512 * 256 * 4 * 12 + info->n_vocab * 4 + 8 * kMiB);
    EXPECT_EQ(e->vocab_bytes, vocabulary_bytes(info->n_vocab));
    EXPECT_GT(e->vocab_bytes, 0);
    EXPECT_EQ(e->total_bytes(), e->weights_bytes + e->kv_bytes + e->compute_bytes + e->vocab_bytes);

    eo.kv_type = quant::QuantType::q8_0;  // 34 bytes per 32 values instead of 64
    auto q = estimate_memory(*info, eo, 0);
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(q->kv_bytes, e->kv_bytes / 64 * 34);
}

TEST(FitEstimate, EmbeddingModelsHaveNoKvPool) {
    auto info = read_gguf_info(model_path("bert-bge-tiny.F16"));
    ASSERT_TRUE(info.ok());
    auto e = estimate_memory(*info, runtime::EngineOptions{}, 0);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->kv_bytes, 0);
    EXPECT_EQ(e->total_bytes(), e->weights_bytes + e->compute_bytes + e->vocab_bytes);
}

// ---- verdicts ----

TEST(Fit, FitsWithSpareAndTheDefaultContext) {
    auto r = fit_file(model_path("llama3-tiny.F16"), machine(8 * kGiB, 16 * kGiB));
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_TRUE(r->fits);
    EXPECT_EQ(r->num_ctx, 4096);  // the daemon's default; the model was trained for 131072
    EXPECT_EQ(r->n_ctx_train, 131072);
    EXPECT_EQ(r->n_parallel, 1);
    EXPECT_EQ(r->kv_type, "f16");
    EXPECT_EQ(r->architecture, "llama");
    EXPECT_EQ(r->quantization, "F16");
    EXPECT_EQ(r->spare_bytes, 8 * kGiB - r->need.total_bytes());
    EXPECT_EQ(r->verdict.rfind("fits with 8.0 GiB to spare", 0), 0u) << r->verdict;
    EXPECT_TRUE(r->suggested_type.empty());
    EXPECT_EQ(r->suggested_num_ctx, 0);

    // Less than 100 MiB left over: just "fits".
    r = fit_file(model_path("llama3-tiny.F16"), machine(r->need.total_bytes() + kMiB, 16 * kGiB));
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->fits);
    EXPECT_EQ(r->verdict, "fits");
}

TEST(Fit, AlternativesAreSizedFromTheShapes) {
    auto r = fit_file(model_path("llama3-tiny.F16"), machine(8 * kGiB, 16 * kGiB));
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->alternatives.size(), 6u);
    EXPECT_EQ(r->alternatives[0].type, "Q8_0");
    for (const FitAlternative& a : r->alternatives) {
        // The file llama-quantize wrote for the same type, within the few bytes of metadata that differ.
        const auto ref = (int64_t)fs::file_size(model_path("llama3-tiny." + a.type));
        EXPECT_NEAR((double)a.weights_bytes, (double)ref, 64.0) << a.type;
        EXPECT_EQ(a.total_bytes - a.weights_bytes, r->need.kv_bytes + r->need.compute_bytes + r->need.vocab_bytes) << a.type;
        EXPECT_TRUE(a.fits);
    }
}

// The expected decode speed: bandwidth over the bytes a token reads (the file less the
// embedding table when llama3-tiny has its own output matrix, plus K/V at a full context);
// none without a bandwidth; the JSON carries it.
TEST(Fit, ExpectedDecodeSpeedFromBandwidth) {
    FitOptions o = machine(8 * kGiB, 16 * kGiB);
    auto none = fit_file(model_path("llama3-tiny.Q8_0"), o);
    ASSERT_TRUE(none.ok());
    EXPECT_EQ(none->decode_tokens_per_second, 0.0);
    EXPECT_FALSE(fit_report_json(*none).contains("expected_decode_tokens_per_second"));

    o.read_bandwidth = 20e9;
    auto r = fit_file(model_path("llama3-tiny.Q8_0"), o);
    ASSERT_TRUE(r.ok());
    auto info = read_gguf_info(model_path("llama3-tiny.Q8_0"));
    ASSERT_TRUE(info.ok());
    int64_t embd = 0;
    bool has_output = false;
    for (const auto& t : info->file->tensors) {
        if (t.name == "token_embd.weight") embd = (int64_t)t.n_bytes;
        has_output = has_output || t.name == "output.weight";
    }
    const int64_t per_token = info->file_bytes - (has_output ? embd : 0);
    EXPECT_EQ(r->decode_bytes_per_token, per_token);
    EXPECT_DOUBLE_EQ(r->decode_tokens_per_second, 20e9 / (double)per_token);
    EXPECT_DOUBLE_EQ(r->decode_tokens_per_second_full_ctx, 20e9 / ((double)per_token + (double)r->need.kv_bytes));
    EXPECT_LT(r->decode_tokens_per_second_full_ctx, r->decode_tokens_per_second);
    // Smaller quantizations decode faster, in proportion to their weights.
    for (size_t i = 1; i < r->alternatives.size(); ++i)
        EXPECT_GT(r->alternatives[i].decode_tokens_per_second, r->alternatives[i - 1].decode_tokens_per_second);
    const auto j = fit_report_json(*r);
    EXPECT_DOUBLE_EQ(j["expected_decode_tokens_per_second"].get<double>(), r->decode_tokens_per_second);
    EXPECT_EQ(j["read_bandwidth_bytes_per_second"].get<double>(), 20e9);
    EXPECT_TRUE(j["alternatives"][0].contains("expected_decode_tokens_per_second"));
}

// The GPU verdict, for a GPU the test describes (gpu_free_bytes): as free memory grows past the
// CUDA executor's working memory, no layer, then the first layer, then the whole model fit —
// the loader's own plan (model::plan_gpu_layers). No GPU: no verdict.
TEST(Fit, GpuVerdictFollowsTheFreeDeviceMemory) {
    if (!model::cuda_runs_architecture("llama")) GTEST_SKIP() << "built without CUDA: no GPU placement";
    FitOptions o = machine(8 * kGiB, 16 * kGiB);
    o.gpu_free_bytes = 0;
    auto none = fit_file(model_path("llama3-tiny.Q8_0"), o);
    ASSERT_TRUE(none.ok());
    EXPECT_EQ(none->gpu.name, "");
    EXPECT_FALSE(fit_report_json(*none).contains("gpu"));

    o.gpu_name = "Test GPU";
    int last_layers = -1;
    std::vector<std::string> kinds;  // verdict kinds in the order they appear
    for (int64_t free = kGiB; free <= kGiB + 64 * kMiB; free += kMiB / 4) {
        o.gpu_free_bytes = free;
        auto r = fit_file(model_path("llama3-tiny.Q8_0"), o);
        ASSERT_TRUE(r.ok());
        EXPECT_EQ(r->gpu.name, "Test GPU");
        EXPECT_EQ(r->gpu.n_layers_total, 2);
        EXPECT_GE(r->gpu.n_layers, last_layers);
        last_layers = r->gpu.n_layers;
        const std::string kind = r->gpu.verdict.substr(0, r->gpu.verdict.find_first_of(":("));
        if (kinds.empty() || kinds.back() != kind) kinds.push_back(kind);
        if (r->gpu.n_layers == 1) {
            EXPECT_NE(r->gpu.verdict.find("1 of 2 layers"), std::string::npos) << r->gpu.verdict;
        }
    }
    EXPECT_EQ(kinds, (std::vector<std::string>{"CPU only", "partial offload", "fits fully on the GPU "}))
        << testing::PrintToString(kinds);
    // Two devices with the same free memory: below what the whole model needs on one, the split
    // over both (model::plan_gpu_split, as the loader would), before any single-device verdict
    // says it fits fully.
    std::vector<int> split;
    std::string split_verdict;
    for (int64_t free = kGiB; free <= kGiB + 64 * kMiB && split.empty(); free += kMiB / 4) {
        o.gpu_free_bytes = free;
        o.other_gpus_free_bytes = {free};
        auto r = fit_file(model_path("llama3-tiny.Q8_0"), o);
        ASSERT_TRUE(r.ok());
        split = r->gpu.split, split_verdict = r->gpu.verdict;
        if (!split.empty()) {
            EXPECT_TRUE(r->gpu.output);
            EXPECT_EQ(r->gpu.n_layers, 2);
            EXPECT_EQ(fit_report_json(*r)["gpu"]["split"], nlohmann::json(split));
            o.other_gpus_free_bytes.clear();  // the same memory on one device: not the whole model
            auto one = fit_file(model_path("llama3-tiny.Q8_0"), o);
            ASSERT_TRUE(one.ok());
            EXPECT_FALSE(one->gpu.output) << one->gpu.verdict;
        }
    }
    EXPECT_EQ(split, (std::vector<int>{1, 1})) << split_verdict;
    EXPECT_EQ(split_verdict.rfind("fits on 2 GPUs, split by layers 1 + 1", 0), 0u) << split_verdict;
    o.other_gpus_free_bytes.clear();
    o.gpu_free_bytes = 80 * kGiB;
    auto full = fit_file(model_path("llama3-tiny.Q8_0"), o);
    ASSERT_TRUE(full.ok());
    EXPECT_TRUE(full->gpu.output);
    EXPECT_EQ(full->gpu.verdict, "fits fully on the GPU (Test GPU, 80.0 GiB free)");
    const auto j = fit_report_json(*full);
    EXPECT_EQ(j["gpu"]["layers"].get<int>(), 2);
    EXPECT_TRUE(j["gpu"]["output"].get<bool>());
    // gemma3 runs on the GPU whole but is not split (partial offload is llama-style only): where
    // only some of its layers fit, the loader keeps it on the CPU, and the verdict says so.
    auto gemma = fit_file(model_path("gemma3-tiny.Q8_0"), o);
    ASSERT_TRUE(gemma.ok());
    EXPECT_TRUE(gemma->gpu.supported);
    EXPECT_TRUE(gemma->gpu.output) << gemma->gpu.verdict;
    bool split_refused = false;
    for (int64_t free = kGiB; free <= kGiB + 64 * kMiB && !split_refused; free += kMiB / 4) {
        o.gpu_free_bytes = free;
        auto r = fit_file(model_path("gemma3-tiny.Q8_0"), o);
        ASSERT_TRUE(r.ok());
        EXPECT_EQ(r->gpu.verdict.find("partial offload:"), std::string::npos) << r->gpu.verdict;
        if (r->gpu.verdict.find("llama-style families only") == std::string::npos) continue;
        split_refused = true;
        EXPECT_EQ(r->gpu.n_layers, 0);
        EXPECT_FALSE(r->gpu.output);
    }
    EXPECT_TRUE(split_refused);
}

TEST(Fit, DoesNotFitSuggestsAContextAndAQuantization) {
    const int64_t kv_per_position = 2 * 2 * 2 * 64 * 2;  // f16 K and V of 2 layers, 2 heads of 64: 1 KiB
    FitOptions o = machine(8 * kGiB, 16 * kGiB);
    o.num_ctx = 65536;
    auto full = fit_file(model_path("llama3-tiny.F16"), o);
    ASSERT_TRUE(full.ok());
    ASSERT_EQ(full->need.kv_bytes, 65536 * kv_per_position);

    // 100 KB short: Q8_0 weights (0.86 MB smaller) would fit, and so would 1024 positions (1 MiB) less.
    o.mem_available = full->need.total_bytes() - 100000;
    o.mem_total = 2 * kGiB;
    auto r = fit_file(model_path("llama3-tiny.F16"), o);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_FALSE(r->fits);
    EXPECT_EQ(r->spare_bytes, -100000);
    EXPECT_EQ(r->suggested_num_ctx, 64512);
    EXPECT_EQ(r->suggested_type, "Q8_0");  // the largest smaller quantization that fits
    EXPECT_EQ(r->verdict.rfind("does not fit: needs 80 MiB, 80 MiB available", 0), 0u) << r->verdict;
    EXPECT_NE(r->verdict.find("try num_ctx 64512 or a smaller quantization (Q8_0 would need 79 MiB)"),
              std::string::npos)
        << r->verdict;
    EXPECT_NE(r->verdict.find("the machine has 2.0 GiB in all"), std::string::npos) << r->verdict;

    // Room for 4096 positions only: no quantization helps, a smaller context does.
    o.mem_available = full->need.weights_bytes + full->need.compute_bytes + full->need.vocab_bytes + 4096 * kv_per_position + 1000;
    r = fit_file(model_path("llama3-tiny.F16"), o);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->fits);
    EXPECT_EQ(r->suggested_num_ctx, 4096);
    EXPECT_TRUE(r->suggested_type.empty());
    EXPECT_NE(r->verdict.find("available — try num_ctx 4096;"), std::string::npos) << r->verdict;
    EXPECT_EQ(r->verdict.find("even"), std::string::npos) << "the KV cache is nearly all of it: " << r->verdict;

    // Nothing fits: no suggestion.
    o.mem_available = 10 * kMiB;
    o.mem_total = 10 * kMiB;
    r = fit_file(model_path("llama3-tiny.F16"), o);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->fits);
    EXPECT_EQ(r->suggested_num_ctx, 0);
    EXPECT_TRUE(r->suggested_type.empty());
    EXPECT_EQ(r->verdict.find("try"), std::string::npos) << r->verdict;
    EXPECT_EQ(r->verdict.find("in all"), std::string::npos) << r->verdict;
}

TEST(Fit, ParallelAndKvTypeScaleTheCache) {
    FitOptions o = machine(8 * kGiB, 16 * kGiB);
    o.num_ctx = 2048;
    auto one = fit_file(model_path("llama3-tiny.F16"), o);
    o.n_parallel = 4;
    auto four = fit_file(model_path("llama3-tiny.F16"), o);
    o.kv_type = "q4_0";
    auto q4 = fit_file(model_path("llama3-tiny.F16"), o);
    ASSERT_TRUE(one.ok() && four.ok() && q4.ok());
    EXPECT_EQ(four->need.kv_bytes, 4 * one->need.kv_bytes);
    EXPECT_EQ(four->n_parallel, 4);
    EXPECT_EQ(q4->need.kv_bytes, four->need.kv_bytes / 64 * 18);
    EXPECT_EQ(q4->kv_type, "q4_0");

    // 0: an automatic pool, as the daemon sizes it (a quarter of free memory, at most twice
    // what 32 sequences need).
    o.kv_type = "f16";
    o.n_parallel = 0;
    auto autop = fit_file(model_path("llama3-tiny.F16"), o);
    ASSERT_TRUE(autop.ok());
    EXPECT_EQ(autop->n_parallel, 32);
    EXPECT_EQ(autop->need.kv_bytes, 64 * one->need.kv_bytes);

    o.kv_type = "q5_k";
    auto bad = fit_file(model_path("llama3-tiny.F16"), o);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().code(), StatusCode::invalid_argument);
    EXPECT_NE(bad.status().message().find("q5_k"), std::string::npos);
}

TEST(Fit, FromAStoreNameOrPath) {
    gguf::test::ScratchDir dir;
    Store st(dir.path());
    auto r = fit_model(st, model_path("qwen3moe-tiny.Q8_0"), machine(kGiB, kGiB));
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_TRUE(r->fits);
    EXPECT_EQ(r->architecture, "qwen3moe");
    EXPECT_EQ(r->quantization, "Q8_0");
    auto missing = fit_model(st, "no-such-model", machine(kGiB, kGiB));
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.status().code(), StatusCode::not_found);
}

TEST(Fit, ReadsTheMachineWhenNotTold) {
    auto r = fit_file(model_path("llama3-tiny.Q4_0"), FitOptions{});
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_GT(r->mem_available, 0);
    EXPECT_GE(r->mem_total, r->mem_available);
}

// ---- from a header ----

TEST(FitFromHeader, FirstBytesGiveTheSameReportAsTheFile) {
    const std::string path = model_path("llama3-tiny.Q4_K_M");
    const std::vector<std::byte> all = read_bytes(path);
    auto file = gguf::parse_gguf(all);
    ASSERT_TRUE(file.ok());
    const size_t header = (size_t)file->data_offset;
    ASSERT_LT(header, all.size());

    const FitOptions o = machine(4 * kGiB, 8 * kGiB);
    auto want = fit_file(path, o);
    ASSERT_TRUE(want.ok());
    for (size_t n : {header, header + 1000, all.size()}) {
        auto got = fit_from_header(std::span(all.data(), n), (int64_t)all.size(), o);
        ASSERT_TRUE(got.ok()) << n << ": " << got.status().message();
        EXPECT_EQ(fit_report_json(*got).dump(), fit_report_json(*want).dump()) << n;
    }
}

TEST(FitFromHeader, TooFewBytesAskForMore) {
    const std::vector<std::byte> all = read_bytes(model_path("llama3-tiny.F16"));
    auto file = gguf::parse_gguf(all);
    ASSERT_TRUE(file.ok());
    // Cut inside the vocabulary, inside the tensor infos, and in the padding before the data.
    for (size_t n : {size_t{100}, size_t{4000}, (size_t)file->data_offset - 200, (size_t)file->data_offset - 1}) {
        auto r = fit_from_header(std::span(all.data(), n), (int64_t)all.size(), machine(kGiB, kGiB));
        ASSERT_FALSE(r.ok()) << n;
        EXPECT_EQ(r.status().code(), StatusCode::out_of_range) << n << ": " << r.status().message();
        EXPECT_NE(r.status().message().find("fetch more"), std::string::npos) << r.status().message();
        EXPECT_EQ(r.status().message().find("/proc/self/fd"), std::string::npos) << r.status().message();
    }
}

TEST(FitFromHeader, BadInputs) {
    const std::vector<std::byte> all = read_bytes(model_path("llama3-tiny.F16"));
    auto r = fit_from_header(std::span(all.data(), 1000), 999, machine(kGiB, kGiB));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::invalid_argument);
    r = fit_from_header(std::span(all.data(), 1000), 0, machine(kGiB, kGiB));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::invalid_argument);

    std::vector<std::byte> junk(4096, std::byte{0x5a});
    r = fit_from_header(junk, (int64_t)junk.size(), machine(kGiB, kGiB));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::corrupt);
    EXPECT_NE(r.status().message().find("not a GGUF file"), std::string::npos) << r.status().message();
}

// The header bytes of a GGUF with `meta` and `tensors` (data not included); `file_size` gets
// the size of the whole file.
void put_value(gguf::test::RawGguf& g, const gguf::Value& v) {
    using gguf::ValueType;
    switch (v.type) {
        case ValueType::u8: case ValueType::boolean: g.put<uint8_t>((uint8_t)v.u); break;
        case ValueType::i8: g.put<int8_t>((int8_t)v.i); break;
        case ValueType::u16: g.put<uint16_t>((uint16_t)v.u); break;
        case ValueType::i16: g.put<int16_t>((int16_t)v.i); break;
        case ValueType::u32: g.put<uint32_t>((uint32_t)v.u); break;
        case ValueType::i32: g.put<int32_t>((int32_t)v.i); break;
        case ValueType::u64: g.put<uint64_t>(v.u); break;
        case ValueType::i64: g.put<int64_t>(v.i); break;
        case ValueType::f32: g.put<float>((float)v.f); break;
        case ValueType::f64: g.put<double>(v.f); break;
        case ValueType::string: g.str(v.str); break;
        case ValueType::array:
            g.u32((uint32_t)v.elem_type).u64(v.items.size());
            for (const auto& item : v.items) put_value(g, item);
            break;
    }
}

std::vector<std::byte> synth_header(const model::SynthPlan& plan, int64_t& file_size) {
    gguf::test::RawGguf g;
    g.header(plan.tensors.size(), plan.meta.entries().size());
    for (const auto& [key, value] : plan.meta.entries()) {
        g.str(key).u32((uint32_t)value.type);
        put_value(g, value);
    }
    uint64_t offset = 0;
    for (const model::SynthTensor& t : plan.tensors) {
        g.tensor(t.name, std::vector<uint64_t>(t.ne.begin(), t.ne.end()), (uint32_t)t.type, offset);
        offset += (t.n_bytes + 31) / 32 * 32;
    }
    g.pad_to(32);
    file_size = (int64_t)(g.bytes.size() + offset);
    return g.bytes;
}

Result<model::SynthPlan> synth_plan(const char* preset, const char* type) {
    model::SynthOptions so;
    HEARTH_ASSIGN(so.config, model::find_synth_preset(preset, ""));
    HEARTH_ASSIGN(so.type, model::parse_synth_type(type));
    return model::plan_synth(so);
}

// An 8B llama in Q4_K_M (4.6 GiB) with 8192 positions of f16 KV (1 GiB), from its header alone.
TEST(FitFromHeader, FullSizeModel) {
    auto plan = synth_plan("llama3.1-8b", "Q4_K_M");
    ASSERT_TRUE(plan.ok()) << plan.status().message();
    int64_t file_size = 0;
    const std::vector<std::byte> header = synth_header(*plan, file_size);
    ASSERT_GT(file_size, 4 * kGiB);
    FitOptions o = machine(8 * kGiB, 16 * kGiB);
    o.num_ctx = 8192;
    auto r = fit_from_header(header, file_size, o);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->need.weights_bytes, file_size);
    EXPECT_EQ(r->need.kv_bytes, 32ll * 2 * 8 * 128 * 8192 * 2);  // layers x (K+V) x kv heads x head dim x ctx x f16
    EXPECT_EQ(r->need.compute_bytes, 512ll * 4096 * 48 + 128256ll * 4 + 8 * kMiB);
    EXPECT_EQ(r->quantization, "Q4_K_M");
    EXPECT_EQ(r->parameter_size, "8.0B");
    EXPECT_TRUE(r->fits) << r->verdict;

    // 5 GiB free: the weights fit, the context does not.
    o.mem_available = 5 * kGiB;
    r = fit_from_header(header, file_size, o);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->fits);
    EXPECT_GT(r->suggested_num_ctx, 0);
    EXPECT_LT(r->suggested_num_ctx, 8192);
    EXPECT_EQ(r->suggested_num_ctx % 1024, 0);
    std::printf("%s\n", r->verdict.c_str());
}

// A 70B F16 model (131.4 GiB of weights, 1.25 GiB of KV for 4096 positions) on a 32 GiB machine: no context helps, and even Q2_K is too big.
TEST(FitFromHeader, HugeModelOnASmallMachine) {
    auto plan = synth_plan("llama3.1-70b", "F16");
    ASSERT_TRUE(plan.ok()) << plan.status().message();
    int64_t file_size = 0;
    const std::vector<std::byte> header = synth_header(*plan, file_size);
    auto r = fit_from_header(header, file_size, machine(20 * kGiB, 32 * kGiB));
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_FALSE(r->fits);
    EXPECT_EQ(r->suggested_num_ctx, 0);
    EXPECT_TRUE(r->suggested_type.empty());
    EXPECT_EQ(r->verdict.rfind("does not fit: needs 132.9 GiB, 20.0 GiB available (even Q2_K would need 26.1 GiB)", 0), 0u) << r->verdict;
    EXPECT_EQ(r->verdict.find("in all"), std::string::npos) << r->verdict;

    // 44 GiB: Q4_K_M (39.6 GiB + 1.4 GiB of KV and scratch) is the best that fits; Q5_K_M needs 48.0.
    r = fit_from_header(header, file_size, machine(44 * kGiB, 64 * kGiB));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->suggested_type, "Q4_K_M");
    EXPECT_NE(r->verdict.find("try a smaller quantization (Q4_K_M would need 41."), std::string::npos) << r->verdict;
}

// The Q4_K_M the report proposes for a 70B F16 model (141 GB) is the size llama-quantize's mix
// gives those shapes, and model/synth's own rendering of the mixes agrees tensor by tensor.
TEST(FitFromHeader, AlternativesAgreeWithSynthsMixes) {
    for (const char* preset : {"llama3.1-8b", "llama3.1-70b", "qwen3-30b-a3b", "mixtral-8x7b"}) {
        auto f16 = synth_plan(preset, "F16");
        ASSERT_TRUE(f16.ok()) << preset << ": " << f16.status().message();
        int64_t file_size = 0;
        const std::vector<std::byte> header = synth_header(*f16, file_size);
        auto file = gguf::parse_gguf(std::span(header));  // header only: parse_gguf wants the data
        ASSERT_FALSE(file.ok());

        FitOptions o = machine(64 * kGiB, 128 * kGiB);
        // Not Q6_K: synth writes it as a pure type, while llama-quantize's rules also apply to
        // it (8-expert models get Q8_0 attn_k/attn_v, as mixtral-tiny.Q4_0 shows).
        o.alternatives = {"Q8_0", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q3_K_M"};
        auto r = fit_from_header(header, file_size, o);
        ASSERT_TRUE(r.ok()) << preset << ": " << r.status().message();
        ASSERT_EQ(r->alternatives.size(), o.alternatives.size());
        for (const FitAlternative& a : r->alternatives) {
            auto q = synth_plan(preset, a.type.c_str());
            ASSERT_TRUE(q.ok()) << preset << " " << a.type;
            int64_t q_size = 0;
            synth_header(*q, q_size);
            EXPECT_NEAR((double)a.weights_bytes, (double)q_size, 64.0) << preset << " " << a.type;
        }
        std::printf("%-14s %s\n", preset, r->verdict.c_str());
    }
}

TEST(FitReportJson, HasTheNumbers) {
    auto r = fit_file(model_path("llama3-tiny.F16"), machine(8 * kGiB, 16 * kGiB));
    ASSERT_TRUE(r.ok());
    const auto j = fit_report_json(*r);
    EXPECT_EQ(j["total_bytes"].get<int64_t>(), r->need.total_bytes());
    EXPECT_EQ(j["fits"].get<bool>(), true);
    EXPECT_EQ(j["alternatives"].size(), 6u);
    EXPECT_EQ(j["verdict"].get<std::string>(), r->verdict);
}

}  // namespace
}  // namespace hearth::store

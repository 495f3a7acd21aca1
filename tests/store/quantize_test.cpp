// store::quantize_gguf against llama-quantize: the shared test data's quantized files were made
// by llama-quantize from F16-exact weights, so quantizing the shipped F16 files must give the
// same per-tensor types and, since quant/'s reference quantizers are bit-exact with ggml's, the
// same tensor bytes (testdata/README.md §2 and §5).
#include "store/quantize.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/mmap.h"
#include "model/model.h"
#include "model/session.h"
#include "support/testdata.h"

namespace hearth::store {
namespace {
namespace fs = std::filesystem;

std::string model_path(const std::string& name) { return hearth::test::testdata_path("models/" + name + ".gguf"); }

// A fresh folder under the system's temporary folder, removed with its contents at the end.
class TempDir {
public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "hearth-quantize-XXXXXX").string();
        dir_ = mkdtemp(tmpl.data()) ? tmpl : "";
    }
    ~TempDir() {
        std::error_code ec;
        if (!dir_.empty()) {
            fs::permissions(dir_, fs::perms::owner_all, ec);
            fs::remove_all(dir_, ec);
        }
    }
    std::string path(const std::string& name) const { return dir_ + "/" + name; }
    const std::string& dir() const { return dir_; }
    std::vector<std::string> entries() const {
        std::vector<std::string> out;
        for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
        return out;
    }

private:
    std::string dir_;
};

// Quantizes testdata model `source` to `type` in `dir`, returning the output path ("" on error,
// with a test failure).
std::string quantize_to(const TempDir& dir, const std::string& source, const std::string& type, int n_threads = 2) {
    const std::string out = dir.path(source + "." + type + ".gguf");
    QuantizeOptions opt;
    opt.type = type;
    opt.n_threads = n_threads;
    Status st = quantize_gguf(model_path(source), out, opt);
    if (!st.ok()) {
        ADD_FAILURE() << source << " -> " << type << ": " << st.message();
        return "";
    }
    return out;
}

// ---- types and plans ----

TEST(QuantizeTypes, NamesParseAndUnknownIsAnError) {
    const auto names = quantize_type_names();
    for (const char* want : {"Q4_K_M", "Q5_K_M", "Q3_K_M", "Q8_0", "F16", "BF16", "F32", "Q2_K", "IQ4_XS"})
        EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
    for (const std::string& n : names) {
        auto t = parse_quantize_type(n);
        ASSERT_TRUE(t.ok()) << n;
        EXPECT_EQ(t->name, n);
        // Every base type can be quantized to and run.
        EXPECT_NE(quant::traits(t->base).quantize_row, nullptr) << n;
        EXPECT_TRUE(quant::can_compute(t->base)) << n;
    }
    auto t = parse_quantize_type("q4_K_m");  // Ollama's spelling
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->name, "Q4_K_M");
    EXPECT_EQ(t->file_type, 15u);
    EXPECT_EQ(t->base, quant::QuantType::q4_k);
    t = parse_quantize_type("q4_k");  // llama-quantize's alias for the medium mix
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->name, "Q4_K_M");
    for (const char* bad : {"", "q4", "Q4_K_X", "IQ2_XXS", "fp16"}) {
        auto r = parse_quantize_type(bad);
        ASSERT_FALSE(r.ok()) << bad;
        EXPECT_EQ(r.status().code(), StatusCode::invalid_argument);
        EXPECT_NE(r.status().message().find("Q4_K_M"), std::string::npos) << "lists the accepted names";
    }
}

// The plan reads only shapes and names: the file size it predicts is the size llama-quantize's
// file has (same metadata size, same alignment).
TEST(QuantizePlan, PredictsTheReferenceFileSize) {
    auto src = gguf::open_gguf(model_path("llama3-tiny.F16"));
    ASSERT_TRUE(src.ok());
    for (const char* type : {"Q8_0", "Q4_K_M", "Q6_K", "Q4_0", "Q2_K"}) {
        auto plan = plan_quantize(**src, type);
        ASSERT_TRUE(plan.ok()) << plan.status().message();
        const auto ref_size = fs::file_size(model_path(std::string("llama3-tiny.") + type));
        // The source's header differs from the output's by general.file_type and
        // general.quantization_version only.
        EXPECT_NEAR((double)plan->file_bytes, (double)ref_size, 64.0) << type;
        EXPECT_TRUE(plan->notes.empty()) << type;
    }
}

// ---- against llama-quantize's files ----

struct RefCase {
    const char* source;  // testdata model (F16)
    const char* type;    // target; the reference file is <model>.<type>.gguf
};

const RefCase kRefCases[] = {
    {"llama3-tiny.F16", "Q8_0"},     {"llama3-tiny.F16", "Q4_K_M"},  {"llama3-tiny.F16", "Q6_K"},
    {"llama3-tiny.F16", "Q4_0"},     {"llama3-tiny.F16", "BF16"},    {"llama3-tiny.F16", "Q5_1"},
    {"llama3-tiny.F16", "Q5_K_M"},   {"llama3-tiny.F16", "Q5_0"},    {"llama3-tiny.F16", "Q4_1"},
    {"llama3-tiny.F16", "IQ4_NL"},   {"llama3-tiny.F16", "IQ4_XS"},  {"llama3-tiny.F16", "Q3_K_M"},
    {"llama3-tiny.F16", "Q2_K"},     {"qwen3moe-tiny.F16", "Q8_0"},  {"qwen3moe-tiny.F16", "MXFP4_MOE"},
    {"mixtral-tiny.F16", "Q4_0"},    {"gpt-oss-tiny.F16", "MXFP4_MOE"}, {"llama4-tiny.F16", "Q8_0"},
    {"deepseek2-tiny.F16", "Q8_0"},  {"gemma3-tiny.F16", "Q8_0"},   {"phi3-tiny.F16", "Q4_K_M"},
};

class QuantizeMatchesLlamaCpp : public ::testing::TestWithParam<RefCase> {};

TEST_P(QuantizeMatchesLlamaCpp, SameTypesAndBytes) {
    const RefCase c = GetParam();
    const std::string model = std::string(c.source).substr(0, std::string(c.source).rfind('.'));
    TempDir dir;
    const std::string out = quantize_to(dir, c.source, c.type);
    ASSERT_FALSE(out.empty());
    auto ours = gguf::open_gguf(out);
    ASSERT_TRUE(ours.ok()) << ours.status().message();
    auto ref = gguf::open_gguf(model_path(model + "." + c.type));
    ASSERT_TRUE(ref.ok()) << ref.status().message();

    EXPECT_EQ((*ours)->meta.get_int("general.file_type").value(), (*ref)->meta.get_int("general.file_type").value());
    EXPECT_EQ((*ours)->meta.get_int("general.quantization_version").value(), 2);
    for (const auto& [key, value] : (*ref)->meta.entries()) EXPECT_TRUE((*ours)->meta.has(key)) << key;

    ASSERT_EQ((*ours)->tensors.size(), (*ref)->tensors.size());
    int identical = 0;
    for (const gguf::TensorInfo& r : (*ref)->tensors) {
        const gguf::TensorInfo* t = (*ours)->find_tensor(r.name);
        ASSERT_NE(t, nullptr) << r.name;
        EXPECT_EQ(quant::type_name(t->type), std::string(quant::type_name(r.type))) << r.name;
        EXPECT_EQ(t->shape_string(), r.shape_string()) << r.name;
        if (t->type != r.type || t->n_bytes != r.n_bytes) continue;
        const bool same = std::memcmp(t->data, r.data, r.n_bytes) == 0;
        EXPECT_TRUE(same) << r.name << " (" << quant::type_name(r.type) << ") differs from llama-quantize's bytes";
        identical += same;
    }
    EXPECT_EQ(identical, (int)(*ref)->tensors.size());
}

INSTANTIATE_TEST_SUITE_P(Files, QuantizeMatchesLlamaCpp, ::testing::ValuesIn(kRefCases), [](const auto& info) {
    std::string n = std::string(info.param.source) + "_to_" + info.param.type;
    std::replace_if(n.begin(), n.end(), [](char ch) { return !std::isalnum((unsigned char)ch); }, '_');
    return n;
});

// A small file of F32 weights with the given row lengths (4 rows each), as blk.0.<name>.weight.
std::vector<std::byte> small_model(const std::vector<std::pair<std::string, int64_t>>& tensors, float poison = 0.5f) {
    gguf::GgufWriter w;
    w.set("general.architecture", gguf::Value::make_string("llama"));
    w.set("llama.block_count", gguf::Value::make_u32(1));
    for (const auto& [name, row] : tensors) {
        std::vector<float> v((size_t)(row * 4), 0.25f);
        v[1] = poison;
        EXPECT_TRUE(w.add_tensor("blk.0." + name + ".weight", quant::QuantType::f32, {row, 4},
                                 std::as_bytes(std::span(v)))
                        .ok());
    }
    return w.to_bytes();
}

// Rows that do not fill the chosen type's blocks: llama-quantize's replacements, and F16 where it
// has none (it would stop).
TEST(QuantizePlan, ShortRowsFallBack) {
    const auto bytes = small_model({{"attn_q", 96}, {"ffn_up", 16}, {"attn_v", 64}});
    auto f = gguf::parse_gguf(bytes);
    ASSERT_TRUE(f.ok()) << f.status().message();
    auto plan = plan_quantize(*f, "Q4_K_M");
    ASSERT_TRUE(plan.ok());
    EXPECT_EQ(plan->tensors[0].to, quant::QuantType::q5_0);  // Q4_K -> Q5_0
    EXPECT_EQ(plan->tensors[1].to, quant::QuantType::f16);   // Q5_0 does not fit 16 either
    EXPECT_EQ(plan->tensors[2].to, quant::QuantType::q8_0);  // attn_v of the last layer: Q6_K -> Q8_0
    EXPECT_TRUE(plan->tensors[0].fallback && plan->tensors[1].fallback && plan->tensors[2].fallback);
    EXPECT_EQ(plan->notes.size(), 3u);
    plan = plan_quantize(*f, "Q8_0");
    ASSERT_TRUE(plan.ok());
    EXPECT_EQ(plan->tensors[0].to, quant::QuantType::q8_0);
    EXPECT_EQ(plan->tensors[1].to, quant::QuantType::f16);  // llama-quantize has no fallback for Q8_0
    ASSERT_EQ(plan->notes.size(), 1u);
    EXPECT_NE(plan->notes[0].find("stored as F16 (first: blk.0.ffn_up.weight)"), std::string::npos) << plan->notes[0];
}

TEST(Quantize, NanInTheSourceIsAnErrorNamingTheTensor) {
    TempDir dir;
    const auto bytes = small_model({{"attn_q", 32}, {"attn_k", 32}}, std::nanf(""));
    const std::string in = dir.path("nan.gguf");
    ASSERT_TRUE(write_file_atomic(in, bytes).ok());
    QuantizeOptions opt;
    opt.type = "Q8_0";
    Status st = quantize_gguf(in, dir.path("out.gguf"), opt);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), StatusCode::corrupt);
    EXPECT_NE(st.message().find("tensor blk.0.attn_q.weight: row 0 holds NaN or infinity"), std::string::npos)
        << st.message();
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"nan.gguf"});
}

// ---- the quantized models run ----

std::vector<float> prompt_logits(const std::string& path, const std::vector<int32_t>& prompt, int64_t& n_vocab) {
    auto file = gguf::open_gguf(path);
    if (!file.ok()) {
        ADD_FAILURE() << file.status().message();
        return {};
    }
    auto m = model::load_model(*file, model::LoadOptions{2});
    if (!m.ok()) {
        ADD_FAILURE() << path << ": " << m.status().message();
        return {};
    }
    n_vocab = (*m)->hparams().n_vocab;
    auto session = model::Session::create(**m, 512, 32, quant::QuantType::f32);
    if (!session.ok()) {
        ADD_FAILURE() << session.status().message();
        return {};
    }
    std::vector<float> logits;
    Status st = session->eval(prompt, true, logits);
    if (!st.ok()) ADD_FAILURE() << st.message();
    return logits;
}

std::vector<int32_t> golden_prompt(const std::string& golden) {
    const auto j = nlohmann::json::parse(hearth::test::read_text_file(hearth::test::testdata_path("golden/" + golden + ".json")));
    return j["prompt_tokens"].get<std::vector<int32_t>>();
}

struct Closeness {
    double max_abs = 0, mean_abs = 0;
    double top1 = 0;  // share of positions with the same argmax
};

Closeness compare(const std::vector<float>& a, const std::vector<float>& b, int64_t n_vocab) {
    Closeness c;
    const int64_t rows = (int64_t)a.size() / n_vocab;
    int same = 0;
    for (int64_t r = 0; r < rows; ++r) {
        const float* x = a.data() + r * n_vocab;
        const float* y = b.data() + r * n_vocab;
        for (int64_t i = 0; i < n_vocab; ++i) {
            const double d = std::fabs((double)x[i] - y[i]);
            c.max_abs = std::max(c.max_abs, d);
            c.mean_abs += d;
        }
        same += std::max_element(x, x + n_vocab) - x == std::max_element(y, y + n_vocab) - y;
    }
    c.mean_abs /= (double)a.size();
    c.top1 = (double)same / (double)rows;
    return c;
}

struct LogitsCase {
    const char* type;
    double max_abs_vs_f16;  // loose: the quantization error of random weights (README §4 lists it)
};

class QuantizedModelRuns : public ::testing::TestWithParam<LogitsCase> {};

// Our file loads, gives exactly the logits of llama.cpp's file (same bytes, same engine), and
// stays near the F16 model's.
TEST_P(QuantizedModelRuns, LogitsEqualLlamaCppsFileAndNearF16) {
    const LogitsCase c = GetParam();
    TempDir dir;
    const std::string out = quantize_to(dir, "llama3-tiny.F16", c.type);
    ASSERT_FALSE(out.empty());
    const std::vector<int32_t> prompt = golden_prompt("llama3-tiny.F16");
    int64_t n_vocab = 0;
    const auto ours = prompt_logits(out, prompt, n_vocab);
    const auto ref = prompt_logits(model_path(std::string("llama3-tiny.") + c.type), prompt, n_vocab);
    const auto f16 = prompt_logits(model_path("llama3-tiny.F16"), prompt, n_vocab);
    ASSERT_EQ(ours.size(), prompt.size() * n_vocab);
    ASSERT_EQ(ref.size(), ours.size());
    ASSERT_EQ(f16.size(), ours.size());
    EXPECT_EQ(std::memcmp(ours.data(), ref.data(), ours.size() * sizeof(float)), 0);
    const Closeness d = compare(ours, f16, n_vocab);
    std::printf("[ %s vs F16 ] max-abs %.3f mean-abs %.3f top-1 %.0f%%\n", c.type, d.max_abs, d.mean_abs, 100 * d.top1);
    EXPECT_LE(d.max_abs, c.max_abs_vs_f16);
    EXPECT_GE(d.top1, 0.5);
}

INSTANTIATE_TEST_SUITE_P(Types, QuantizedModelRuns,
                         ::testing::Values(LogitsCase{"Q8_0", 0.6}, LogitsCase{"Q6_K", 2.0}, LogitsCase{"Q4_K_M", 5.0},
                                           LogitsCase{"Q4_0", 6.0}),
                         [](const auto& info) { return std::string(info.param.type); });

// 3-D expert tensors ([n_embd, n_ff_exp, n_expert]) quantized row by row, with the 8-expert rules
// (attn_k/attn_v Q8_0, attn_output Q5_K) and the row-length fallbacks of a 64-wide model.
TEST(Quantize, MoeModelToQ4KMLoadsAndRuns) {
    TempDir dir;
    std::vector<std::string> notes;
    const std::string out = dir.path("moe.Q4_K_M.gguf");
    QuantizeOptions opt;
    opt.type = "Q4_K_M";
    opt.n_threads = 3;
    opt.on_note = [&](const std::string& line) { notes.push_back(line); };
    Status st = quantize_gguf(model_path("qwen3moe-tiny.F16"), out, opt);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_FALSE(notes.empty()) << "rows of 64 do not fill Q4_K's 256-blocks: the fallback is reported";

    auto f = gguf::open_gguf(out);
    ASSERT_TRUE(f.ok());
    const gguf::TensorInfo* exps = (*f)->find_tensor("blk.0.ffn_gate_exps.weight");
    ASSERT_NE(exps, nullptr);
    EXPECT_EQ(exps->n_dims, 3);
    EXPECT_EQ(exps->type, quant::QuantType::q5_0);  // Q4_K's fallback for rows of 64
    EXPECT_EQ((*f)->find_tensor("blk.0.attn_v.weight")->type, quant::QuantType::q8_0);
    EXPECT_EQ((*f)->find_tensor("blk.1.attn_k.weight")->type, quant::QuantType::q8_0);
    EXPECT_EQ((*f)->find_tensor("output.weight")->type, quant::QuantType::q8_0);
    EXPECT_EQ((*f)->find_tensor("blk.0.ffn_gate_inp.weight")->type, quant::QuantType::f32);  // router kept
    EXPECT_EQ((*f)->meta.get_int("general.file_type").value(), 15);

    const std::vector<int32_t> prompt = golden_prompt("qwen3moe-tiny.F16");
    int64_t n_vocab = 0;
    const auto ours = prompt_logits(out, prompt, n_vocab);
    const auto f16 = prompt_logits(model_path("qwen3moe-tiny.F16"), prompt, n_vocab);
    ASSERT_EQ(ours.size(), prompt.size() * n_vocab);
    ASSERT_EQ(f16.size(), ours.size());
    for (float x : ours) ASSERT_TRUE(std::isfinite(x));
    const Closeness d = compare(ours, f16, n_vocab);
    std::printf("[ qwen3moe Q4_K_M vs F16 ] max-abs %.3f mean-abs %.3f top-1 %.0f%%\n", d.max_abs, d.mean_abs, 100 * d.top1);
    EXPECT_LE(d.mean_abs, 1.0);
    EXPECT_GE(d.top1, 0.5);
}

// ---- behaviour ----

TEST(Quantize, SameBytesForAnyThreadCountAndProgressReachesTheTotal) {
    TempDir dir;
    std::atomic<int64_t> last_done{0}, last_total{0}, calls{0};
    QuantizeOptions opt;
    opt.type = "Q4_K_M";
    opt.n_threads = 1;
    opt.progress = [&](int64_t done, int64_t total) {
        calls++;
        int64_t prev = last_done.load();
        while (done > prev && !last_done.compare_exchange_weak(prev, done)) {
        }
        last_total = total;
    };
    ASSERT_TRUE(quantize_gguf(model_path("llama3-tiny.F16"), dir.path("a.gguf"), opt).ok());
    EXPECT_GT(calls.load(), 1);
    EXPECT_EQ(last_done.load(), last_total.load());
    opt.n_threads = 4;
    opt.progress = nullptr;
    ASSERT_TRUE(quantize_gguf(model_path("llama3-tiny.F16"), dir.path("b.gguf"), opt).ok());
    std::vector<uint8_t> a, b;
    ASSERT_TRUE(hearth::test::read_file(dir.path("a.gguf"), a));
    ASSERT_TRUE(hearth::test::read_file(dir.path("b.gguf"), b));
    EXPECT_TRUE(a == b);
}

TEST(Quantize, UnknownTypeWritesNothing) {
    TempDir dir;
    QuantizeOptions opt;
    opt.type = "Q4_K_X";
    Status st = quantize_gguf(model_path("llama3-tiny.F16"), dir.path("out.gguf"), opt);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), StatusCode::invalid_argument);
    EXPECT_NE(st.message().find("Q4_K_X"), std::string::npos);
    EXPECT_TRUE(dir.entries().empty());
}

TEST(Quantize, UnwritableOutputLeavesNothingBehind) {
    TempDir dir;
    QuantizeOptions opt;
    opt.type = "Q8_0";
    // A folder that does not exist.
    Status st = quantize_gguf(model_path("llama3-tiny.F16"), dir.path("missing/out.gguf"), opt);
    ASSERT_FALSE(st.ok());
    EXPECT_TRUE(st.code() == StatusCode::not_found || st.code() == StatusCode::io_error) << st.message();
    EXPECT_NE(st.message().find("missing/out.gguf"), std::string::npos) << st.message();
    // A read-only folder (root ignores permissions: nothing to test there).
    if (geteuid() != 0) {
        const std::string ro = dir.path("ro");
        ASSERT_EQ(mkdir(ro.c_str(), 0555), 0);
        st = quantize_gguf(model_path("llama3-tiny.F16"), ro + "/out.gguf", opt);
        ASSERT_FALSE(st.ok());
        EXPECT_EQ(st.code(), StatusCode::io_error);
        EXPECT_TRUE(fs::is_empty(ro));
    }
    // An existing file is left as it was when quantizing fails.
    const std::string keep = dir.path("keep.gguf");
    { std::ofstream(keep) << "old"; }
    opt.type = "Q4_K_M";
    st = quantize_gguf(model_path("llama3-tiny.Q8_0"), keep, opt);  // refused: already quantized
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(hearth::test::read_text_file(keep), "old");
    for (const std::string& e : dir.entries()) EXPECT_EQ(e.find(".tmp"), std::string::npos) << e;
}

TEST(Quantize, AlreadyQuantizedSourceIsRefusedUnlessAllowed) {
    TempDir dir;
    QuantizeOptions opt;
    opt.type = "Q4_K_M";
    Status st = quantize_gguf(model_path("llama3-tiny.Q8_0"), dir.path("out.gguf"), opt);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), StatusCode::invalid_argument);
    EXPECT_NE(st.message().find("already quantized (Q8_0)"), std::string::npos) << st.message();
    EXPECT_TRUE(dir.entries().empty());

    // The same type again converts nothing: a copy, allowed.
    opt.type = "Q8_0";
    ASSERT_TRUE(quantize_gguf(model_path("llama3-tiny.Q8_0"), dir.path("same.gguf"), opt).ok());

    // llama-quantize --allow-requantize: done, with a warning.
    std::vector<std::string> notes;
    opt.type = "Q4_K_M";
    opt.allow_requantize = true;
    opt.on_note = [&](const std::string& line) { notes.push_back(line); };
    st = quantize_gguf(model_path("llama3-tiny.Q8_0"), dir.path("requant.gguf"), opt);
    ASSERT_TRUE(st.ok()) << st.message();
    ASSERT_FALSE(notes.empty());
    EXPECT_NE(notes.back().find("requantized"), std::string::npos) << notes.back();
    int64_t n_vocab = 0;
    const auto logits = prompt_logits(dir.path("requant.gguf"), golden_prompt("llama3-tiny.F16"), n_vocab);
    EXPECT_FALSE(logits.empty());
}

TEST(Quantize, FloatTargetsConvertEveryMatrixAndKeepVectors) {
    TempDir dir;
    const std::string out = quantize_to(dir, "llama3-tiny.F16", "F32");
    ASSERT_FALSE(out.empty());
    auto f = gguf::open_gguf(out);
    auto src = gguf::open_gguf(model_path("llama3-tiny.F16"));
    ASSERT_TRUE(f.ok() && src.ok());
    EXPECT_EQ((*f)->meta.get_int("general.file_type").value(), 0);
    for (const gguf::TensorInfo& t : (*f)->tensors) {
        EXPECT_EQ(t.type, quant::QuantType::f32) << t.name;
        const gguf::TensorInfo* s = (*src)->find_tensor(t.name);
        ASSERT_NE(s, nullptr);
        std::vector<float> want((size_t)s->n_elements());
        quant::traits(s->type).dequantize_row(s->data, want.data(), s->n_elements());
        EXPECT_EQ(std::memcmp(want.data(), t.data, t.n_bytes), 0) << t.name;  // F16 -> F32 is exact
    }
}

}  // namespace
}  // namespace hearth::store

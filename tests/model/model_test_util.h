// Test helpers shared by the model tests: loading a model file from the shared test data, and
// loading a broken copy of one (a metadata key dropped or replaced, a tensor dropped or
// reshaped) to check that the loader answers with a clear error.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/model.h"
#include "support/testdata.h"

namespace hearth::model::test {

inline int32_t argmax(const float* v, int64_t n) { return (int32_t)(std::max_element(v, v + n) - v); }

// How far logits `got` are from `want`, both [n_rows][n_vocab].
struct LogitsDiff {
    double max_abs = 0.0, mean_abs = 0.0;
    int top1_same = 0;  // rows whose argmax agrees
    double top1 = 0.0;  // top1_same / n_rows
};

inline LogitsDiff diff_logits(const float* got, const float* want, int64_t n_rows, int64_t n_vocab) {
    LogitsDiff r;
    double sum_abs = 0.0;
    for (int64_t t = 0; t < n_rows; ++t) {
        const float* a = got + t * n_vocab;
        const float* b = want + t * n_vocab;
        for (int64_t i = 0; i < n_vocab; ++i) {
            const double d = std::fabs((double)a[i] - b[i]);
            r.max_abs = std::max(r.max_abs, d);
            sum_abs += d;
        }
        r.top1_same += argmax(a, n_vocab) == argmax(b, n_vocab);
    }
    r.mean_abs = sum_abs / (double)(n_rows * n_vocab);
    r.top1 = (double)r.top1_same / (double)n_rows;
    return r;
}

// testdata/models/<name>.gguf, loaded with 2 threads.
inline Result<std::unique_ptr<Model>> load_test_model(const std::string& name) {
    auto file = gguf::open_gguf(hearth::test::testdata_path("models/" + name + ".gguf"));
    if (!file.ok()) return file.status();
    return load_model(file.value(), LoadOptions{2});
}

// One broken copy of a test model: `key` dropped (no value) or set to `value`; `tensor`
// dropped (ne empty) or given shape `ne` (same element count).
struct Broken {
    const char* model;
    std::string key;
    std::optional<gguf::Value> value;
    std::string tensor;
    std::vector<int64_t> ne;
    const char* expect;                    // substring of the error message
    std::optional<StatusCode> code = {};   // the error code, when the test pins it
};

// The broken copy itself, parsed from memory.
inline Result<std::shared_ptr<gguf::GgufFile>> broken_file(const Broken& b) {
    auto src = gguf::open_gguf(hearth::test::testdata_path(std::string("models/") + b.model + ".gguf"));
    if (!src.ok()) return src.status();
    gguf::GgufWriter w;
    for (const auto& [k, v] : src.value()->meta.entries())
        if (k != b.key) w.set(k, v);
    if (b.value) w.set(b.key, *b.value);
    for (const gguf::TensorInfo& t : src.value()->tensors) {
        std::vector<int64_t> shape(t.ne, t.ne + t.n_dims);
        if (t.name == b.tensor && b.ne.empty()) continue;
        if (t.name == b.tensor) shape = b.ne;
        HEARTH_TRY(w.add_tensor(t.name, t.type, shape, std::span(t.data, t.n_bytes)));
    }
    HEARTH_ASSIGN(std::vector<std::byte> bytes, w.serialize());
    HEARTH_ASSIGN(gguf::GgufFile parsed, gguf::parse_gguf(bytes));
    return std::make_shared<gguf::GgufFile>(std::move(parsed));
}

inline Status load_broken(const Broken& b) {
    HEARTH_ASSIGN(std::shared_ptr<gguf::GgufFile> file, broken_file(b));
    return load_model(std::move(file), LoadOptions{1}).status();
}

// Every broken copy fails to load with a message naming what is wrong.
inline void expect_clear_errors(std::span<const Broken> cases) {
    for (const Broken& b : cases) {
        const Status st = load_broken(b);
        EXPECT_FALSE(st.ok()) << b.model << " " << b.key << b.tensor;
        EXPECT_NE(st.message().find(b.expect), std::string::npos) << st.message();
        if (b.code) {
            EXPECT_EQ(st.code(), *b.code) << b.key << b.tensor << ": " << st.message();
        }
    }
}

}  // namespace hearth::model::test

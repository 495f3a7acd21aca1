// A shared test model with its tokenizer, for the runtime tests that sample from one.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "gguf/gguf.h"
#include "model/model.h"
#include "support/testdata.h"
#include "tokenizer/tokenizer.h"

namespace hearth::test {

struct Loaded {
    std::unique_ptr<tok::Tokenizer> tok;
    std::unique_ptr<model::Model> model;
};

// testdata/models/<name> with 2 threads; on failure the test fails and the members stay null.
inline Loaded load(const std::string& name) {
    Loaded l;
    auto f = gguf::open_gguf(testdata_path("models/" + name));
    EXPECT_TRUE(f.ok()) << f.status().message();
    if (!f.ok()) return l;
    auto t = tok::Tokenizer::from_gguf(*f.value());
    EXPECT_TRUE(t.ok()) << t.status().message();
    if (!t.ok()) return l;
    l.tok = std::move(t).value();
    auto m = model::load_model(f.value(), model::LoadOptions{2});
    EXPECT_TRUE(m.ok()) << m.status().message();
    if (m.ok()) l.model = std::move(m).value();
    return l;
}

}  // namespace hearth::test

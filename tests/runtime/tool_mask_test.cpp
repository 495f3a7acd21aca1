// runtime::make_tool_call_mask: for random tool sets (parameter schemas from SchemaGen) and random
// sampling with the tiny test models, every tool call the output holds parses with chat's
// tool-call parser, names one of the tools and has arguments that validate against that tool's
// parameters; `required` forces a call; free text before a call stays free; families the mask
// does not cover are errors naming them.
#include "runtime/tool_mask.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "chat/json_schema.h"
#include "runtime/generate.h"
#include "runtime/model_loader.h"
#include "runtime/schema_gen.h"
#include "support/testdata.h"

namespace hearth::runtime {
namespace {

using Json = chat::Json;

using test::Loaded;
using test::load;

chat::ChatFormat format_of(const std::string& template_file) {
    std::ifstream in(test::testdata_path("templates/" + template_file));
    EXPECT_TRUE(in.good()) << template_file;
    std::stringstream ss;
    ss << in.rdbuf();
    return chat::detect_format(ss.str());
}

// 2-4 tools with random parameter schemas (an object schema: SchemaGen's object, or any of its
// schemas as the one required property, its $defs hoisted to the root).
Json random_tools(SchemaGen& gen, std::mt19937_64& rng) {
    static const char* names[] = {"get_weather", "search", "calc", "send_email", "lookup", "x"};
    Json tools = Json::array();
    const int n = 2 + static_cast<int>(rng() % 3);
    for (int k = 0; k < n; ++k) {
        Json s = gen.schema();
        Json params;
        if (s.contains("type") && s["type"] == "object") {
            params = s;
        } else {
            params = {{"type", "object"}, {"properties", {{"input", s}}}, {"required", {"input"}}};
            if (s.contains("$defs")) {
                params["$defs"] = s["$defs"];
                params["properties"]["input"].erase("$defs");
            }
        }
        tools.push_back({{"type", "function"},
                         {"function", {{"name", names[k]}, {"description", "a tool"}, {"parameters", params}}}});
    }
    return tools;
}

const Json* params_of(const Json& tools, const std::string& name) {
    for (const Json& t : tools)
        if (t["function"]["name"] == name) return &t["function"]["parameters"];
    return nullptr;
}

struct Parsed {
    std::string content;
    std::vector<chat::ToolCall> calls;
    bool malformed = false;
};

Parsed parse(const chat::ChatFormat& format, const Json& tools, const std::string& text) {
    chat::ToolCallParser p(format.tool_calls, chat::ParserOptions{tools});
    Parsed out;
    chat::ChatDelta d = p.push(text);
    d.append(p.finish());
    out.content = d.content;
    out.calls = std::move(d.tool_calls);
    out.malformed = p.malformed();
    return out;
}

void expect_valid_calls(const Parsed& parsed, const Json& tools, const std::string& text) {
    for (const chat::ToolCall& c : parsed.calls) {
        const Json* params = params_of(tools, c.name);
        ASSERT_TRUE(params) << "unknown tool '" << c.name << "' in:\n" << text;
        Status st = chat::validate_json(*params, c.arguments);
        ASSERT_TRUE(st.ok()) << st.message() << "\narguments " << c.arguments.dump() << "\nschema " << params->dump()
                             << "\ntext:\n" << text;
    }
}

struct Case {
    const char* model;
    const char* template_file;
    chat::ToolCallFormat expect;
};
const Case kCases[] = {
    {"qwen3-tiny.Q8_0.gguf", "Qwen-Qwen3-0.6B.jinja", chat::ToolCallFormat::hermes},
    {"llama3-tiny.Q8_0.gguf", "meta-llama-Llama-3.1-8B-Instruct.jinja", chat::ToolCallFormat::llama3_json},
    // Mistral's [TOOL_CALLS] spelled out in ordinary pieces (the llama3 vocabulary has no such token).
    {"llama3-tiny.Q8_0.gguf", "mistralai-Mistral-Nemo-Instruct-2407.jinja", chat::ToolCallFormat::mistral_nemo},
    {"llama3-tiny.Q8_0.gguf", "unsloth-mistral-Devstral-Small-2507.jinja", chat::ToolCallFormat::mistral},
};

TEST(ToolCallMask, RequiredForcesValidCalls) {
    const Loaded qwen = load("qwen3-tiny.Q8_0.gguf"), llama = load("llama3-tiny.Q8_0.gguf");
    ASSERT_TRUE(qwen.model && llama.model);
    SchemaGen gen(777);
    std::mt19937_64 rng(4242);
    int n_runs = 0, n_calls = 0, n_finished = 0;
    for (const Case& c : kCases) {
        const Loaded& l = std::string(c.model).starts_with("qwen3") ? qwen : llama;
        const chat::ChatFormat format = format_of(c.template_file);
        ASSERT_EQ(format.tool_calls, c.expect) << c.template_file;
        std::vector<int32_t> preserve;
        for (const std::string& m : format.preserved_tokens) {
            const std::vector<int32_t> ids = l.tok->encode(m, false, true);
            if (ids.size() == 1) preserve.push_back(ids[0]);
        }
        for (int i = 0; i < 12; ++i) {
            const Json tools = random_tools(gen, rng);
            auto mask = make_tool_call_mask(*l.tok, format, tools, /*required*/ true);
            ASSERT_TRUE(mask.ok()) << mask.status().message() << "\n" << tools.dump();
            auto s = model::Session::create(*l.model, 1024);
            ASSERT_TRUE(s.ok());
            GenerateRequest r;
            r.prompt = l.tok->encode("Call a tool:", true, false);
            r.sampling.temperature = 1.0f;
            r.sampling.top_k = 0;
            r.sampling.top_p = 1.0f;
            r.sampling.seed = static_cast<int64_t>(100 * i + 7);
            // Hermes: text may follow the calls, which a random model does until the budget ends.
            r.num_predict = format.tool_calls == chat::ToolCallFormat::hermes ? 250 : 800;
            r.mask = mask.value();
            r.preserve_tokens = preserve;
            std::string text;
            auto stats = generate(s.value(), *l.tok, r, [&](std::string_view p) {
                text += p;
                return true;
            });
            ASSERT_TRUE(stats.ok()) << stats.status().message() << "\n" << text;
            ++n_runs;
            const Parsed parsed = parse(format, tools, text);
            // A call the token budget cut off is left as content; otherwise nothing is malformed.
            if (stats->done == DoneReason::stop) {
                EXPECT_FALSE(parsed.malformed) << text;
                ++n_finished;
            }
            if (stats->done == DoneReason::stop || format.tool_calls == chat::ToolCallFormat::hermes) {
                ASSERT_GE(parsed.calls.size(), 1u) << c.template_file << " run " << i << ": no call in:\n" << text;
            }
            expect_valid_calls(parsed, tools, text);
            n_calls += static_cast<int>(parsed.calls.size());
        }
    }
    std::printf("%d runs (%d ended by the model), %d valid tool calls\n", n_runs, n_finished, n_calls);
    EXPECT_GE(n_finished, n_runs / 2);
}

// Free text, then the opening marker (fed as the model would write it), then random logits over
// the allowed set: the text stays free and the call that follows is valid.
TEST(ToolCallMask, FreeTextThenAConstrainedCall) {
    std::mt19937_64 rng(99);
    SchemaGen gen(31337);
    for (const Case& c : kCases) {
        const Loaded l = load(c.model);
        ASSERT_TRUE(l.tok);
        const chat::ChatFormat format = format_of(c.template_file);
        const bool answer_only = format.tool_calls == chat::ToolCallFormat::llama3_json;
        for (int i = 0; i < 15; ++i) {
            const Json tools = random_tools(gen, rng);
            auto mask_or = make_tool_call_mask(*l.tok, format, tools, /*required*/ false);
            ASSERT_TRUE(mask_or.ok()) << mask_or.status().message();
            LogitsMask& mask = *mask_or.value();
            const std::string prefix = answer_only ? "  {" : std::string("Let me check that.\n") +
                                                               (format.tool_calls == chat::ToolCallFormat::hermes
                                                                    ? "<tool_call>"
                                                                    : "[TOOL_CALLS]");
            std::string text;
            for (int32_t id : l.tok->encode(prefix, false, true)) {
                std::vector<float> logits(l.tok->n_vocab(), 0.f);
                mask.apply(logits);
                ASSERT_GT(logits[id], -INFINITY) << "free text token " << id << " barred";
                mask.accept(id);
                text += l.tok->token_to_piece(id, true);
            }
            std::normal_distribution<float> normal(0.f, 3.f);
            bool ended = false;
            for (int step = 0; step < 400 && !ended && !mask.complete(); ++step) {
                std::vector<float> logits(l.tok->n_vocab());
                for (float& x : logits) x = normal(rng);
                mask.apply(logits);
                const int32_t best = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
                ASSERT_GT(logits[best], -INFINITY) << "nothing allowed after:\n" << text;
                if (l.tok->is_eog(best)) break;
                mask.accept(best);
                text += l.tok->token_to_piece(best, true);
                if (format.tool_calls == chat::ToolCallFormat::hermes && text.ends_with("</tool_call>")) ended = true;
            }
            const Parsed parsed = parse(format, tools, text);
            if (format.tool_calls == chat::ToolCallFormat::mistral_nemo ||
                format.tool_calls == chat::ToolCallFormat::mistral) {  // several calls in a row
                ASSERT_GE(parsed.calls.size(), 1u) << c.template_file << ":\n" << text;
            } else {
                ASSERT_EQ(parsed.calls.size(), 1u) << c.template_file << ":\n" << text;
            }
            EXPECT_FALSE(parsed.malformed) << text;
            if (!answer_only) {
                EXPECT_EQ(parsed.content, "Let me check that.") << text;
            }
            expect_valid_calls(parsed, tools, text);
        }
    }
}

TEST(ToolCallMask, Llama3TextAnswerStaysFree) {
    const Loaded l = load("llama3-tiny.Q8_0.gguf");
    ASSERT_TRUE(l.tok);
    const chat::ChatFormat format = format_of("meta-llama-Llama-3.1-8B-Instruct.jinja");
    const Json tools = Json::parse(R"([{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}])");
    auto mask = make_tool_call_mask(*l.tok, format, tools, false).value();
    for (int32_t id : l.tok->encode("Sure: {not a call", false, false)) mask->accept(id);
    std::vector<float> logits(l.tok->n_vocab(), 0.f);
    mask->apply(logits);
    const std::vector<int32_t> tag = l.tok->encode("<|python_tag|>", false, true);
    for (int32_t id = 0; id < l.tok->n_vocab(); ++id) {
        if (tag.size() == 1 && id == tag[0]) EXPECT_EQ(logits[id], -INFINITY);
        else EXPECT_EQ(logits[id], 0.f) << id;
    }
}

// A marker that is one token of the vocabulary (Qwen3's <tool_call>, </tool_call>) is allowed as
// that token where the marker may come.
TEST(ToolCallMask, MarkerTokensAreAllowed) {
    const Loaded l = load("qwen3-tiny.Q8_0.gguf");
    ASSERT_TRUE(l.tok);
    const chat::ChatFormat format = format_of("Qwen-Qwen3-0.6B.jinja");
    const Json tools = Json::parse(R"([{"type":"function","function":{"name":"f","parameters":{"type":"object",
        "properties":{"a":{"type":"integer"}},"required":["a"]}}}])");
    const std::vector<int32_t> open = l.tok->encode("<tool_call>", false, true), close = l.tok->encode("</tool_call>", false, true);
    ASSERT_EQ(open.size(), 1u);
    ASSERT_EQ(close.size(), 1u);
    auto mask = make_tool_call_mask(*l.tok, format, tools, /*required*/ true).value();
    std::vector<float> logits(l.tok->n_vocab(), 0.f);
    mask->apply(logits);
    EXPECT_EQ(logits[open[0]], 0.f);
    for (int32_t id : l.tok->eog_ids()) EXPECT_EQ(logits[id], -INFINITY);
    mask->accept(open[0]);
    for (int32_t id : l.tok->encode("\n{\"name\": \"f\", \"arguments\": {\"a\": 1", false, false)) mask->accept(id);
    std::fill(logits.begin(), logits.end(), 0.f);
    mask->apply(logits);
    EXPECT_EQ(logits[close[0]], -INFINITY);  // the call is not finished
    for (int32_t id : l.tok->encode("}}\n", false, false)) mask->accept(id);
    std::fill(logits.begin(), logits.end(), 0.f);
    mask->apply(logits);
    EXPECT_EQ(logits[close[0]], 0.f);
    for (int32_t id : l.tok->eog_ids()) EXPECT_EQ(logits[id], -INFINITY);  // not inside a call
    mask->accept(close[0]);
    std::fill(logits.begin(), logits.end(), 0.f);
    mask->apply(logits);
    for (int32_t id : l.tok->eog_ids()) EXPECT_EQ(logits[id], 0.f);  // a call was made: the answer may end
}

TEST(ToolCallMask, UncoveredFamiliesAreErrorsNamingThem) {
    const Loaded l = load("qwen3-tiny.Q8_0.gguf");
    ASSERT_TRUE(l.tok);
    const Json tools = Json::parse(R"([{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}])");
    for (const char* file : {"Qwen3-Coder.jinja", "openai-gpt-oss-120b.jinja", "deepseek-ai-DeepSeek-V3.1.jinja"}) {
        const chat::ChatFormat format = format_of(file);
        auto m = make_tool_call_mask(*l.tok, format, tools, false);
        ASSERT_FALSE(m.ok()) << file;
        EXPECT_EQ(m.status().code(), StatusCode::unsupported);
        EXPECT_NE(m.status().message().find(chat::tool_call_format_name(format.tool_calls)), std::string::npos)
            << m.status().message();
    }
    const chat::ChatFormat hermes = format_of("Qwen-Qwen3-0.6B.jinja");
    EXPECT_EQ(make_tool_call_mask(*l.tok, hermes, Json::array(), false).status().code(), StatusCode::invalid_argument);
    EXPECT_EQ(make_tool_call_mask(*l.tok, hermes, Json::parse(R"([{"function":{}}])"), false).status().code(),
              StatusCode::invalid_argument);
    auto bad = make_tool_call_mask(
        *l.tok, hermes, Json::parse(R"([{"function":{"name":"g","parameters":{"type":"object","not":{}}}}])"), false);
    EXPECT_EQ(bad.status().code(), StatusCode::unsupported);
    EXPECT_NE(bad.status().message().find("'g'"), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace hearth::runtime

// Cost of constrained decoding per generated token on a Qwen3-sized (151,936-token) vocabulary:
//   grammar_bench [TESTDATA_DIR] [-r repetitions]
//
// The vocabulary: the real BPE vocabularies of the shared test data (deepseek-llm's 102,400
// first, then gpt-2, falcon, starcoder, ...) merged into distinct byte strings until 151,936
// (the real Qwen3 vocabulary is not in the test data). The "model" is replaced by a script: each
// step takes the longest allowed token that continues a fixed JSON document, so the mask walks
// the same states a model writing that document would. Per step it times what Decoding does
// with a mask on top of sampling: copy the logits row, GrammarMask::apply (the allowed set, from
// the per-state cache or a trie walk) and the any-token-left scan, plus accept().
//
// The slowdown is that time over one decode step of Qwen3-0.6B on this CPU kind: llama.cpp's
// 67.6 t/s for Q4_K_M (14.8 ms per token, ../shared/bench/ANCHORS.md), the speed this engine
// aims at; hearth's own decode is slower today, which would only make the share smaller.
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "base/timer.h"
#include "chat/json_schema.h"
#include "gguf/gguf.h"
#include "runtime/grammar_mask.h"
#include "tokenizer/tokenizer.h"

using namespace hearth;

namespace {

constexpr int32_t kVocab = 151936;
constexpr double kDecodeStepMs = 1000.0 / 67.6;

bool gunzip(const std::string& path, std::vector<std::byte>& out) {
    gzFile f = gzopen(path.c_str(), "rb");
    if (!f) return false;
    char buf[1 << 16];
    int n;
    while ((n = gzread(f, buf, sizeof buf)) > 0) {
        const auto* b = reinterpret_cast<const std::byte*>(buf);
        out.insert(out.end(), b, b + n);
    }
    gzclose(f);
    return n == 0;
}

// Distinct pieces of the usable tokens of several real vocabularies, up to kVocab - 16; then 16
// special ids at the end (the first two are end-of-generation).
struct Vocab {
    std::vector<std::string> pieces;
    std::vector<bool> usable;
    std::vector<int32_t> eog;
};

Vocab merged_vocab(const std::string& dir) {
    Vocab v;
    std::set<std::string> seen;
    const char* files[] = {"deepseek-llm", "gpt-2", "falcon", "starcoder", "deepseek-coder", "refact", "mpt", "baichuan", "llama-spm", "phi-3"};
    for (const char* name : files) {
        std::vector<std::byte> bytes;
        const std::string path = dir + "/tokenizers/ggml-vocab-" + name + ".gguf.gz";
        if (!gunzip(path, bytes)) {
            std::fprintf(stderr, "cannot read %s\n", path.c_str());
            continue;
        }
        auto file = gguf::parse_gguf(bytes);
        if (!file.ok()) continue;
        auto tok = tok::Tokenizer::from_gguf(file.value());
        if (!tok.ok()) continue;
        const tok::Tokenizer& t = *tok.value();
        int added = 0;
        for (int32_t id = 0; id < t.n_vocab() && (int32_t)v.pieces.size() < kVocab - 16; ++id) {
            if (t.token_attr(id) & (tok::kAttrControl | tok::kAttrUserDefined | tok::kAttrUnknown | tok::kAttrUnused)) continue;
            std::string p(t.token_to_piece(id, false));
            if (p.empty() || !seen.insert(p).second) continue;
            v.pieces.push_back(std::move(p));
            ++added;
        }
        std::printf("  %-15s %6d tokens, %6d new pieces\n", name, t.n_vocab(), added);
    }
    v.usable.assign(v.pieces.size(), true);
    for (int k = 0; k < 16; ++k) {
        if (k < 2) v.eog.push_back((int32_t)v.pieces.size());
        v.pieces.push_back("<|special_" + std::to_string(k) + "|>");
        v.usable.push_back(false);
    }
    return v;
}

struct DriveStats {
    int steps = 0;
    double total_ms = 0, max_ms = 0;
    int walks = 0;  // steps whose allowed set was not cached
    double walk_ms = 0;
};

// Drives `mask` along `text`, timing the per-step work.
DriveStats drive(runtime::GrammarMask& mask, const runtime::TokenTable& table, const std::string& text,
             const std::vector<float>& logits_row, std::vector<float>& scratch) {
    DriveStats r;
    std::string so_far;
    while (so_far.size() < text.size()) {
        const int64_t t0 = now_ns();
        scratch.assign(logits_row.begin(), logits_row.end());
        const int64_t ta = now_ns();
        mask.apply(scratch);
        const int64_t tb = now_ns();
        volatile bool any = std::any_of(scratch.begin(), scratch.end(), [](float x) { return x > -INFINITY; });
        (void)any;
        const int64_t tb2 = now_ns();
        // The scripted "sampler": the longest allowed token continuing the document.
        int32_t best = -1;
        size_t best_len = 0;
        for (int32_t id = 0; id < table.n_vocab(); ++id) {
            if (scratch[id] == -INFINITY) continue;
            const std::string_view p = table.piece(id);
            if (p.size() > best_len && text.compare(so_far.size(), p.size(), p) == 0) best = id, best_len = p.size();
        }
        if (best < 0) {
            std::fprintf(stderr, "no allowed token continues the document after: %s\n", so_far.c_str());
            std::exit(1);
        }
        const int64_t tc = now_ns();
        mask.accept(best);
        const int64_t td = now_ns();
        const double ms = ((tb2 - t0) + (td - tc)) / 1e6;
        // A walk shows as a step far above the cached cost; count steps above 0.3 ms as walks.
        if ((tb - ta) / 1e6 > 0.3) ++r.walks, r.walk_ms += (tb - ta) / 1e6;
        r.total_ms += ms;
        r.max_ms = std::max(r.max_ms, ms);
        ++r.steps;
        so_far += table.piece(best);
    }
    if (!mask.complete()) {
        std::fprintf(stderr, "the document did not complete the grammar\n");
        std::exit(1);
    }
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    std::string dir = "../shared/testdata";
    int reps = 5;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "-r") && i + 1 < argc) reps = std::atoi(argv[++i]);
        else dir = argv[i];
    }
    std::printf("vocabulary from %s:\n", dir.c_str());
    Vocab v = merged_vocab(dir);
    int64_t t0 = now_ns();
    auto table = runtime::TokenTable::build(v.pieces, v.usable, v.eog);
    std::printf("%zu tokens (%zu usable), trie of %zu nodes built in %.1f ms\n", v.pieces.size(),
                v.pieces.size() - 16, table->nodes().size(), (now_ns() - t0) / 1e6);

    const chat::Json schema = chat::Json::parse(R"({
      "type": "object",
      "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "email": {"type": "string", "format": "email"},
        "bio": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
        "address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"},
                    "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}, "required": ["city"]},
        "scores": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 100}},
        "active": {"type": "boolean"}
      },
      "required": ["name", "age", "bio", "tags"]
    })");
    const std::string doc =
        "{\n  \"name\": \"Ada Lovelace\",\n  \"age\": 36,\n  \"email\": \"ada@analytical-engine.org\",\n"
        "  \"bio\": \"English mathematician and writer, chiefly known for her work on Charles Babbage's proposed "
        "mechanical general-purpose computer, the Analytical Engine. She was the first to recognise that the machine "
        "had applications beyond pure calculation, and published the first algorithm intended to be carried out by "
        "such a machine.\",\n  \"tags\": [\"mathematics\", \"computing\", \"poetry\", \"history\"],\n"
        "  \"address\": {\"street\": \"12 St James's Square\", \"city\": \"London\", \"zip\": \"01234\"},\n"
        "  \"scores\": [97.5, 88, 100],\n  \"active\": false\n}";

    std::vector<float> row(v.pieces.size());
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    for (float& x : row) x = nd(rng);
    std::vector<float> scratch;

    struct Case {
        const char* name;
        std::string gbnf;
    };
    std::vector<Case> cases;
    cases.push_back({"json schema (8 fields)", chat::format_to_gbnf(schema).value()});
    chat::Json bounded = schema;
    bounded["properties"]["bio"]["maxLength"] = 400;  // a counted repetition (counted loop table)
    cases.push_back({"same, bio maxLength 400", chat::format_to_gbnf(bounded).value()});
    cases.push_back({"format \"json\"", chat::format_to_gbnf(chat::Json("json")).value()});
    std::printf("\ndocument: %zu bytes; decode step reference %.2f ms (Qwen3-0.6B Q4_K_M, llama.cpp, this CPU kind)\n",
                doc.size(), kDecodeStepMs);
    std::printf("%-24s %6s %12s %12s %10s %8s %10s\n", "grammar", "steps", "mask ms/tok", "max step ms", "walks",
                "walk ms", "slowdown");
    for (const Case& c : cases) {
        std::vector<double> per_tok;
        DriveStats last;
        for (int r = 0; r < reps; ++r) {
            auto mask = runtime::make_grammar_mask_for(table, c.gbnf);
            if (!mask.ok()) {
                std::fprintf(stderr, "%s\n", mask.status().message().c_str());
                return 1;
            }
            last = drive(*mask.value(), *table, doc, row, scratch);
            per_tok.push_back(last.total_ms / last.steps);
        }
        std::sort(per_tok.begin(), per_tok.end());
        const double med = per_tok[per_tok.size() / 2];
        std::printf("%-24s %6d %12.3f %12.2f %10d %8.2f %9.2f%%\n", c.name, last.steps, med, last.max_ms, last.walks,
                    last.walks ? last.walk_ms / last.walks : 0.0, 100.0 * med / kDecodeStepMs);
    }

    // The worst single step: a trie walk inside a string (nearly every token allowed), uncached.
    {
        std::vector<double> ms;
        for (int r = 0; r < reps; ++r) {
            auto mask = runtime::make_grammar_mask_for(table, "root ::= \"\\\"\" [^\"\\\\\\x00-\\x1F]* \"\\\"\"");
            mask.value()->accept_text("\"");
            scratch.assign(row.begin(), row.end());
            const int64_t a = now_ns();
            mask.value()->apply(scratch);
            ms.push_back((now_ns() - a) / 1e6);
        }
        std::sort(ms.begin(), ms.end());
        int n_allowed = 0;
        for (float x : scratch) n_allowed += x > -INFINITY;
        std::printf("\nuncached walk inside a string: %.2f ms (%d tokens allowed)\n", ms[ms.size() / 2], n_allowed);
        std::vector<double> hit;
        auto mask = runtime::make_grammar_mask_for(table, "root ::= \"\\\"\" [^\"\\\\\\x00-\\x1F]* \"\\\"\"");
        mask.value()->accept_text("\"");
        for (int r = 0; r < 50; ++r) {
            scratch.assign(row.begin(), row.end());
            const int64_t a = now_ns();
            mask.value()->apply(scratch);
            hit.push_back((now_ns() - a) / 1e6);
        }
        std::sort(hit.begin(), hit.end());
        std::printf("cached apply (same state): %.3f ms\n", hit[hit.size() / 2]);
    }
    return 0;
}

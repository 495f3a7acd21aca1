// Constrained decoding over a vocabulary: a chat::Grammar (from GBNF, a JSON Schema or
// `format: "json"`) turned into a LogitsMask.
//
// Per vocabulary, once (TokenTable): every usable token's bytes (token_to_piece) in a byte trie
// laid out in depth-first order, so a walk can skip a rejected subtree in one jump. Control,
// unknown, unused and user-defined tokens (chat markup such as <|im_end|>, <think>, <tool_call>)
// are never allowed inside the constrained text; end-of-generation tokens are allowed exactly
// when the grammar can end there.
//
// Per step: the allowed set is computed by walking the trie with the grammar matcher (push a
// byte going down, pop coming back; a rejected byte prunes the whole subtree), and cached by the
// matcher's state, so a state seen before (most steps inside a long string value) costs a
// bitset lookup. A state inside a `[class]*` loop (a JSON string's characters) does not walk
// the whole vocabulary: a per-class table (TokenTable::LoopTable, built once per vocabulary and
// class) allows the tokens made of the class's characters outright and walks only the rest from
// their first other character. apply() then sets the other logits to -inf.
//
// Cost on a 151,936-token vocabulary (bench/runtime/grammar_bench.cpp, 2-core Xeon): 0.1 ms per
// token for `format: "json"` and 0.3 ms for an 8-field schema with free strings, against a
// 14.8 ms decode step of Qwen3-0.6B. A counted repetition (a string with maxLength) uses the
// same table, respecting the count (GrammarMatcher::counted_loop); its state changes every step,
// so it is computed each step rather than cached: about 0.1 ms per token for the 8-field schema
// with a 400-character maxLength (6.3 ms when each step walked the whole trie).
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "chat/grammar.h"
#include "chat/json_schema.h"
#include "runtime/logits_mask.h"
#include "tokenizer/tokenizer.h"

namespace hearth::runtime {

// The vocabulary as the mask sees it. Immutable once built; share it between requests.
class TokenTable {
public:
    // Built from the tokenizer's pieces (about 0.1 s for 150k tokens). Cached: a later call for
    // a tokenizer with the same vocabulary returns the same table (a small process-wide memo of
    // immutable tables, keyed by a fingerprint of the vocabulary, so two engines share it and a
    // freed tokenizer's address being reused cannot alias).
    static std::shared_ptr<const TokenTable> get(const tok::Tokenizer& tok);
    // From raw pieces: pieces[id] are a token's bytes; usable[id] false bars a token (specials);
    // eog lists the end-of-generation ids. Benches and tests use this directly.
    static std::shared_ptr<const TokenTable> build(const std::vector<std::string>& pieces,
                                                   const std::vector<bool>& usable, std::vector<int32_t> eog);

    struct Node {
        uint8_t byte;
        uint8_t depth;        // bytes from the root (1 for the first byte); tokens longer than 255 bytes are left out
        uint32_t end;         // index just past this node's subtree
        uint32_t tok_begin;   // tokens_[tok_begin, tok_end) end exactly here
        uint32_t tok_end;
    };
    int32_t n_vocab() const { return n_vocab_; }
    const std::vector<Node>& nodes() const { return nodes_; }
    const std::vector<int32_t>& node_tokens() const { return tokens_; }
    const std::vector<int32_t>& eog() const { return eog_; }
    std::string_view piece(int32_t id) const { return pieces_[id]; }

    // The vocabulary split by a character class, for states inside a `[class]*` loop
    // (GrammarMatcher::loop_class): tokens made only of the class's characters (a trailing
    // incomplete character counts when it can still become one) keep the state as it is, so
    // they are allowed outright; every other token is cut where its first other character
    // starts, and those remainders form a trie that is walked from the state. Inside a JSON
    // string that trie holds only the few thousand tokens with a quote, a backslash or a
    // control character.
    //
    // A counted repetition of the class (GrammarMatcher::counted_loop) needs the counts too: a
    // token of k class characters is allowed iff k <= the iterations left, and the remainder of
    // a token after j class characters is walked from the state j iterations on.
    struct Trie {
        std::vector<Node> nodes;
        std::vector<int32_t> tokens;
    };
    struct LoopTable {
        std::vector<uint64_t> all_in;  // [(n_vocab + 63) / 64] tokens entirely in the class
        std::vector<Node> nodes;       // remainder trie, same layout as nodes()
        std::vector<int32_t> tokens;
        std::vector<std::pair<uint32_t, int32_t>> all_in_by_chars;  // (characters, id) of all_in, sorted
        uint32_t max_chars = 0;                                     // most characters in an all_in token
        std::vector<Trie> rest_by_chars;  // [j]: remainders of the tokens with j class characters first
    };
    // Built on first use for each class (about as long as one full walk), then shared:
    // thread-safe, memoized in the table.
    std::shared_ptr<const LoopTable> loop_table(const std::vector<std::pair<uint32_t, uint32_t>>& ranges) const;

private:
    int32_t n_vocab_ = 0;
    std::vector<Node> nodes_;      // [n_nodes] depth-first preorder, children in byte order
    std::vector<int32_t> tokens_;  // token ids by node
    std::vector<int32_t> eog_;
    std::vector<std::string> pieces_;  // [n_vocab] bytes of each token ("" for unusable ones)
    // Memo of loop tables by class; guarded by loop_mu_ (the tables themselves are immutable).
    mutable std::mutex loop_mu_;
    mutable std::map<std::vector<std::pair<uint32_t, uint32_t>>, std::shared_ptr<const LoopTable>> loops_;
};

class GrammarMask : public LogitsMask {
public:
    GrammarMask(std::shared_ptr<const TokenTable> table, std::shared_ptr<const chat::Grammar> grammar);

    void apply(std::span<float> logits) override;
    void accept(int32_t token) override;
    bool complete() const override;

    // Feeds text that was generated outside accept() (a deferred mask's text after its marker).
    // False (and the mask fails: it allows nothing from then on) when the grammar rejects it.
    bool accept_text(std::string_view text);
    // The allowed set for the current state: [n_vocab] bits, 64 per word.
    const std::vector<uint64_t>& allowed();
    bool failed() const { return failed_; }
    // The text so far is a complete sentence (more may still follow).
    bool can_end() const { return !failed_ && matcher_.can_end(); }
    // The grammar would accept `text` next (the state is left as it was).
    bool can_accept_text(std::string_view text);

private:
    struct CacheEntry {
        std::vector<uint32_t> key;
        std::vector<uint64_t> bits;
    };
    void compute(std::vector<uint64_t>& bits);
    void walk(const std::vector<TokenTable::Node>& nodes, const std::vector<int32_t>& toks, std::vector<uint64_t>& bits);

    std::shared_ptr<const TokenTable> table_;
    chat::GrammarMatcher matcher_;
    bool failed_ = false;
    std::list<CacheEntry> cache_;  // most recently used first; at most kCacheSize entries
    uint64_t cache_generation_ = 0;
    std::vector<uint32_t> key_;    // scratch
    std::unordered_map<int64_t, std::shared_ptr<const TokenTable::LoopTable>> loops_;  // by class id
    chat::GrammarMatcher::CountedLoop counted_;  // scratch
    static constexpr size_t kCacheSize = 16;
};

// The mask for Ollama's `format`: "json" (any JSON object) or a JSON Schema object. Errors:
// invalid_argument for a format that is neither, unsupported for a schema keyword the compiler
// cannot honour (never silently ignored). Parse requests with nlohmann::ordered_json so that
// properties keep their declared order (a plain json converts, with keys sorted).
Result<std::shared_ptr<LogitsMask>> make_format_mask(const tok::Tokenizer& tok, const nlohmann::ordered_json& format);
Result<std::shared_ptr<LogitsMask>> make_format_mask(const tok::Tokenizer& tok, const nlohmann::json& format);
// A GBNF grammar (root rule `root`).
Result<std::shared_ptr<LogitsMask>> make_grammar_mask(const tok::Tokenizer& tok, std::string_view gbnf);
// The GrammarMask itself, for callers that need accept_text (deferred masks, tool calls).
Result<std::shared_ptr<GrammarMask>> make_grammar_mask_for(std::shared_ptr<const TokenTable> table, std::string_view gbnf);

// Leaves every token free (except end-of-generation: the constrained answer must still come)
// until the generated text contains `start_after` (e.g. "</think>"), then applies `inner`.
// Text is matched on the pieces with special tokens rendered, so a marker that is one special
// token is seen. The token that completes the marker is free; whatever that same token carries
// after the marker goes to the grammar, leading whitespace dropped (if the grammar rejects it the
// request fails: "the logits mask allows no token"). Thinking disabled in the prompt (the
// template already closed the block): use `inner` alone. `end_before_marker` leaves
// end-of-generation allowed before the marker too: a lazy constraint such as a tool call's
// arguments, where the model may also answer without calling a tool. `tok` must outlive the mask.
std::shared_ptr<LogitsMask> make_deferred_mask(const tok::Tokenizer& tok, std::shared_ptr<GrammarMask> inner,
                                               std::string start_after, bool end_before_marker = false);
// The same over any mask (a tool-call mask): what the marker's token carries after the marker
// cannot be fed to it, so such a token is barred once the marker could complete (the model
// must end the marker with the token and continue in the next).
std::shared_ptr<LogitsMask> make_deferred_mask(const tok::Tokenizer& tok, std::shared_ptr<LogitsMask> inner,
                                               std::string start_after, bool end_before_marker = false);

}  // namespace hearth::runtime

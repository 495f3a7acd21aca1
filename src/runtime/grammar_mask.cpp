#include "runtime/grammar_mask.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <numeric>

namespace hearth::runtime {

// ---- TokenTable --------------------------------------------------------------------------------

namespace {

// A trie in depth-first preorder over (bytes, id) entries sorted by bytes: each entry shares a
// prefix with the previous one, and nodes deeper than that prefix are finished.
void build_trie(const std::vector<std::pair<std::string_view, int32_t>>& entries, std::vector<TokenTable::Node>& nodes,
                std::vector<int32_t>& tokens) {
    std::vector<uint32_t> path;  // node index at each depth - 1
    std::string_view prev;
    auto close_to = [&](size_t depth) {
        while (path.size() > depth) {
            nodes[path.back()].end = static_cast<uint32_t>(nodes.size());
            path.pop_back();
        }
    };
    for (const auto& [p, id] : entries) {
        size_t common = 0;
        while (common < p.size() && common < prev.size() && common < path.size() && p[common] == prev[common]) ++common;
        close_to(common);
        for (size_t d = common; d < p.size(); ++d) {
            const uint32_t tb = static_cast<uint32_t>(tokens.size());
            nodes.push_back({static_cast<uint8_t>(p[d]), static_cast<uint8_t>(d + 1), 0, tb, tb});
            path.push_back(static_cast<uint32_t>(nodes.size() - 1));
        }
        TokenTable::Node& n = nodes[path.back()];
        if (n.tok_end != tokens.size()) n.tok_begin = n.tok_end = static_cast<uint32_t>(tokens.size());
        tokens.push_back(id);
        ++n.tok_end;
        prev = p;
    }
    close_to(0);
}

void sort_entries(std::vector<std::pair<std::string_view, int32_t>>& e) {
    std::sort(e.begin(), e.end(), [](const auto& a, const auto& b) {
        const int c = a.first.compare(b.first);
        return c < 0 || (c == 0 && a.second < b.second);
    });
}

bool in_ranges(const std::vector<std::pair<uint32_t, uint32_t>>& r, uint32_t lo, uint32_t hi) {
    for (auto [a, b] : r)
        if (a <= hi && lo <= b) return true;
    return false;
}

// Byte offset of the first character of `p` outside the class, exactly as GrammarMatcher reads
// bytes: invalid UTF-8 stops there, and a trailing incomplete character counts as inside when
// some completion of it is in the class.
// `n_chars` gets the number of characters in that prefix (the trailing incomplete one counted).
size_t class_prefix(std::string_view p, const std::vector<std::pair<uint32_t, uint32_t>>& r, uint32_t& n_chars) {
    size_t i = 0;
    n_chars = 0;
    while (i < p.size()) {
        const uint8_t b = static_cast<uint8_t>(p[i]);
        if (b < 0x80) {
            if (!in_ranges(r, b, b)) return i;
            ++i;
            ++n_chars;
            continue;
        }
        const int len = (b >= 0xC2 && b <= 0xDF) ? 2 : (b >= 0xE0 && b <= 0xEF) ? 3 : (b >= 0xF0 && b <= 0xF4) ? 4 : 0;
        if (len == 0) return i;
        const uint32_t min_cp = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
        uint32_t cp = b & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
        int k = 1;
        for (; k < len && i + k < p.size(); ++k) {
            const uint8_t c = static_cast<uint8_t>(p[i + k]);
            if ((c & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (c & 0x3F);
        }
        if (k < len) {
            // Incomplete at the end of the token: every prefix must leave a possible character.
            uint32_t bits = b & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
            for (int j = 1; j <= k; ++j) {
                if (j > 1) bits = (bits << 6) | (static_cast<uint8_t>(p[i + j - 1]) & 0x3F);
                const int rest = 6 * (len - j);
                const uint32_t lo = std::max(bits << rest, min_cp);
                const uint32_t hi = std::min((bits << rest) | ((1u << rest) - 1), 0x10FFFFu);
                if (lo > hi || (lo >= 0xD800 && hi <= 0xDFFF) || !in_ranges(r, lo, hi)) return i;
            }
            ++n_chars;
            return p.size();
        }
        if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || !in_ranges(r, cp, cp)) return i;
        i += len;
        ++n_chars;
    }
    return i;
}

}  // namespace

std::shared_ptr<const TokenTable> TokenTable::build(const std::vector<std::string>& pieces,
                                                    const std::vector<bool>& usable, std::vector<int32_t> eog) {
    auto t = std::make_shared<TokenTable>();
    t->n_vocab_ = static_cast<int32_t>(pieces.size());
    t->pieces_.resize(pieces.size());
    std::sort(eog.begin(), eog.end());
    eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
    t->eog_ = std::move(eog);
    std::vector<std::pair<std::string_view, int32_t>> entries;
    for (int32_t id = 0; id < t->n_vocab_; ++id) {
        if (!usable[id] || pieces[id].empty() || pieces[id].size() > 255) continue;
        if (std::binary_search(t->eog_.begin(), t->eog_.end(), id)) continue;
        t->pieces_[id] = pieces[id];
        entries.push_back({t->pieces_[id], id});
    }
    sort_entries(entries);
    build_trie(entries, t->nodes_, t->tokens_);
    return t;
}

std::shared_ptr<const TokenTable::LoopTable> TokenTable::loop_table(const std::vector<std::pair<uint32_t, uint32_t>>& ranges) const {
    {
        std::lock_guard<std::mutex> lk(loop_mu_);
        auto it = loops_.find(ranges);
        if (it != loops_.end()) return it->second;
    }
    auto lt = std::make_shared<LoopTable>();
    lt->all_in.assign((static_cast<size_t>(n_vocab_) + 63) / 64, 0);
    std::vector<std::pair<std::string_view, int32_t>> rest;
    std::vector<std::vector<std::pair<std::string_view, int32_t>>> rest_by_chars;
    for (int32_t id = 0; id < n_vocab_; ++id) {
        const std::string_view p = pieces_[id];
        if (p.empty()) continue;
        uint32_t n_chars = 0;
        const size_t at = class_prefix(p, ranges, n_chars);
        if (at == p.size()) {
            lt->all_in[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
            lt->all_in_by_chars.push_back({n_chars, id});
            lt->max_chars = std::max(lt->max_chars, n_chars);
        } else {
            rest.push_back({p.substr(at), id});
            if (rest_by_chars.size() <= n_chars) rest_by_chars.resize(n_chars + 1);
            rest_by_chars[n_chars].push_back({p.substr(at), id});
        }
    }
    std::sort(lt->all_in_by_chars.begin(), lt->all_in_by_chars.end());
    sort_entries(rest);
    build_trie(rest, lt->nodes, lt->tokens);
    lt->rest_by_chars.resize(rest_by_chars.size());
    for (size_t j = 0; j < rest_by_chars.size(); ++j) {
        sort_entries(rest_by_chars[j]);
        build_trie(rest_by_chars[j], lt->rest_by_chars[j].nodes, lt->rest_by_chars[j].tokens);
    }
    std::lock_guard<std::mutex> lk(loop_mu_);
    auto [it, inserted] = loops_.emplace(ranges, std::move(lt));
    return it->second;
}

namespace {

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t k = 0; k < n; ++k) h = (h ^ p[k]) * 0x100000001b3ull;
    return h;
}

}  // namespace

std::shared_ptr<const TokenTable> TokenTable::get(const tok::Tokenizer& tok) {
    const int32_t n = tok.n_vocab();
    std::vector<std::string> pieces(n);
    std::vector<bool> usable(n);
    uint64_t h = 0xcbf29ce484222325ull;
    constexpr uint32_t kBarred = tok::kAttrControl | tok::kAttrUnknown | tok::kAttrUnused | tok::kAttrUserDefined;
    for (int32_t id = 0; id < n; ++id) {
        pieces[id] = std::string(tok.token_to_piece(id, false));
        usable[id] = !(tok.token_attr(id) & kBarred);
        const uint64_t len = pieces[id].size() | (uint64_t{usable[id]} << 32);
        h = fnv1a(h, &len, sizeof len);
        h = fnv1a(h, pieces[id].data(), pieces[id].size());
    }
    h = fnv1a(h, tok.eog_ids().data(), tok.eog_ids().size() * sizeof(int32_t));
    // An immutable memo (not state any caller can observe except through speed): the last few
    // vocabularies' tables, so each request does not rebuild the trie.
    static std::mutex mu;
    static std::vector<std::pair<uint64_t, std::shared_ptr<const TokenTable>>> memo;  // most recent last
    {
        std::lock_guard<std::mutex> lk(mu);
        for (size_t k = 0; k < memo.size(); ++k) {
            if (memo[k].first == h && memo[k].second->n_vocab() == n) {
                auto t = memo[k].second;
                memo.erase(memo.begin() + static_cast<std::ptrdiff_t>(k));
                memo.push_back({h, t});
                return t;
            }
        }
    }
    auto t = build(pieces, usable, tok.eog_ids());
    std::lock_guard<std::mutex> lk(mu);
    memo.push_back({h, t});
    if (memo.size() > 4) memo.erase(memo.begin());
    return t;
}

// ---- GrammarMask -------------------------------------------------------------------------------

GrammarMask::GrammarMask(std::shared_ptr<const TokenTable> table, std::shared_ptr<const chat::Grammar> grammar)
    : table_(std::move(table)), matcher_(std::move(grammar)) {}

// Marks the tokens of `nodes` the matcher accepts from its current state, pruning rejected
// subtrees.
void GrammarMask::walk(const std::vector<TokenTable::Node>& nodes, const std::vector<int32_t>& toks,
                       std::vector<uint64_t>& bits) {
    const size_t base = matcher_.n_pushed();
    size_t i = 0;
    while (i < nodes.size()) {
        const TokenTable::Node& nd = nodes[i];
        while (matcher_.n_pushed() - base >= nd.depth) matcher_.pop();
        if (matcher_.push_byte(nd.byte)) {
            for (uint32_t k = nd.tok_begin; k < nd.tok_end; ++k)
                bits[static_cast<size_t>(toks[k]) >> 6] |= uint64_t{1} << (toks[k] & 63);
            ++i;
        } else {
            i = nd.end;
        }
    }
    while (matcher_.n_pushed() > base) matcher_.pop();
}

void GrammarMask::compute(std::vector<uint64_t>& bits) {
    const int32_t n_vocab = table_->n_vocab();
    const int64_t cls = matcher_.loop_class();
    if (cls < 0 && matcher_.counted_loop(counted_)) {
        // Tokens of k class characters: allowed iff k <= remaining. A token with j class
        // characters and then another is walked from the state after j of them (any j class
        // characters lead to the same state up to the count, so a representative one is pushed).
        auto& lt = loops_[counted_.cls];
        if (!lt) lt = table_->loop_table(matcher_.grammar().char_class(counted_.cls).ranges);
        if (counted_.remaining >= lt->max_chars) {
            bits = lt->all_in;
        } else {
            bits.assign((static_cast<size_t>(n_vocab) + 63) / 64, 0);
            for (const auto& [k, id] : lt->all_in_by_chars) {
                if (k > counted_.remaining) break;
                bits[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
            }
        }
        const size_t base = matcher_.n_pushed();
        for (size_t j = 0; j < lt->rest_by_chars.size() && j <= counted_.remaining; ++j) {
            if (j > 0) {
                bool ok = true;
                for (char c : counted_.rep) ok = ok && matcher_.push_byte(static_cast<uint8_t>(c));
                if (!ok) break;  // cannot happen (counted_loop's conditions); stay exact regardless
            }
            walk(lt->rest_by_chars[j].nodes, lt->rest_by_chars[j].tokens, bits);
        }
        while (matcher_.n_pushed() > base) matcher_.pop();
    } else if (cls >= 0) {
        auto& lt = loops_[cls];
        if (!lt) lt = table_->loop_table(matcher_.grammar().char_class(static_cast<uint32_t>(cls)).ranges);
        bits = lt->all_in;
        walk(lt->nodes, lt->tokens, bits);
    } else {
        bits.assign((static_cast<size_t>(n_vocab) + 63) / 64, 0);
        walk(table_->nodes(), table_->node_tokens(), bits);
    }
    if (matcher_.can_end())
        for (int32_t id : table_->eog()) bits[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
}

const std::vector<uint64_t>& GrammarMask::allowed() {
    if (matcher_.generation() != cache_generation_) {
        cache_.clear();
        cache_generation_ = matcher_.generation();
    }
    matcher_.state_key(key_);
    for (auto it = cache_.begin(); it != cache_.end(); ++it) {
        if (it->key == key_) {
            cache_.splice(cache_.begin(), cache_, it);
            return cache_.front().bits;
        }
    }
    if (cache_.size() >= kCacheSize) cache_.splice(cache_.begin(), cache_, std::prev(cache_.end()));
    else cache_.emplace_front();
    CacheEntry& e = cache_.front();
    e.key = key_;
    compute(e.bits);
    return e.bits;
}

void GrammarMask::apply(std::span<float> logits) {
    const size_t n = std::min(logits.size(), static_cast<size_t>(table_->n_vocab()));
    for (size_t i = n; i < logits.size(); ++i) logits[i] = -INFINITY;
    if (failed_) {
        std::fill(logits.begin(), logits.end(), -INFINITY);
        return;
    }
    const std::vector<uint64_t>& bits = allowed();
    float* l = logits.data();
    for (size_t w = 0; w * 64 < n; ++w) {
        const uint64_t word = bits[w];
        const size_t begin = w * 64, end = std::min(n, begin + 64);
        if (word == ~uint64_t{0} && end - begin == 64) continue;
        if (word == 0) {
            std::fill(l + begin, l + end, -INFINITY);
            continue;
        }
        for (size_t i = begin; i < end; ++i)
            if (!((word >> (i - begin)) & 1)) l[i] = -INFINITY;
    }
}

void GrammarMask::accept(int32_t token) {
    if (failed_) return;
    if (token < 0 || token >= table_->n_vocab()) {
        failed_ = true;
        return;
    }
    const std::string_view piece = table_->piece(token);
    if (piece.empty()) {
        // End-of-generation accepted as text (ignore_eos) changes nothing; any other unusable
        // token means the sampler ignored the mask.
        if (!std::binary_search(table_->eog().begin(), table_->eog().end(), token)) failed_ = true;
        return;
    }
    if (!matcher_.accept(piece)) failed_ = true;
}

bool GrammarMask::accept_text(std::string_view text) {
    if (failed_) return false;
    if (!matcher_.accept(text)) failed_ = true;
    return !failed_;
}

bool GrammarMask::can_accept_text(std::string_view text) {
    if (failed_) return false;
    const size_t base = matcher_.n_pushed();
    bool ok = true;
    for (size_t i = 0; i < text.size() && ok; ++i) ok = matcher_.push_byte(static_cast<uint8_t>(text[i]));
    while (matcher_.n_pushed() > base) matcher_.pop();
    return ok;
}

bool GrammarMask::complete() const { return !failed_ && matcher_.is_complete(); }

// ---- factories ---------------------------------------------------------------------------------

Result<std::shared_ptr<GrammarMask>> make_grammar_mask_for(std::shared_ptr<const TokenTable> table, std::string_view gbnf) {
    HEARTH_ASSIGN(auto grammar, chat::Grammar::parse(gbnf));
    return std::make_shared<GrammarMask>(std::move(table), std::move(grammar));
}

Result<std::shared_ptr<LogitsMask>> make_grammar_mask(const tok::Tokenizer& tok, std::string_view gbnf) {
    HEARTH_ASSIGN(auto m, make_grammar_mask_for(TokenTable::get(tok), gbnf));
    return std::shared_ptr<LogitsMask>(std::move(m));
}

Result<std::shared_ptr<LogitsMask>> make_format_mask(const tok::Tokenizer& tok, const nlohmann::ordered_json& format) {
    HEARTH_ASSIGN(std::string gbnf, chat::format_to_gbnf(format));
    auto m = make_grammar_mask(tok, gbnf);
    if (!m.ok()) return m.status().with_context("the grammar compiled from format");  // our bug, but say so
    return m;
}

Result<std::shared_ptr<LogitsMask>> make_format_mask(const tok::Tokenizer& tok, const nlohmann::json& format) {
    return make_format_mask(tok, nlohmann::ordered_json(format));
}

namespace {

class DeferredMask : public LogitsMask {
public:
    // grammar: inner as a GrammarMask (it takes the text after the marker), or null.
    DeferredMask(const tok::Tokenizer& tok, std::shared_ptr<LogitsMask> inner, GrammarMask* grammar, std::string marker,
                 bool end_before)
        : tok_(tok), inner_(std::move(inner)), grammar_(grammar), marker_(std::move(marker)), end_before_(end_before) {
        if (grammar_) return;
        // Tokens that hold the whole marker and more than whitespace after it: their rest could
        // not be fed to the inner mask.
        for (int32_t id = 0; id < tok_.n_vocab(); ++id) {
            const std::string_view piece = tok_.token_to_piece(id, true);
            const size_t at = piece.find(marker_);
            if (at != std::string_view::npos && !only_space(piece.substr(at + marker_.size())))
                barred_.push_back(id);
        }
    }

    void apply(std::span<float> logits) override {
        if (active_) {
            inner_->apply(logits);
            return;
        }
        for (int32_t id : barred_)
            if (static_cast<size_t>(id) < logits.size()) logits[id] = -INFINITY;
        if (end_before_) return;
        for (int32_t id : tok_.eog_ids())
            if (id >= 0 && static_cast<size_t>(id) < logits.size()) logits[id] = -INFINITY;
    }

    void accept(int32_t token) override {
        if (active_) {
            inner_->accept(token);
            return;
        }
        std::string text = tail_;
        text += tok_.token_to_piece(token, true);
        const size_t at = text.find(marker_);
        if (at == std::string::npos) {
            const size_t keep = marker_.empty() ? 0 : marker_.size() - 1;
            tail_ = text.size() > keep ? text.substr(text.size() - keep) : text;
            return;
        }
        active_ = true;
        size_t rest = at + marker_.size();
        while (rest < text.size() && is_space(text[rest])) ++rest;
        // Only a marker split over tokens can leave text here for a non-grammar mask; it goes
        // unseen by the mask.
        if (rest < text.size() && grammar_) grammar_->accept_text(std::string_view(text).substr(rest));
    }

    bool complete() const override { return active_ && inner_->complete(); }

private:
    static bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
    static bool only_space(std::string_view s) {
        for (char c : s)
            if (!is_space(c)) return false;
        return true;
    }
    const tok::Tokenizer& tok_;  // outlives the request
    std::shared_ptr<LogitsMask> inner_;
    GrammarMask* grammar_;       // inner_ when it is a grammar, else null
    std::vector<int32_t> barred_;  // tokens barred before the marker (non-grammar inner only)
    std::string marker_;
    std::string tail_;  // the last marker.size() - 1 bytes generated: a marker split over tokens
    bool end_before_;
    bool active_ = false;
};

}  // namespace

std::shared_ptr<LogitsMask> make_deferred_mask(const tok::Tokenizer& tok, std::shared_ptr<GrammarMask> inner,
                                               std::string start_after, bool end_before_marker) {
    GrammarMask* g = inner.get();
    return std::make_shared<DeferredMask>(tok, std::move(inner), g, std::move(start_after), end_before_marker);
}

std::shared_ptr<LogitsMask> make_deferred_mask(const tok::Tokenizer& tok, std::shared_ptr<LogitsMask> inner,
                                               std::string start_after, bool end_before_marker) {
    return std::make_shared<DeferredMask>(tok, std::move(inner), nullptr, std::move(start_after), end_before_marker);
}

}  // namespace hearth::runtime

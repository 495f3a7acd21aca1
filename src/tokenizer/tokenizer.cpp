// Loading follows llama.cpp's llama_vocab::impl::load step by step (defaults per vocabulary kind,
// metadata overrides, text-based detection of EOT/EOM/FIM/EOG tokens, attribute fix-ups), because
// every one of those steps changes token ids somewhere: an attribute decides whether a token's
// text is matched inside user text and whether its piece is rendered.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <unordered_map>

#include "tokenizer/bpe.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/spm.h"
#include "tokenizer/utf8.h"
#include "tokenizer/wordpiece.h"

namespace hearth::tok {
namespace {

constexpr const char* kSpaceEscape = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK, SPM's space

void replace_all(std::string& s, std::string_view from, std::string_view to) {
    if (from.empty()) return;
    std::string out;
    out.reserve(s.size());
    size_t pos = 0;
    for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
        out.append(s, pos, hit - pos);
        out.append(to);
    }
    out.append(s, pos, std::string::npos);
    s.swap(out);
}

bool contains_any(const std::string& s, std::initializer_list<std::string_view> subs) {
    for (std::string_view sub : subs) {
        if (s.find(sub) != std::string::npos) return true;
    }
    return false;
}

bool is_one_of(const std::string& s, std::initializer_list<std::string_view> list) {
    for (std::string_view x : list) {
        if (s == x) return true;
    }
    return false;
}

uint32_t attr_from_type(int64_t type) {
    switch (type) {
        case 1: return kAttrNormal;
        case 2: return kAttrUnknown;
        case 3: return kAttrControl;
        case 4: return kAttrUserDefined;
        case 5: return kAttrUnused;
        case 6: return kAttrByte;
        default: return kAttrUndefined;  // 0 and unknown values, as llama.cpp
    }
}

// Byte value of an SPM-style byte token "<0xXX>" (llama.cpp's token_to_byte: strtol of
// characters 3..4 as hex, so malformed text gives whatever prefix parses).
char byte_of_token(const std::string& text) {
    if (text.size() < 4) return 0;
    char buf[3] = {text[3], text.size() > 4 ? text[4] : '\0', '\0'};
    return static_cast<char>(std::strtol(buf, nullptr, 16));
}

// Texts llama.cpp uses to find special tokens the metadata does not name.
const std::initializer_list<std::string_view> kEotTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
    "<end_of_utterance>"};
const std::initializer_list<std::string_view> kEomTexts = {"<|eom_id|>"};
const std::initializer_list<std::string_view> kFimPreTexts = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>",
    "<PRE>", "\xE2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>"};
const std::initializer_list<std::string_view> kFimSufTexts = {
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>",
    "<SUF>", "\xE2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>"};
const std::initializer_list<std::string_view> kFimMidTexts = {
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>",
    "<MID>", "\xE2\x96\x81<MID>", "<|code_middle|>", "<|middle|>"};
const std::initializer_list<std::string_view> kFimPadTexts = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>",
                                                              "<PAD>", "[PAD]"};
const std::initializer_list<std::string_view> kFimRepTexts = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                                              "<REPO>", "<reponame>"};
const std::initializer_list<std::string_view> kFimSepTexts = {"<|file_sep|>"};
const std::initializer_list<std::string_view> kEogTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "[e~["};

// One piece of the input after special-token partitioning: raw text [off, off+len) or a token.
struct Fragment {
    int32_t id;  // kNoToken for raw text
    size_t off;
    size_t len;
};

}  // namespace

struct Tokenizer::Bpe {
    std::unique_ptr<PreTokenizer> pre;
    BpeModel model;  // built with the pre-tokenizer's options (ignore_merges, byte_encode)
};

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_gguf(const gguf::GgufFile& file) {
    return from_metadata(file.meta);
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_metadata(const gguf::Metadata& meta) {
    std::unique_ptr<Tokenizer> t(new Tokenizer());
    Status st = t->load(meta);
    if (!st.ok()) return st.with_context("tokenizer");
    return t;
}

Status Tokenizer::load(const gguf::Metadata& meta) {
    HEARTH_ASSIGN(model_, meta.get_string("tokenizer.ggml.model"));
    HEARTH_ASSIGN(pre_, meta.get_string_or("tokenizer.ggml.pre", ""));

    if (model_ == "llama") {
        kind_ = VocabKind::spm;
        bos_ = 1, eos_ = 2, unk_ = 0;
        add_space_prefix_ = true, clean_spaces_ = false, add_bos_ = true, add_eos_ = false;
    } else if (model_ == "bert") {
        kind_ = VocabKind::wpm;
        bos_ = 101, eos_ = kNoToken, unk_ = 100, sep_ = 102, pad_ = 0, mask_ = 103;
        add_space_prefix_ = false, clean_spaces_ = true, add_bos_ = true, add_eos_ = false;
    } else if (model_ == "gpt2" || model_ == "gemma4") {
        kind_ = VocabKind::bpe;
        if (model_ == "gemma4") {
            pre_ = "gemma4";  // llama.cpp ignores the stored pre for this model
        } else {
            bos_ = 11, eos_ = 11;
        }
        // Decoding and BOS defaults belong to the pre-tokenizer family.
        auto bpe = std::make_unique<Bpe>();
        HEARTH_ASSIGN(bpe->pre, PreTokenizer::create(pre_));
        add_space_prefix_ = false, clean_spaces_ = bpe->pre->clean_spaces();
        escape_whitespaces_ = bpe->pre->escape_whitespaces();
        add_bos_ = bpe->pre->default_add_bos();
        if (is_one_of(pre_, {"glm4", "chatglm-bpe"})) bos_ = kNoToken;
        bpe_ = std::move(bpe);
    } else if (is_one_of(model_, {"t5", "rwkv", "plamo2", "hybriddna", "whitespace",
                                  "no_vocab", "none"})) {
        return error(StatusCode::unsupported,
                     strformat("tokenizer model '%s' is not supported (only llama/SPM, gpt2 and gemma4/BPE, bert/WordPiece)",
                               model_.c_str()));
    } else {
        return error(StatusCode::unsupported, strformat("unknown tokenizer model '%s'", model_.c_str()));
    }
    HEARTH_ASSIGN(add_space_prefix_, meta.get_bool_or("tokenizer.ggml.add_space_prefix", add_space_prefix_));
    // remove_extra_whitespaces only affects UGM vocabularies, which are not supported; still
    // validate the type so a damaged file is reported.
    HEARTH_ASSIGN(bool remove_extra_ws, meta.get_bool_or("tokenizer.ggml.remove_extra_whitespaces", false));
    (void)remove_extra_ws;

    HEARTH_ASSIGN(std::vector<std::string> texts, meta.get_string_array("tokenizer.ggml.tokens"));
    const size_t n = texts.size();
    if (n == 0) return error(StatusCode::corrupt, "tokenizer.ggml.tokens is empty");
    if (n > static_cast<size_t>(INT32_MAX)) return error(StatusCode::corrupt, "tokenizer.ggml.tokens is too long");

    std::vector<float> scores;
    if (meta.has("tokenizer.ggml.scores")) {
        HEARTH_ASSIGN(scores, meta.get_f32_array("tokenizer.ggml.scores"));
        if (scores.size() < n)
            return error(StatusCode::corrupt, strformat("tokenizer.ggml.scores has %zu entries for %zu tokens",
                                                        scores.size(), n));
    }
    std::vector<int64_t> types;
    if (meta.has("tokenizer.ggml.token_type")) {
        HEARTH_ASSIGN(types, meta.get_int_array("tokenizer.ggml.token_type"));
        if (types.size() < n)
            return error(StatusCode::corrupt, strformat("tokenizer.ggml.token_type has %zu entries for %zu tokens",
                                                        types.size(), n));
    }

    vocab_.texts.resize(n);
    vocab_.scores.assign(n, 0.0f);
    vocab_.attrs.assign(n, kAttrNormal);
    for (size_t i = 0; i < n; ++i) {
        std::string& word = texts[i];
        if (word.empty()) word = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp, so it stays addressable
        vocab_.ids[word] = static_cast<int32_t>(i);
        vocab_.max_token_len = std::max(vocab_.max_token_len, static_cast<int32_t>(word.size()));
        if (!scores.empty()) vocab_.scores[i] = scores[i];
        if (!types.empty()) vocab_.attrs[i] = attr_from_type(types[i]);
        vocab_.texts[i] = std::move(word);
    }
    for (int b = 0; b < 256; ++b) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "<0x%02X>", b);
        int32_t id = vocab_.find(hex);
        if (id == kNoToken) id = vocab_.find(std::string(1, static_cast<char>(b)));
        vocab_.byte_ids[b] = id;
    }

    // Special ids: defaults outside the vocabulary are dropped; metadata overrides them.
    struct SpecialKey {
        const char* key;
        int32_t* id;
        bool required_in_range;  // used for encoding or end-of-generation: a bad value is an error
    };
    const SpecialKey keys[] = {
        {"tokenizer.ggml.bos_token_id", &bos_, true},
        {"tokenizer.ggml.eos_token_id", &eos_, true},
        {"tokenizer.ggml.eot_token_id", &eot_, true},
        {"tokenizer.ggml.eom_token_id", &eom_, true},
        {"tokenizer.ggml.unknown_token_id", &unk_, true},
        {"tokenizer.ggml.seperator_token_id", &sep_, true},
        {"tokenizer.ggml.padding_token_id", &pad_, false},
        {"tokenizer.ggml.mask_token_id", &mask_, false},
        {"tokenizer.ggml.fim_pre_token_id", &fim_pre_, false},
        {"tokenizer.ggml.fim_suf_token_id", &fim_suf_, false},
        {"tokenizer.ggml.fim_mid_token_id", &fim_mid_, false},
        {"tokenizer.ggml.fim_pad_token_id", &fim_pad_, false},
        {"tokenizer.ggml.fim_rep_token_id", &fim_rep_, false},
        {"tokenizer.ggml.fim_sep_token_id", &fim_sep_, false},
        {"tokenizer.ggml.prefix_token_id", &fim_pre_, false},  // deprecated spellings
        {"tokenizer.ggml.suffix_token_id", &fim_suf_, false},
        {"tokenizer.ggml.middle_token_id", &fim_mid_, false},
    };
    for (const SpecialKey& k : keys) {
        if (*k.id != kNoToken && !vocab_.valid(*k.id)) *k.id = kNoToken;
        if (!meta.has(k.key)) continue;
        HEARTH_ASSIGN(int64_t v, meta.get_int(k.key));
        if (v >= 0 && v < static_cast<int64_t>(n)) {
            *k.id = static_cast<int32_t>(v);
        } else if (k.required_in_range && v != -1 && v != 0xFFFFFFFFll) {
            return error(StatusCode::corrupt, strformat("%s = %lld is outside the vocabulary (%zu tokens)",
                                                        k.key, static_cast<long long>(v), n));
        }
        // else: "none" sentinel or an unused id out of range: keep the default, like llama.cpp
    }
    HEARTH_ASSIGN(add_bos_, meta.get_bool_or("tokenizer.ggml.add_bos_token", add_bos_));
    if (is_one_of(pre_, {"gemma4", "granite-embed-multi-311m"}) && kind_ == VocabKind::bpe) add_bos_ = true;  // llama.cpp's Gemma 4 override
    HEARTH_ASSIGN(add_eos_, meta.get_bool_or("tokenizer.ggml.add_eos_token", add_eos_));
    HEARTH_ASSIGN(wpm_lowercase_, meta.get_bool_or("tokenizer.ggml.normalizer.lowercase", true));
    HEARTH_ASSIGN(wpm_strip_accents_, meta.get_bool_or("tokenizer.ggml.normalizer.strip_accents", wpm_lowercase_));

    finish_specials(meta);

    if (kind_ == VocabKind::bpe) {
        HEARTH_ASSIGN(std::vector<std::string> merges, meta.get_string_array("tokenizer.ggml.merges"));
        HEARTH_ASSIGN(bpe_->model, BpeModel::build(vocab_.texts, merges, bpe_->pre->bpe_options()));
    }
    return Status::ok_status();
}

// Everything llama.cpp decides after reading the ids: text-detected EOT/EOM/FIM ids, the
// end-of-generation set, attribute fix-ups, the partition order and the piece cache.
void Tokenizer::finish_specials(const gguf::Metadata& meta) {
    auto& attrs = vocab_.attrs;
    auto detect = [&](int32_t& slot, const std::string& text, int32_t id,
                      std::initializer_list<std::string_view> list) {
        if (slot != kNoToken || !is_one_of(text, list)) return;
        slot = id;
        attrs[id] |= kAttrControl;  // "control-looking token was not control-type": llama.cpp overrides
    };
    for (const auto& [text, id] : vocab_.ids) {
        detect(eot_, text, id, kEotTexts);
        detect(eom_, text, id, kEomTexts);
        detect(fim_pre_, text, id, kFimPreTexts);
        detect(fim_suf_, text, id, kFimSufTexts);
        detect(fim_mid_, text, id, kFimMidTexts);
        detect(fim_pad_, text, id, kFimPadTexts);
        detect(fim_rep_, text, id, kFimRepTexts);
        detect(fim_sep_, text, id, kFimSepTexts);
    }
    for (const auto& [text, id] : vocab_.ids) {
        if ((attrs[id] & kAttrControl) && text.find("unused") != std::string::npos) attrs[id] |= kAttrUnused;
    }

    std::set<int32_t> eog;
    for (int32_t id : {fim_pad_, fim_rep_, fim_sep_}) {
        if (id != kNoToken) eog.insert(id);
    }
    for (const auto& [text, id] : vocab_.ids) {
        if (is_one_of(text, kEogTexts)) {
            eog.insert(id);
            attrs[id] |= kAttrControl;
        }
    }
    // gpt-oss (harmony): these are always rendered and matched in plain text.
    for (const auto& [text, id] : vocab_.ids) {
        if (is_one_of(text, {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"})) attrs[id] = kAttrUserDefined;
    }
    for (int32_t id : {eos_, eot_, eom_}) {
        if (id != kNoToken) eog.insert(id);
    }
    {
        // Harmony / solar-open: "<|end|>" ends a message, not the generation.
        bool has_return = false, has_call = false, has_end = false, has_flush = false;
        int32_t end_id = kNoToken;
        for (int32_t id : eog) {
            if (!vocab_.valid(id)) continue;
            const std::string& text = vocab_.texts[id];
            if (text == "<|return|>") has_return = true;
            else if (text == "<|call|>" || text == "<|calls|>") has_call = true;
            else if (text == "<|flush|>") has_flush = true;
            else if (text == "<|end|>") has_end = true, end_id = id;
        }
        if ((has_return && has_call && has_end) || (has_call && has_flush && has_end)) {
            eog.erase(end_id);
            attrs[end_id] = kAttrUserDefined;
        }
    }
    {
        // Gemma 4 / PaddleOCR: "</s>" is not an end of generation there.
        bool has_tool_response = false, has_s = false;
        int32_t s_id = kNoToken;
        for (int32_t id : eog) {
            if (!vocab_.valid(id)) continue;
            const std::string& text = vocab_.texts[id];
            if (text == "<|tool_response>") has_tool_response = true;
            else if (text == "</s>") has_s = true, s_id = id;
        }
        if (has_tool_response && has_s) {
            eog.erase(s_id);
            attrs[s_id] = kAttrNormal;
        }
    }
    eog_ids_.assign(eog.begin(), eog.end());

    // Partition order: longest text first. std::sort (not stable_sort) on ascending ids with
    // this comparator, as llama.cpp does, so equal-length texts end up in the same order.
    special_ids_.clear();
    for (int32_t id = 0; id < vocab_.n(); ++id) {
        if (attrs[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) special_ids_.push_back(id);
    }
    std::sort(special_ids_.begin(), special_ids_.end(), [&](int32_t a, int32_t b) {
        return vocab_.texts[a].size() > vocab_.texts[b].size();
    });

    build_special_trie();

    // Piece cache (llama_token_to_piece with special=true), from the attributes as they are now.
    pieces_.assign(vocab_.n(), std::string());
    for (int32_t id = 0; id < vocab_.n(); ++id) {
        const uint32_t a = attrs[id];
        const std::string& text = vocab_.texts[id];
        std::string& piece = pieces_[id];
        if (a & (kAttrUnknown | kAttrControl | kAttrUserDefined)) {
            piece = text;
        } else if (a & kAttrNormal) {
            if (kind_ != VocabKind::bpe || escape_whitespaces_) {
                piece = text;
                replace_all(piece, kSpaceEscape, " ");
            } else {
                // Byte-level text back to bytes; a code point outside the byte map is kept
                // visible the way llama.cpp's llama_decode_text writes it.
                unicode_to_bytes(text, piece);
            }
        } else if (a & kAttrByte) {
            piece.assign(1, byte_of_token(text));
        }
    }

    // Per-model attributes llama.cpp sets from the model name (not stored in GGUF).
    auto name_or = [&](const char* key) {
        auto r = meta.get_string_or(key, "");
        return r.ok() ? r.value() : std::string();
    };
    std::string name = name_or("general.name");
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    const std::string arch = name_or("general.architecture");
    auto set_attr = [&](const char* text, uint32_t a, bool on) {
        const int32_t id = vocab_.find(text);
        if (id == kNoToken) return;
        attrs[id] = on ? (attrs[id] | a) : (attrs[id] & ~a);
    };
    if (contains_any(pre_, {"jina-v2-de", "jina-v2-es", "jina-v2-code"}) ||
        contains_any(arch, {"nomic-bert-moe", "jina-bert-v3"})) {
        set_attr("<mask>", kAttrLstrip, true);
    } else if (contains_any(name, {"phi-3", "phi3"})) {
        for (int32_t id : special_ids_) attrs[id] |= kAttrRstrip;
        set_attr("</s>", kAttrRstrip, true);
        for (const char* t : {"<unk>", "<s>", "<|endoftext|>"}) set_attr(t, kAttrRstrip, false);
    } else if (contains_any(name, {"modern-bert"})) {
        set_attr("[MASK]", kAttrLstrip, true);
    }
}

void Tokenizer::build_special_trie() {
    trie_root_.fill(-1);
    trie_next_.clear();
    trie_text_.assign(1, -1);
    special_text_.clear();
    n_special_texts_ = 0;
    for (int32_t sid : special_ids_) {
        const std::string& text = vocab_.texts[sid];  // never empty: empty texts were renamed at load
        int32_t node = 0;
        for (size_t i = 0; i < text.size(); ++i) {
            const uint8_t b = static_cast<uint8_t>(text[i]);
            int32_t* slot;
            if (node == 0) {
                slot = &trie_root_[b];
            } else {
                slot = &trie_next_.try_emplace((static_cast<uint64_t>(node) << 8) | b, -1).first->second;
            }
            if (*slot < 0) {
                *slot = static_cast<int32_t>(trie_text_.size());
                trie_text_.push_back(-1);
            }
            node = *slot;
        }
        if (trie_text_[node] < 0) trie_text_[node] = n_special_texts_++;
        special_text_.push_back(trie_text_[node]);
    }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    std::vector<Fragment> frags, next;
    if (!text.empty()) frags.push_back({kNoToken, 0, text.size()});

    // Split raw text at special-token texts, longest tokens first; each token splits every raw
    // fragment at all its non-overlapping occurrences, left to right (llama.cpp's
    // tokenizer_st_partition). occ[k] lists every start position of special text k in `text`,
    // ascending, so "first occurrence at or after off" is a binary search.
    std::vector<std::vector<size_t>> occ;
    if (!frags.empty() && n_special_texts_ > 0) {
        occ.resize(n_special_texts_);
        for (size_t i = 0; i < text.size(); ++i) {
            int32_t node = trie_root_[static_cast<uint8_t>(text[i])];
            for (size_t j = i + 1; node >= 0; ++j) {
                if (trie_text_[node] >= 0) occ[trie_text_[node]].push_back(i);
                if (j >= text.size()) break;
                auto it = trie_next_.find((static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(text[j]));
                node = it == trie_next_.end() ? -1 : it->second;
            }
        }
    }
    for (size_t s = 0; s < special_ids_.size() && !occ.empty(); ++s) {
        const int32_t sid = special_ids_[s];
        const uint32_t attr = vocab_.attrs[sid];
        if (!parse_special && (attr & (kAttrControl | kAttrUnknown))) continue;
        const std::vector<size_t>& positions = occ[special_text_[s]];
        if (positions.empty()) continue;
        const size_t tok_len = vocab_.texts[sid].size();
        next.clear();
        for (const Fragment& f : frags) {
            if (f.id != kNoToken) {
                next.push_back(f);
                continue;
            }
            size_t off = f.off, len = f.len;
            for (;;) {
                auto it = std::lower_bound(positions.begin(), positions.end(), off);
                if (it == positions.end() || *it + tok_len > off + len) {
                    next.push_back({kNoToken, off, len});
                    break;
                }
                const size_t match = *it;
                if (match > off) {
                    size_t left_len = match - off;
                    if (attr & kAttrLstrip) {
                        while (left_len > 0 && std::isspace(static_cast<unsigned char>(text[off + left_len - 1]))) --left_len;
                    }
                    if (left_len > 0) next.push_back({kNoToken, off, left_len});
                }
                next.push_back({sid, 0, 0});
                const size_t end = off + len;
                if (match + tok_len >= end) break;
                off = match + tok_len;
                len = end - off;
                if (attr & kAttrRstrip) {
                    while (len > 0 && std::isspace(static_cast<unsigned char>(text[off]))) ++off, --len;
                }
                if (len == 0) break;
            }
        }
        frags.swap(next);
    }

    std::vector<int32_t> out;
    switch (kind_) {
        case VocabKind::spm: {
            if (add_special && add_bos_ && bos_ != kNoToken) out.push_back(bos_);
            bool prev_special = true;  // the first fragment gets the space prefix too
            for (const Fragment& f : frags) {
                if (f.id != kNoToken) {
                    out.push_back(f.id);
                    prev_special = true;
                    continue;
                }
                std::string s;
                if (add_space_prefix_ && prev_special) s = " ";
                s.append(text.substr(f.off, f.len));
                replace_all(s, " ", kSpaceEscape);
                spm_encode(vocab_, s, out);
                prev_special = false;
            }
            if (add_special && add_eos_ && eos_ != kNoToken) out.push_back(eos_);
            break;
        }
        case VocabKind::bpe: {
            if (add_special && add_bos_ && bos_ != kNoToken) out.push_back(bos_);
            for (const Fragment& f : frags) {
                if (f.id != kNoToken) out.push_back(f.id);
                else encode_fragment(text.substr(f.off, f.len), out);
            }
            if (add_special && add_eos_ && eos_ != kNoToken) out.push_back(eos_);
            break;
        }
        case VocabKind::wpm: {
            // WordPiece always frames with [CLS] ... [SEP] (llama.cpp ignores add_bos here).
            if (add_special && bos_ != kNoToken) out.push_back(bos_);
            const WpmOptions opts{wpm_lowercase_, wpm_strip_accents_};
            for (const Fragment& f : frags) {
                if (f.id != kNoToken) out.push_back(f.id);
                else wpm_encode(vocab_, unk_, text.substr(f.off, f.len), opts, out);
            }
            if (add_special && sep_ != kNoToken) out.push_back(sep_);
            break;
        }
    }
    return out;
}

void Tokenizer::encode_fragment(std::string_view text, std::vector<int32_t>& out) const {
    std::string escaped;
    if (escape_whitespaces_) {
        escaped.assign(text);
        replace_all(escaped, " ", kSpaceEscape);
        text = escaped;
    }
    std::vector<std::string_view> words;
    bpe_->pre->split(text, words);
    for (std::string_view w : words) bpe_->model.encode_piece(w, out);
}

std::string_view Tokenizer::token_to_piece(int32_t id, bool render_special) const {
    if (!vocab_.valid(id)) return {};
    if (!render_special && (vocab_.attrs[id] & (kAttrUnknown | kAttrControl))) return {};
    return pieces_[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special, bool remove_special) const {
    size_t begin = 0, end = ids.size();
    bool remove_space = add_space_prefix_;
    if (remove_special && add_bos_ && end > 0 && ids[0] == bos_) {
        remove_space = false;
        begin = 1;
    }
    if (remove_special && add_eos_ && end > begin && ids[end - 1] == eos_) --end;

    std::string text;
    for (size_t i = begin; i < end; ++i) {
        std::string_view piece = token_to_piece(ids[i], render_special);
        if (remove_space && !piece.empty() && piece[0] == ' ') piece.remove_prefix(1);
        remove_space = false;
        text.append(piece);
    }
    if (!clean_spaces_ || text.empty()) return text;

    // llama.cpp's three in-place clean-up passes, kept literally (each reads bytes the previous
    // iteration may already have overwritten, and the output must match that exactly).
    char* t = text.data();
    int32_t total = static_cast<int32_t>(text.size());
    {
        const int32_t total1 = total;  // " ?", " !", " .", " ," lose the space
        total = 1;
        for (int32_t i = 1; i < total1; ++i) {
            const char x = t[i];
            if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) --total;
            t[total++] = x;
        }
    }
    {
        const int32_t total2 = total;  // " ' " -> "'"
        total = total ? 1 : 0;
        for (int32_t i = 1; i < total2; ++i) {
            const char x = t[i];
            if (x == '\'' && i + 1 < total2 && t[i - 1] == ' ' && t[i + 1] == ' ') {
                --total;
                t[++i] = '\0';
            }
            t[total++] = x;
        }
    }
    {
        const int32_t total3 = total;  // " 's", " 'm", " 're", " 've" lose the space
        total = total ? 1 : 0;
        for (int32_t i = 1; i < total3; ++i) {
            const char x = t[i];
            if (t[i - 1] == ' ' && x == '\'' && i + 1 < total3) {
                const char x1 = t[i + 1];
                if (x1 == 's' || x1 == 'm') {
                    --total;
                } else if (x1 != 't' && x1 != 'd' && i + 2 < total3) {
                    const char x2 = t[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) --total;
                }
            }
            t[total++] = x;
        }
    }
    text.resize(static_cast<size_t>(total));
    return text;
}

bool Tokenizer::is_eog(int32_t id) const {
    return id != kNoToken && std::binary_search(eog_ids_.begin(), eog_ids_.end(), id);
}

const std::string& Tokenizer::token_text(int32_t id) const {
    static const std::string kEmpty;
    return vocab_.valid(id) ? vocab_.texts[id] : kEmpty;
}

int32_t Tokenizer::find_token(std::string_view text) const { return vocab_.find(std::string(text)); }

}  // namespace hearth::tok

// Text <-> token ids, configured entirely from GGUF `tokenizer.*` metadata and matching
// llama.cpp (llama_tokenize / llama_token_to_piece / llama_detokenize) token for token and byte
// for byte. Three vocabulary kinds: SPM ("llama"), BPE ("gpt2" and "gemma4", via bpe.h and
// pretokenize.h) and WordPiece ("bert"); other tokenizer models are an unsupported error.
//
// A Tokenizer is immutable after from_gguf() and safe to use from several threads at once.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "gguf/gguf.h"
#include "tokenizer/vocab.h"

namespace hearth::tok {

enum class VocabKind { spm, bpe, wpm };

class Tokenizer {
public:
    // Reads tokenizer.ggml.{model, pre, tokens, scores, token_type, merges, *_token_id,
    // add_bos_token, add_eos_token, add_space_prefix, remove_extra_whitespaces, normalizer.*}
    // (works on vocab-only files too). Errors: missing or mistyped tokens/model/merges, scores
    // or token_type shorter than tokens, a bos/eos/eot/eom/unk/sep id outside the vocabulary
    // (the "none" sentinels -1 and 0xFFFFFFFF are accepted and keep the default, like llama.cpp),
    // an unsupported tokenizer model or pre-tokenizer.
    static Result<std::unique_ptr<Tokenizer>> from_gguf(const gguf::GgufFile& file);
    static Result<std::unique_ptr<Tokenizer>> from_metadata(const gguf::Metadata& meta);
    ~Tokenizer();
    Tokenizer(const Tokenizer&) = delete;
    Tokenizer& operator=(const Tokenizer&) = delete;

    // llama_tokenize(text, add_special, parse_special). add_special adds BOS/EOS as the
    // vocabulary asks (WordPiece: [CLS] ... [SEP]). parse_special matches CONTROL and UNKNOWN
    // token texts in `text`; USER_DEFINED token texts are matched either way.
    std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

    // llama_token_to_piece(id, lstrip 0, special): raw bytes, possibly an incomplete UTF-8
    // sequence (byte tokens). CONTROL/UNKNOWN tokens give "" unless render_special; out-of-range
    // ids give "". The view points into the tokenizer and lives as long as it does.
    std::string_view token_to_piece(int32_t id, bool render_special) const;

    // llama_detokenize(ids, remove_special, render_special): concatenated pieces, with SPM's
    // leading space of the first piece removed (when add_space_prefix; not when remove_special
    // dropped a leading BOS) and the vocabulary's clean-up of spaces before punctuation
    // (clean_spaces, most BPE vocabularies and WordPiece). remove_special drops a leading BOS /
    // trailing EOS when the vocabulary adds them. Out-of-range ids contribute nothing.
    std::string decode(std::span<const int32_t> ids, bool render_special,
                       bool remove_special = false) const;

    VocabKind kind() const { return kind_; }
    const std::string& model_name() const { return model_; }  // tokenizer.ggml.model
    const std::string& pre_name() const { return pre_; }      // tokenizer.ggml.pre ("" if absent)
    int32_t n_vocab() const { return vocab_.n(); }
    // Special ids; kNoToken (-1) when the vocabulary has none.
    int32_t bos() const { return bos_; }
    int32_t eos() const { return eos_; }
    int32_t eot() const { return eot_; }
    int32_t eom() const { return eom_; }
    int32_t unk() const { return unk_; }
    int32_t sep() const { return sep_; }
    int32_t pad() const { return pad_; }
    bool add_bos() const { return add_bos_; }
    bool add_eos() const { return add_eos_; }
    bool add_space_prefix() const { return add_space_prefix_; }
    // End of generation: eos, eot, eom and the tokens llama.cpp recognises by text
    // (<|eot_id|>, <|im_end|>, <|end|>, <|endoftext|>, <end_of_turn>, <|return|>, <|call|>, ...),
    // minus <|end|> in harmony (gpt-oss) vocabularies.
    bool is_eog(int32_t id) const;
    const std::vector<int32_t>& eog_ids() const { return eog_ids_; }  // ascending
    bool is_control(int32_t id) const { return has_attr(id, kAttrControl); }
    bool is_byte(int32_t id) const { return has_attr(id, kAttrByte); }
    uint32_t token_attr(int32_t id) const { return vocab_.valid(id) ? vocab_.attrs[id] : 0; }
    const std::string& token_text(int32_t id) const;  // "" for out-of-range ids
    int32_t find_token(std::string_view text) const;  // exact text match; kNoToken if none

private:
    Tokenizer();
    struct Bpe;
    bool has_attr(int32_t id, uint32_t a) const { return vocab_.valid(id) && (vocab_.attrs[id] & a); }
    Status load(const gguf::Metadata& meta);
    void finish_specials(const gguf::Metadata& meta);
    void build_special_trie();
    void encode_fragment(std::string_view text, std::vector<int32_t>& out) const;

    VocabKind kind_ = VocabKind::spm;
    std::string model_, pre_;
    Vocab vocab_;
    std::vector<std::string> pieces_;           // [n_vocab] piece with specials rendered (llama.cpp's cache_token_to_piece)
    std::vector<int32_t> special_ids_;          // CONTROL/USER_DEFINED/UNKNOWN ids, longest text first: partition order
    // Byte trie over the special texts, so one pass over the input finds every occurrence of
    // every special text (instead of one full search per special token). Node 0 is the root.
    std::array<int32_t, 256> trie_root_{};                 // root child per byte, -1 if none
    std::unordered_map<uint64_t, int32_t> trie_next_;      // (node << 8 | byte) -> child, below the root
    std::vector<int32_t> trie_text_;                       // [n_nodes] text index ending at the node, -1 if none
    std::vector<int32_t> special_text_;                    // [special_ids_.size()] text index of each special id
    int32_t n_special_texts_ = 0;                          // equal texts share an index
    std::vector<int32_t> eog_ids_;
    int32_t bos_ = kNoToken, eos_ = kNoToken, eot_ = kNoToken, eom_ = kNoToken, unk_ = kNoToken;
    int32_t sep_ = kNoToken, pad_ = kNoToken, mask_ = kNoToken;
    int32_t fim_pre_ = kNoToken, fim_suf_ = kNoToken, fim_mid_ = kNoToken;
    int32_t fim_pad_ = kNoToken, fim_rep_ = kNoToken, fim_sep_ = kNoToken;
    bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
    bool clean_spaces_ = false;
    bool escape_whitespaces_ = false;  // BPE only: SPM-style vocabularies spell spaces U+2581 (gemma4, sarvam-moe)
    bool wpm_lowercase_ = true, wpm_strip_accents_ = true;
    std::unique_ptr<Bpe> bpe_;  // BPE vocabularies only
};

}  // namespace hearth::tok

// The tokenizer of a Hugging Face checkpoint (tokenizer.json, tokenizer_config.json, the
// special ids of config.json, chat_template.jinja / chat_template.json) as the GGUF
// `tokenizer.*` metadata that llama.cpp's convert_hf_to_gguf.py writes and tok::Tokenizer
// reads. Two kinds:
//
//  * "gpt2": byte-level BPE (Llama 3, Qwen2/2.5/3, ...): tokens in id order, merges, token
//    types (added tokens CONTROL when special or special-looking, else USER_DEFINED; holes
//    [PAD<i>] UNUSED), and tokenizer.ggml.pre. llama.cpp picks the pre-tokenizer by hashing
//    what the Python tokenizer makes of a test string; without Python we read it off the
//    pre_tokenizer config instead (split regexes, digit splitting, byte-level regex), which
//    names the same llama.cpp family for the tokenizers in the table in hf_tokenizer.cpp. An
//    unknown configuration is an unsupported error quoting it: guessing would tokenize wrong.
//  * "llama": SentencePiece-style BPE with byte fallback (Llama 2, Mistral, Mixtral): tokens,
//    types (<0xXX> BYTE, the unk token UNKNOWN, special tokens CONTROL) and scores. The scores
//    are derived from the merge ranks (a token made by merge r scores -r), so llama.cpp's SPM
//    merge order equals the BPE merge order. llama.cpp's own tokenizer.json path writes -1000
//    for every token, which loses that order; its tokenizer.model path reads the real scores.
//
// Both: bos/eos/unk/sep/pad/cls/mask ids (tokenizer_config's *_token matched against the added
// tokens, then config.json's *_token_id), add_bos/add_eos (post_processor template, then
// tokenizer_config), and tokenizer.chat_template (string, or the list form: "default" becomes
// tokenizer.chat_template and the others tokenizer.chat_template.<name>).
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "gguf/gguf.h"

namespace hearth::store {

// File contents; empty strings for files that are absent.
struct HfTokenizerFiles {
    std::string tokenizer_json;         // required
    std::string tokenizer_config_json;
    std::string config_json;            // for bos_token_id & co.
    std::string chat_template_jinja;    // chat_template.jinja
    std::string chat_template_json;     // chat_template.json ({"chat_template": ...})
};

// Reads the files above from a checkpoint folder. not_found naming tokenizer.json when it is
// missing (tokenizer.model alone, the SentencePiece protobuf, is not read: unsupported).
Result<HfTokenizerFiles> read_hf_tokenizer_files(const std::string& dir);

// Adds the tokenizer.* keys to `out`. n_vocab is the model's vocabulary (its token embedding
// rows): the token list is padded to it with [PAD<i>] UNUSED tokens, and a token id at or past
// it is an error. Errors name the file and field (corrupt for malformed JSON, unsupported for a
// tokenizer model or pre-tokenizer that has no GGUF equivalent); `out` may then hold some keys.
Status add_hf_tokenizer_metadata(const HfTokenizerFiles& files, int64_t n_vocab, gguf::Metadata& out);

// The tokenizer.ggml.pre name for a byte-level BPE tokenizer.json, or unsupported.
Result<std::string> hf_bpe_pre_name(const std::string& tokenizer_json);

}  // namespace hearth::store

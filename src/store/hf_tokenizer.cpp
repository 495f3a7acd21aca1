#include "store/hf_tokenizer.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace hearth::store {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// GGUF token types (llama.cpp's llama_token_type).
enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// Pre-tokenizer configurations and the llama.cpp family each one is. Signatures are built by
// pre_signature(): the steps of the pre_tokenizer joined by " + ", a Split by its pattern, a
// ByteLevel as "ByteLevel" or "ByteLevel(regex)" when it applies the GPT-2 regex itself, Digits
// as "Digits" or "Digits(individual)". Regexes are the ones the models' tokenizer.json files
// carry (JSON-decoded).
constexpr const char* kHfLlama3 =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr const char* kHfQwen2 =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr const char* kHfGpt4o =
    R"re([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr const char* kHfTekken =
    R"re([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr const char* kHfDeepseek3Words =
    R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr const char* kHfCjkKana = "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+";

struct PreFamily {
    std::string signature;
    const char* name;
};

const std::vector<PreFamily>& pre_families() {
    static const std::vector<PreFamily> kFamilies = {
        {std::string("Split(") + kHfLlama3 + ") + ByteLevel", "llama-bpe"},      // Llama 3.x
        {std::string("Split(") + kHfQwen2 + ") + ByteLevel", "qwen2"},           // Qwen2, 2.5, 3
        {std::string("Split(") + kHfGpt4o + ") + ByteLevel", "gpt-4o"},          // o200k: gpt-oss, Phi-4, Llama 4
        {std::string("Split(") + kHfTekken + ") + ByteLevel", "tekken"},         // Mistral Nemo & co.
        {std::string("Split(\\p{N}{1,3}) + Split(") + kHfCjkKana + ") + Split(" + kHfDeepseek3Words + ") + ByteLevel",
         "deepseek-v3"},
        {"ByteLevel(regex)", "gpt-2"},                                            // GPT-2, OLMo-1 style
        {"Digits(individual) + ByteLevel(regex)", "starcoder"},                   // StarCoder, Refact
    };
    return kFamilies;
}

// Exceptions never leave this file: nlohmann's are turned into corrupt errors by the callers.
const json* member(const json& j, const char* key) {
    if (!j.is_object()) return nullptr;
    auto it = j.find(key);
    return it == j.end() ? nullptr : &*it;
}

std::string string_member(const json& j, const char* key) {
    const json* v = member(j, key);
    return v && v->is_string() ? v->get<std::string>() : std::string();
}

// A special token field of tokenizer_config.json: "text" or {"content": "text", ...}.
std::string token_content(const json& cfg, const std::string& key) {
    const json* v = member(cfg, key.c_str());
    if (!v) return {};
    if (v->is_string()) return v->get<std::string>();
    if (v->is_object()) return string_member(*v, "content");
    return {};
}

Result<json> parse_json(const std::string& text, const char* file) {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return error(StatusCode::corrupt, std::string(file) + ": not valid JSON");
    if (!j.is_object()) return error(StatusCode::corrupt, std::string(file) + ": not a JSON object");
    return j;
}

std::string pre_signature(const json& p) {
    if (!p.is_object()) return "";
    const std::string type = string_member(p, "type");
    if (type == "Sequence") {
        std::string s;
        if (const json* list = member(p, "pretokenizers"); list && list->is_array())
            for (const json& step : *list) s += (s.empty() ? "" : " + ") + pre_signature(step);
        return s;
    }
    if (type == "Split") {
        const json* pat = member(p, "pattern");
        std::string re = pat ? string_member(*pat, "Regex") : "";
        if (re.empty() && pat) re = string_member(*pat, "String");
        return "Split(" + re + ")";
    }
    if (type == "ByteLevel") {
        const json* r = member(p, "use_regex");
        const bool use_regex = !(r && r->is_boolean() && !r->get<bool>());  // defaults to true
        return use_regex ? "ByteLevel(regex)" : "ByteLevel";
    }
    if (type == "Digits") {
        const json* d = member(p, "individual_digits");
        return d && d->is_boolean() && d->get<bool>() ? "Digits(individual)" : "Digits";
    }
    return type;
}

Result<std::string> pre_name(const json& tokenizer) {
    const json* p = member(tokenizer, "pre_tokenizer");
    const std::string sig = p ? pre_signature(*p) : "";
    for (const PreFamily& f : pre_families())
        if (f.signature == sig) return std::string(f.name);
    return error(StatusCode::unsupported,
                 "tokenizer.json: byte-level BPE pre-tokenizer not recognized (" + (sig.empty() ? "none" : sig) +
                     "); supported: Llama 3, Qwen2, GPT-4o, Tekken, DeepSeek-V3, GPT-2 and StarCoder splitting");
}

// does_token_look_special() of convert_hf_to_gguf.py: added tokens that some models forget to
// mark special.
bool looks_special(const std::string& t) {
    auto wrapped = [&](std::string_view open, std::string_view close) {
        return t.size() >= open.size() + close.size() && t.compare(0, open.size(), open) == 0 &&
               t.compare(t.size() - close.size(), close.size(), close) == 0;
    };
    return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || wrapped("<|", "|>") ||
           wrapped("<\xEF\xBD\x9C", "\xEF\xBD\x9C>") /* <｜ ｜> */ || wrapped("<unused", ">");
}

// Builds a new string: std::string::replace in place trips GCC 12's -Wrestrict false positive.
std::string replace_all(const std::string& s, std::string_view from, std::string_view to) {
    std::string out;
    size_t pos = 0;
    for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
        out.append(s, pos, hit - pos);
        out.append(to);
    }
    out.append(s, pos, std::string::npos);
    return out;
}

bool is_byte_token(const std::string& t) {
    auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
    return t.size() == 6 && t.compare(0, 3, "<0x") == 0 && hex(t[3]) && hex(t[4]) && t[5] == '>';
}

struct AddedToken {
    int64_t id;
    std::string content;
    bool special;
};

// The vocabulary of tokenizer.json: model.vocab and added_tokens, by id.
struct RawVocab {
    std::vector<std::string> texts;  // [n_vocab]
    std::vector<uint8_t> present;    // [n_vocab] 1 where some entry names the id
    std::vector<AddedToken> added;   // in file order
    std::map<int64_t, size_t> added_by_id;
    int64_t base_size = 0;           // model.vocab entries
};

Result<RawVocab> read_vocab(const json& tj, int64_t n_vocab) {
    RawVocab v;
    v.texts.resize((size_t)n_vocab);
    v.present.assign((size_t)n_vocab, 0);
    const json* model = member(tj, "model");
    const json* vocab = model ? member(*model, "vocab") : nullptr;
    if (!vocab || !vocab->is_object())
        return error(StatusCode::corrupt, "tokenizer.json: model.vocab is missing or not an object");
    auto put = [&](int64_t id, const std::string& text, const char* what) -> Status {
        if (id < 0 || id >= n_vocab)
            return error(StatusCode::corrupt,
                         strformat("tokenizer.json: %s '%s' has id %lld, outside the model's %lld tokens", what,
                                   text.c_str(), (long long)id, (long long)n_vocab));
        v.texts[(size_t)id] = text;
        v.present[(size_t)id] = 1;
        return {};
    };
    for (auto it = vocab->begin(); it != vocab->end(); ++it) {
        if (!it.value().is_number_integer())
            return error(StatusCode::corrupt, "tokenizer.json: model.vocab['" + it.key() + "'] is not an id");
        HEARTH_TRY(put(it.value().get<int64_t>(), it.key(), "token"));
        ++v.base_size;
    }
    if (const json* added = member(tj, "added_tokens"); added && added->is_array()) {
        for (const json& a : *added) {
            const json* id = member(a, "id");
            const json* content = member(a, "content");
            if (!id || !id->is_number_integer() || !content || !content->is_string())
                return error(StatusCode::corrupt, "tokenizer.json: an added_tokens entry lacks its id or content");
            const json* special = member(a, "special");
            AddedToken t{id->get<int64_t>(), content->get<std::string>(), special && special->is_boolean() && special->get<bool>()};
            HEARTH_TRY(put(t.id, t.content, "added token"));
            v.added_by_id[t.id] = v.added.size();
            v.added.push_back(std::move(t));
        }
    }
    return v;
}

// Merges as GGUF stores them ("a b"). tokenizer.json has them as "a b" strings or, since
// transformers 4.45, as ["a", "b"] pairs whose parts may hold spaces: those are written as
// U+0120, as convert_hf_to_gguf.py does.
Result<std::vector<std::string>> read_merges(const json& tj) {
    std::vector<std::string> out;
    const json* model = member(tj, "model");
    const json* merges = model ? member(*model, "merges") : nullptr;
    if (!merges) return out;
    if (!merges->is_array()) return error(StatusCode::corrupt, "tokenizer.json: model.merges is not a list");
    out.reserve(merges->size());
    for (const json& m : *merges) {
        if (m.is_string()) {
            out.push_back(m.get<std::string>());
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
            std::string a = m[0].get<std::string>(), b = m[1].get<std::string>();
            out.push_back(replace_all(a, " ", "\xC4\xA0") + " " + replace_all(b, " ", "\xC4\xA0"));
        } else {
            return error(StatusCode::corrupt, "tokenizer.json: model.merges holds an entry that is neither \"a b\" nor [a, b]");
        }
    }
    return out;
}

// gguf-py's SpecialVocab: special ids, add_*_token flags and the chat template.
struct Specials {
    std::map<std::string, int64_t> ids;     // "bos" -> id
    std::map<std::string, bool> add;        // "bos" -> add_bos_token
};

constexpr const char* kSpecialKeys[][2] = {
    {"bos", "tokenizer.ggml.bos_token_id"},       {"eos", "tokenizer.ggml.eos_token_id"},
    {"unk", "tokenizer.ggml.unknown_token_id"},   {"sep", "tokenizer.ggml.seperator_token_id"},
    {"pad", "tokenizer.ggml.padding_token_id"},   {"mask", "tokenizer.ggml.mask_token_id"},
    {"eot", "tokenizer.ggml.eot_token_id"},       {"eom", "tokenizer.ggml.eom_token_id"},
};  // cls is read (a bos fallback) but, as in gguf-py, has no GGUF key

Specials read_specials(const json& tj, json cfg, const json& config, const std::vector<AddedToken>& added, int64_t n_vocab) {
    Specials s;
    std::vector<std::string> types = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
    const bool have_cfg = cfg.is_object() && !cfg.empty();
    std::string bos = token_content(cfg, "bos_token"), cls = token_content(cfg, "cls_token");
    std::string eos = token_content(cfg, "eos_token"), sep = token_content(cfg, "sep_token");
    if (bos.empty() && !cls.empty() && have_cfg) cfg["bos_token"] = bos = cls;
    if (eos.empty() && !sep.empty() && have_cfg) cfg["eos_token"] = eos = sep;

    // A post_processor TemplateProcessing "[BOS] $A [EOS]" says which specials are added.
    if (const json* pp = member(tj, "post_processor"); pp && pp->is_object()) {
        std::vector<const json*> procs;
        if (const json* list = member(*pp, "processors"); list && list->is_array())
            for (const json& p : *list) procs.push_back(&p);
        else
            procs.push_back(pp);
        for (const json* p : procs) {
            if (string_member(*p, "type") != "TemplateProcessing") continue;
            const json* single = member(*p, "single");
            if (!single || !single->is_array() || single->size() < 2) continue;
            auto special_id = [](const json& item) {
                const json* st = member(item, "SpecialToken");
                return st ? string_member(*st, "id") : std::string();
            };
            if (const std::string first = special_id(single->front()); !first.empty()) {
                if (!have_cfg) {
                    bos = first;
                } else if (first != bos && first != cls) {
                    if (bos.empty()) cfg["bos_token"] = bos = first;
                    if (cls.empty()) cfg["cls_token"] = cls = first;
                }
                s.add["bos"] = first == bos || first == cls;
            }
            if (const std::string last = special_id(single->back()); !last.empty()) {
                if (!have_cfg) {
                    eos = last;
                } else if (last != eos) {
                    // The old EOS becomes EOT (then EOM), as gguf-py does.
                    if (std::find(types.begin(), types.end(), "eot") == types.end()) {
                        types.push_back("eot");
                        cfg["eot_token"] = eos;
                    } else if (std::find(types.begin(), types.end(), "eom") == types.end()) {
                        types.push_back("eom");
                        cfg["eom_token"] = eos;
                    }
                    cfg["eos_token"] = eos = last;
                }
                s.add["eos"] = last == eos;
            }
        }
    }
    auto set_id = [&](const std::string& type, int64_t id) {
        if (id < 0 || id >= n_vocab || s.ids.count(type)) return;  // gguf-py skips out-of-range ids
        s.ids[type] = id;
    };
    // Without tokenizer_config.json, gguf-py looks no token up by text (config.json only).
    if (have_cfg) {
        for (const std::string& type : types) {
            if (const json* a = member(cfg, ("add_" + type + "_token").c_str()); a && a->is_boolean())
                s.add[type] = a->get<bool>();
            const std::string content = token_content(cfg, type + "_token");
            if (content.empty()) continue;
            for (const AddedToken& t : added) {
                if (t.content == content) {
                    set_id(type, t.id);
                    break;
                }
            }
        }
    }
    for (const std::string& type : types) {
        const json* v = member(config, (type + "_token_id").c_str());
        if (!v) {
            if (const json* text = member(config, "text_config")) v = member(*text, (type + "_token_id").c_str());
        }
        if (v && v->is_number_integer()) set_id(type, v->get<int64_t>());  // lists (several EOS ids) are skipped
    }
    return s;
}

Status add_chat_template(const json& cfg, const HfTokenizerFiles& files, gguf::Metadata& out) {
    json tmpl;
    if (const json* t = member(cfg, "chat_template")) {
        tmpl = *t;
    } else if (!files.chat_template_jinja.empty()) {
        tmpl = files.chat_template_jinja;
    } else if (!files.chat_template_json.empty()) {
        HEARTH_ASSIGN(json j, parse_json(files.chat_template_json, "chat_template.json"));
        if (const json* t = member(j, "chat_template")) tmpl = *t;
    }
    if (tmpl.is_null()) return {};
    if (tmpl.is_string()) {
        out.set("tokenizer.chat_template", gguf::Value::make_string(tmpl.get<std::string>()));
        return {};
    }
    if (!tmpl.is_array())
        return error(StatusCode::corrupt, "tokenizer_config.json: chat_template is neither a string nor a list");
    std::set<std::string> names;
    for (const json& choice : tmpl) {
        std::string name = string_member(choice, "name");
        const json* text = member(choice, "template");
        if (name.empty() || !text || !text->is_string()) continue;
        for (char& c : name)
            if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
        if (name == "default") {
            out.set("tokenizer.chat_template", gguf::Value::make_string(text->get<std::string>()));
        } else {
            names.insert(name);
            out.set("tokenizer.chat_template." + name, gguf::Value::make_string(text->get<std::string>()));
        }
    }
    if (!names.empty())
        out.set("tokenizer.chat_templates", gguf::Value::make_string_array({names.begin(), names.end()}));
    return {};
}

// Whether an SPM-style tokenizer.json puts "▁" before the text (add_space_prefix).
bool adds_space_prefix(const json& tj) {
    if (const json* n = member(tj, "normalizer"); n && n->is_object()) {
        std::vector<const json*> steps;
        if (const json* list = member(*n, "normalizers"); list && list->is_array())
            for (const json& s : *list) steps.push_back(&s);
        else
            steps.push_back(n);
        for (const json* s : steps)
            if (string_member(*s, "type") == "Prepend" && string_member(*s, "prepend") == "\xE2\x96\x81") return true;
    }
    if (const json* p = member(tj, "pre_tokenizer"); p && p->is_object()) {
        std::vector<const json*> steps;
        if (const json* list = member(*p, "pretokenizers"); list && list->is_array())
            for (const json& s : *list) steps.push_back(&s);
        else
            steps.push_back(p);
        for (const json* s : steps) {
            if (string_member(*s, "type") != "Metaspace") continue;
            const std::string scheme = string_member(*s, "prepend_scheme");
            if (!scheme.empty()) return scheme != "never";
            const json* a = member(*s, "add_prefix_space");
            return !(a && a->is_boolean() && !a->get<bool>());
        }
    }
    return false;
}

Status add_metadata(const HfTokenizerFiles& files, int64_t n_vocab, gguf::Metadata& out) {
    if (files.tokenizer_json.empty()) return error(StatusCode::not_found, "tokenizer.json is missing or empty");
    if (n_vocab < 1 || n_vocab > (int64_t)INT32_MAX)
        return error(StatusCode::invalid_argument, strformat("vocabulary of %lld tokens", (long long)n_vocab));
    HEARTH_ASSIGN(const json tj, parse_json(files.tokenizer_json, "tokenizer.json"));
    json cfg = json::object(), config = json::object();
    if (!files.tokenizer_config_json.empty()) {
        HEARTH_ASSIGN(cfg, parse_json(files.tokenizer_config_json, "tokenizer_config.json"));
    }
    if (!files.config_json.empty()) {
        HEARTH_ASSIGN(config, parse_json(files.config_json, "config.json"));
    }

    const json* model = member(tj, "model");
    const std::string model_type = model ? string_member(*model, "type") : "";
    if (model_type != "BPE")
        return error(StatusCode::unsupported,
                     "tokenizer.json: tokenizer model '" + (model_type.empty() ? std::string("?") : model_type) +
                         "' is not supported (only BPE: byte-level or SentencePiece-style with byte fallback)");
    auto flag = [&](const char* key) {
        const json* v = member(*model, key);
        return v && v->is_boolean() && v->get<bool>();
    };
    // gguf-py's LlamaHfVocab test: BPE with byte fallback is SentencePiece-style, except
    // Llama 3's (ignore_merges without byte fallback, which the first test already excludes).
    const bool spm = flag("byte_fallback");

    HEARTH_ASSIGN(RawVocab v, read_vocab(tj, n_vocab));
    HEARTH_ASSIGN(std::vector<std::string> merges, read_merges(tj));
    const Specials specials = read_specials(tj, cfg, config, v.added, n_vocab);

    std::vector<std::string> tokens((size_t)n_vocab);
    std::vector<int32_t> types((size_t)n_vocab, kNormal);
    std::set<int64_t> special_ids;
    for (const AddedToken& t : v.added)
        if (t.special) special_ids.insert(t.id);
    for (const auto& [type, id] : specials.ids) special_ids.insert(id);

    if (!spm) {
        HEARTH_ASSIGN(const std::string pre, pre_name(tj));
        out.set("tokenizer.ggml.model", gguf::Value::make_string("gpt2"));
        out.set("tokenizer.ggml.pre", gguf::Value::make_string(pre));
        for (int64_t i = 0; i < n_vocab; ++i) {
            std::string& text = tokens[(size_t)i];
            if (!v.present[(size_t)i]) {
                text = "[PAD" + std::to_string(i) + "]";
                types[(size_t)i] = kUnused;
                continue;
            }
            text = v.texts[(size_t)i];
            auto a = v.added_by_id.find(i);
            if (a == v.added_by_id.end()) continue;
            if (v.added[a->second].special || looks_special(text)) {
                types[(size_t)i] = kControl;
            } else {
                text = replace_all(text, "\xE2\x96\x81", " ");  // pre-normalized user-defined spaces, as gguf-py
                types[(size_t)i] = kUserDefined;
            }
        }
        out.set("tokenizer.ggml.tokens", gguf::Value::make_string_array(tokens));
        out.set("tokenizer.ggml.token_type", gguf::Value::make_i32_array(types));
        if (merges.empty()) return error(StatusCode::corrupt, "tokenizer.json: a byte-level BPE without merges");
        out.set("tokenizer.ggml.merges", gguf::Value::make_string_array(merges));
    } else {
        const std::string unk = model ? string_member(*model, "unk_token") : "";
        // Scores from merge ranks: the first merge producing a token gives it -rank.
        std::unordered_map<std::string, int64_t> ids;
        for (int64_t i = 0; i < n_vocab; ++i)
            if (v.present[(size_t)i]) ids.emplace(v.texts[(size_t)i], i);
        std::vector<float> scores((size_t)n_vocab, 0.0f);
        std::vector<uint8_t> scored((size_t)n_vocab, 0);
        for (size_t r = 0; r < merges.size(); ++r) {
            const std::string& m = merges[r];
            const size_t sp = m.find(' ');
            if (sp == std::string::npos) continue;
            auto it = ids.find(m.substr(0, sp) + m.substr(sp + 1));
            if (it == ids.end() || scored[(size_t)it->second]) continue;
            scores[(size_t)it->second] = -(float)r;
            scored[(size_t)it->second] = 1;
        }
        const float floor = -(float)merges.size();
        for (int64_t i = 0; i < n_vocab; ++i) {
            std::string& text = tokens[(size_t)i];
            if (!v.present[(size_t)i]) {
                text = "[PAD" + std::to_string(i) + "]";
                types[(size_t)i] = kUnused;
                continue;
            }
            text = v.texts[(size_t)i];
            const bool added = v.added_by_id.count(i) > 0;
            if (is_byte_token(text)) types[(size_t)i] = kByte;
            else if (!unk.empty() && text == unk) types[(size_t)i] = kUnknown;
            else if (special_ids.count(i)) types[(size_t)i] = kControl;
            else if (added) types[(size_t)i] = kUserDefined;
            // Tokens no merge makes (single characters, user-defined pieces) rank after all merges.
            if (!scored[(size_t)i] && (types[(size_t)i] == kNormal || types[(size_t)i] == kUserDefined))
                scores[(size_t)i] = floor - (float)i;
        }
        out.set("tokenizer.ggml.model", gguf::Value::make_string("llama"));
        out.set("tokenizer.ggml.pre", gguf::Value::make_string("default"));
        out.set("tokenizer.ggml.tokens", gguf::Value::make_string_array(tokens));
        out.set("tokenizer.ggml.scores", gguf::Value::make_f32_array(scores));
        out.set("tokenizer.ggml.token_type", gguf::Value::make_i32_array(types));
        bool prefix = adds_space_prefix(tj);
        if (const json* a = member(cfg, "add_prefix_space"); a && a->is_boolean()) prefix = a->get<bool>();
        out.set("tokenizer.ggml.add_space_prefix", gguf::Value::make_bool(prefix));
    }

    for (const auto& [type, key] : kSpecialKeys) {
        auto it = specials.ids.find(type);
        if (it != specials.ids.end()) out.set(key, gguf::Value::make_u32((uint32_t)it->second));
    }
    for (const char* type : {"bos", "eos", "sep"}) {
        auto it = specials.add.find(type);
        if (it != specials.add.end()) out.set(std::string("tokenizer.ggml.add_") + type + "_token", gguf::Value::make_bool(it->second));
    }
    return add_chat_template(cfg, files, out);
}

Result<std::string> read_optional(const fs::path& p) {
    std::error_code ec;
    if (!fs::exists(p, ec)) return std::string();
    std::ifstream f(p, std::ios::binary);
    if (!f) return error(StatusCode::io_error, p.string() + ": cannot open");
    std::stringstream ss;
    ss << f.rdbuf();
    if (f.bad()) return error(StatusCode::io_error, p.string() + ": read error");
    return ss.str();
}

}  // namespace

Result<HfTokenizerFiles> read_hf_tokenizer_files(const std::string& dir) {
    const fs::path root(dir);
    HfTokenizerFiles f;
    HEARTH_ASSIGN(f.tokenizer_json, read_optional(root / "tokenizer.json"));
    if (f.tokenizer_json.empty()) {
        std::error_code ec;
        if (fs::exists(root / "tokenizer.model", ec))
            return error(StatusCode::unsupported, dir + ": only tokenizer.model (SentencePiece) is present; "
                                                         "converting needs tokenizer.json");
        return error(StatusCode::not_found, dir + ": tokenizer.json is missing");
    }
    HEARTH_ASSIGN(f.tokenizer_config_json, read_optional(root / "tokenizer_config.json"));
    HEARTH_ASSIGN(f.config_json, read_optional(root / "config.json"));
    HEARTH_ASSIGN(f.chat_template_jinja, read_optional(root / "chat_template.jinja"));
    HEARTH_ASSIGN(f.chat_template_json, read_optional(root / "chat_template.json"));
    return f;
}

Status add_hf_tokenizer_metadata(const HfTokenizerFiles& files, int64_t n_vocab, gguf::Metadata& out) {
    try {
        return add_metadata(files, n_vocab, out);
    } catch (const std::exception& e) {  // nlohmann on a shape we did not check: still a value
        return error(StatusCode::corrupt, std::string("tokenizer files: ") + e.what());
    }
}

Result<std::string> hf_bpe_pre_name(const std::string& tokenizer_json) {
    try {
        HEARTH_ASSIGN(const json tj, parse_json(tokenizer_json, "tokenizer.json"));
        return pre_name(tj);
    } catch (const std::exception& e) {
        return error(StatusCode::corrupt, std::string("tokenizer.json: ") + e.what());
    }
}

}  // namespace hearth::store

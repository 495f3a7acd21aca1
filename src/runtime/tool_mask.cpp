#include "runtime/tool_mask.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "chat/json_schema.h"
#include "runtime/grammar_mask.h"

namespace hearth::runtime {

namespace {

// How a family writes its calls, for the mask.
struct CallSyntax {
    std::string open;         // opening marker; "" when the call starts the answer (llama3: `{`)
    std::string close;        // closing marker; "" when the call runs to the end of generation
    std::string args_key;     // "arguments" or "parameters"
    bool list = false;        // the body is a JSON array of calls
    bool answer_only = false; // a call is the whole answer (no text before it)
    // Mistral v3+: N[ARGS]{...}, the next call after another [TOOL_CALLS]; these markers are
    // text inside the body grammar (and special tokens where the vocabulary has them).
    bool mistral_args = false;
    std::vector<std::string> inner_markers;
};

Result<CallSyntax> syntax_for(const chat::ChatFormat& f) {
    switch (f.tool_calls) {
        case chat::ToolCallFormat::hermes: return CallSyntax{"<tool_call>", "</tool_call>", "arguments", false, false, false, {}};
        case chat::ToolCallFormat::llama3_json: return CallSyntax{"", "", "parameters", false, true, false, {}};
        case chat::ToolCallFormat::mistral_nemo: return CallSyntax{"[TOOL_CALLS]", "", "arguments", true, false, false, {}};
        case chat::ToolCallFormat::mistral:
            return CallSyntax{"[TOOL_CALLS]", "", "", false, false, true, {"[TOOL_CALLS]", "[ARGS]"}};
        default:
            return error(StatusCode::unsupported,
                         strformat("constrained tool calls are not supported for the %s tool-call format (model family "
                                   "'%s')",
                                   chat::tool_call_format_name(f.tool_calls), f.family.c_str()));
    }
}

// A GBNF string literal for `text`.
std::string gbnf_literal(const std::string& text) {
    std::string out = "\"";
    for (char c : text) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

// A GBNF string literal for the JSON text of `name` (a JSON string, quotes included).
std::string gbnf_json_string(const std::string& name) { return gbnf_literal(nlohmann::ordered_json(name).dump()); }

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

}  // namespace

Result<std::string> tool_call_gbnf(const chat::ChatFormat& format, const nlohmann::ordered_json& tools) {
    HEARTH_ASSIGN(CallSyntax syn, syntax_for(format));
    if (!tools.is_array() || tools.empty()) return error(StatusCode::invalid_argument, "tool calls need a non-empty tools array");
    chat::JsonSchemaCompiler c;
    std::string calls;
    for (size_t i = 0; i < tools.size(); ++i) {
        const nlohmann::ordered_json& t = tools[i];
        const nlohmann::ordered_json& fn = t.is_object() && t.contains("function") ? t["function"] : t;
        if (!fn.is_object() || !fn.contains("name") || !fn["name"].is_string() || fn["name"].get<std::string>().empty())
            return error(StatusCode::invalid_argument, strformat("tools[%zu] has no name", i));
        const std::string name = fn["name"].get<std::string>();
        chat::Json params = fn.contains("parameters") && !fn["parameters"].is_null()
                                ? chat::Json(fn["parameters"])
                                : chat::Json{{"type", "object"}, {"properties", chat::Json::object()}};
        auto args = c.add(params, "tool" + std::to_string(i));
        if (!args.ok()) return args.status().with_context("the parameters of tool '" + name + "'");
        if (!calls.empty()) calls += " | ";
        if (syn.mistral_args) {
            calls += gbnf_literal(name) + " \"[ARGS]\" " + args.value();
            continue;
        }
        // The spacing of json.dumps and of the families' own examples: one optional space.
        calls += "\"{\" \" \"? \"\\\"name\\\"\" \" \"? \":\" \" \"? " + gbnf_json_string(name) + " \" \"? \",\" \" \"? \"\\\"" +
                 syn.args_key + "\\\"\" \" \"? \":\" \" \"? " + args.value() + " \" \"? \"}\"";
    }
    std::string root;
    if (syn.mistral_args) root = "(" + calls + ") (\"[TOOL_CALLS]\" (" + calls + ")){0,3}";
    else if (syn.list) root = "[ \\n]{0,2} \"[\" (" + calls + ") (\",\" \" \"? (" + calls + ")){0,3} \"]\"";
    else if (syn.answer_only) root = "(" + calls + ")";
    else root = "[ \\n]{0,2} (" + calls + ") [ \\n]{0,2}";
    return c.gbnf(root);
}

namespace {

class ToolCallMask : public LogitsMask {
public:
    enum class Phase {
        start,  // answer_only families: nothing but whitespace so far
        free,   // free text, watching for the opening marker
        open,   // required and no call yet: only the opening marker
        body,   // inside a call: the grammar
        close,  // part of the closing marker written
        text,   // answer_only family answered with text: free for good
        after,  // required, after a call: whitespace, another call or the end of generation
    };

    ToolCallMask(const tok::Tokenizer& tok, CallSyntax syn, std::shared_ptr<const TokenTable> table,
                 std::shared_ptr<const chat::Grammar> grammar, bool required)
        : tok_(tok), syn_(std::move(syn)), table_(std::move(table)), grammar_(std::move(grammar)), required_(required) {
        // Tokens that can spell part of a marker (its special token included), and, for llama3,
        // the <|python_tag|> tokens its calls would bypass the constraint with.
        for (int32_t id = 0; id < tok_.n_vocab(); ++id) {
            const std::string_view p = tok_.token_to_piece(id, true);
            if (p.empty() || tok_.is_eog(id)) continue;
            for (const std::string* m : {&syn_.open, &syn_.close})
                if (!m->empty() && m->find(p) != std::string::npos) {
                    marker_pieces_.push_back({id, std::string(p)});
                    break;
                }
            if (syn_.answer_only && p.find("<|python_tag|>") != std::string_view::npos) barred_.push_back(id);
            if (required_ && std::all_of(p.begin(), p.end(), [](char c) { return is_space(c); })) space_.push_back(id);
            // Special tokens spelling a marker the body grammar holds as text.
            if (std::find(syn_.inner_markers.begin(), syn_.inner_markers.end(), p) != syn_.inner_markers.end() &&
                table_->piece(id).empty())
                inner_marker_tokens_.push_back({id, std::string(p)});
        }
        if (syn_.answer_only) phase_ = required_ ? Phase::body : Phase::start;
        else phase_ = required_ ? Phase::open : Phase::free;
        if (phase_ == Phase::body) inner_ = std::make_shared<GrammarMask>(table_, grammar_);
    }

    void apply(std::span<float> logits) override {
        switch (phase_) {
            case Phase::start:
            case Phase::free:
            case Phase::text:
                for (int32_t id : barred_) set(logits, id, -INFINITY);
                if (required_ && n_calls_ == 0)
                    for (int32_t id : tok_.eog_ids()) set(logits, id, -INFINITY);
                return;
            case Phase::open:
                only_marker(logits, syn_.open.substr(progress_));
                return;
            case Phase::close:
                only_marker(logits, syn_.close.substr(progress_));
                return;
            case Phase::after: {
                // A call was required and made: what may follow is another call or the end
                // (a couple of line breaks between calls), never prose.
                saved_.clear();
                for (const auto& [id, p] : marker_pieces_)
                    if (static_cast<size_t>(id) < logits.size() && syn_.open.starts_with(p)) saved_.push_back({id, logits[id]});
                if (n_space_ < 2)
                    for (int32_t id : space_)
                        if (static_cast<size_t>(id) < logits.size()) saved_.push_back({id, logits[id]});
                for (int32_t id : tok_.eog_ids())
                    if (id >= 0 && static_cast<size_t>(id) < logits.size()) saved_.push_back({id, logits[id]});
                std::fill(logits.begin(), logits.end(), -INFINITY);
                for (const auto& [id, v] : saved_) logits[id] = v;
                return;
            }
            case Phase::body: {
                if (syn_.close.empty()) {
                    saved_.clear();
                    for (const auto& [id, p] : inner_marker_tokens_)
                        if (static_cast<size_t>(id) < logits.size() && inner_->can_accept_text(p))
                            saved_.push_back({id, logits[id]});
                    inner_->apply(logits);
                    for (const auto& [id, v] : saved_) logits[id] = v;
                    return;
                }
                // The grammar, and where the call can end, the closing marker; never the end of
                // generation inside a call.
                saved_.clear();
                if (inner_->can_end())
                    for (const auto& [id, p] : marker_pieces_)
                        if (static_cast<size_t>(id) < logits.size() && syn_.close.starts_with(p))
                            saved_.push_back({id, logits[id]});
                inner_->apply(logits);
                for (int32_t id : tok_.eog_ids()) set(logits, id, -INFINITY);
                for (const auto& [id, v] : saved_) logits[id] = v;
                return;
            }
        }
    }

    void accept(int32_t token) override {
        const std::string_view piece = tok_.token_to_piece(token, true);
        switch (phase_) {
            case Phase::text:
                return;
            case Phase::start: {
                size_t at = 0;
                while (at < piece.size() && is_space(piece[at])) ++at;
                if (at == piece.size()) return;
                if (piece[at] != '{') {
                    phase_ = Phase::text;
                    return;
                }
                begin_call(piece.substr(at));
                return;
            }
            case Phase::free: {
                std::string text = tail_;
                text += piece;
                const size_t at = syn_.open.empty() ? std::string::npos : text.find(syn_.open);
                if (at == std::string::npos) {
                    const size_t keep = syn_.open.empty() ? 0 : syn_.open.size() - 1;
                    tail_ = text.size() > keep ? text.substr(text.size() - keep) : text;
                    return;
                }
                tail_.clear();
                begin_call(std::string_view(text).substr(at + syn_.open.size()));
                return;
            }
            case Phase::open:
                progress_ += piece.size();
                if (progress_ >= syn_.open.size()) begin_call({});
                return;
            case Phase::after:
                if (std::all_of(piece.begin(), piece.end(), [](char c) { return is_space(c); })) {
                    ++n_space_;
                    return;
                }
                phase_ = Phase::open;
                progress_ = piece.size();
                if (progress_ >= syn_.open.size()) begin_call({});
                return;
            case Phase::body:
                if (!syn_.close.empty() && inner_->can_end() && !piece.empty() && syn_.close.starts_with(piece)) {
                    phase_ = Phase::close;
                    progress_ = piece.size();
                    if (progress_ == syn_.close.size()) end_call();
                    return;
                }
                for (const auto& [id, p] : inner_marker_tokens_) {
                    if (id == token) {
                        inner_->accept_text(p);
                        return;
                    }
                }
                inner_->accept(token);
                return;
            case Phase::close:
                progress_ += piece.size();
                if (progress_ >= syn_.close.size()) end_call();
                return;
        }
    }

    // A call that runs to the end of generation is finished: stop there. Elsewhere free text may
    // follow, and the end of generation ends it.
    bool complete() const override { return phase_ == Phase::body && syn_.close.empty() && inner_->complete(); }

private:
    static void set(std::span<float> logits, int32_t id, float v) {
        if (id >= 0 && static_cast<size_t>(id) < logits.size()) logits[id] = v;
    }

    void only_marker(std::span<float> logits, const std::string& rest) {
        saved_.clear();
        for (const auto& [id, p] : marker_pieces_)
            if (static_cast<size_t>(id) < logits.size() && rest.starts_with(p)) saved_.push_back({id, logits[id]});
        std::fill(logits.begin(), logits.end(), -INFINITY);
        for (const auto& [id, v] : saved_) logits[id] = v;
    }

    // The opening marker is done; `rest` is what the same token carried after it.
    void begin_call(std::string_view rest) {
        phase_ = Phase::body;
        progress_ = 0;
        inner_ = std::make_shared<GrammarMask>(table_, grammar_);
        if (!rest.empty()) inner_->accept_text(rest);  // a rejection fails the mask: nothing allowed
    }

    void end_call() {
        ++n_calls_;
        progress_ = 0;
        n_space_ = 0;
        phase_ = required_ ? Phase::after : Phase::free;
    }

    const tok::Tokenizer& tok_;  // outlives the request
    CallSyntax syn_;
    std::shared_ptr<const TokenTable> table_;
    std::shared_ptr<const chat::Grammar> grammar_;
    bool required_;
    std::vector<int32_t> space_;  // required: whitespace-only tokens (allowed between calls)
    int n_space_ = 0;             // whitespace tokens since the last call
    Phase phase_ = Phase::free;
    std::shared_ptr<GrammarMask> inner_;  // the current call's grammar (body phase)
    size_t progress_ = 0;                 // bytes of the marker written (open/close phases)
    std::string tail_;                    // free phase: the last open.size() - 1 bytes, for a split marker
    int n_calls_ = 0;
    std::vector<std::pair<int32_t, std::string>> marker_pieces_;  // (id, rendered piece) within a marker
    std::vector<int32_t> barred_;
    std::vector<std::pair<int32_t, std::string>> inner_marker_tokens_;  // (id, marker text)
    std::vector<std::pair<int32_t, float>> saved_;  // scratch
};

}  // namespace

Result<std::shared_ptr<LogitsMask>> make_tool_call_mask(const tok::Tokenizer& tok, const chat::ChatFormat& format,
                                                        const nlohmann::ordered_json& tools, bool required) {
    HEARTH_ASSIGN(CallSyntax syn, syntax_for(format));
    HEARTH_ASSIGN(std::string gbnf, tool_call_gbnf(format, tools));
    auto grammar = chat::Grammar::parse(gbnf);
    if (!grammar.ok()) return grammar.status().with_context("the grammar compiled from the tools");  // our bug
    return std::shared_ptr<LogitsMask>(
        std::make_shared<ToolCallMask>(tok, std::move(syn), TokenTable::get(tok), std::move(grammar).value(), required));
}

}  // namespace hearth::runtime

// Constrained tool calls: free text, and once the model starts a call, the call itself held to
// `{"name": <a tool's name>, "arguments": <that tool's parameters schema>}` in the family's
// markup. The mask is lazy, like llama.cpp's lazy grammars: nothing is constrained until the
// opening marker has been generated (or, with `required`, the answer must start with a call).
//
// Families (chat::ToolCallFormat) whose markers arrive as text (a special token streamed with
// GenerateRequest::preserve_tokens counts: a marker that is one token of the vocabulary is
// allowed as that token, and also spelled out in ordinary pieces):
//   hermes        free text, then <tool_call>{"name": N, "arguments": {...}}</tool_call>, any number
//                 of calls with text between them
//   llama3_json   the whole answer is text or one call {"name": N, "parameters": {...}}: a call is
//                 an answer whose first non-space character is `{`; <|python_tag|> is barred (its
//                 calls could not be constrained)
//   mistral_nemo  free text, then [TOOL_CALLS][{"name": N, "arguments": {...}}, ...] (at most 4
//                 calls) and the end of generation
//   mistral       free text, then [TOOL_CALLS]N[ARGS]{...}, repeated for up to 4 calls, and the end
//                 of generation (Devstral, Magistral, Small 3.x; the optional [CALL_ID] is not
//                 generated); [TOOL_CALLS] and [ARGS] inside the calls may be special tokens too
// Any other family is an `unsupported` error naming it: a constraint is never silently dropped.
//
// Inside a call the grammar mask applies (special tokens barred, end-of-generation only where the
// call is finished and the family has no closing marker). Whitespace around a call body is
// bounded (at most two spaces or line breaks) so a model cannot loop on it.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "base/status.h"
#include "chat/chat.h"
#include "runtime/logits_mask.h"
#include "tokenizer/tokenizer.h"

namespace hearth::runtime {

// `tools`: the request's tools, OpenAI style ([{"type": "function", "function": {"name",
// "parameters"}}]; a bare {"name", "parameters"} entry is accepted too). `required` (tool_choice
// "required"): the answer must start with a call, and after a call only another call (at most
// two whitespace tokens between them) or the end of generation may come: no prose. Errors: invalid_argument for no tools or a tool without a name; unsupported for a
// family not listed above or a parameter schema the JSON Schema compiler cannot honour (naming
// the tool). `tok` must outlive the mask.
Result<std::shared_ptr<LogitsMask>> make_tool_call_mask(const tok::Tokenizer& tok, const chat::ChatFormat& format,
                                                        const nlohmann::ordered_json& tools, bool required);

// The GBNF of one call body as the mask constrains it (after the opening marker, before the
// closing one). Exposed for tests.
Result<std::string> tool_call_gbnf(const chat::ChatFormat& format, const nlohmann::ordered_json& tools);

}  // namespace hearth::runtime

// Splits template source into tokens exactly as jinja2's lexer does with the Hugging Face
// settings: trim_blocks (the first newline after a block or comment tag is dropped),
// lstrip_blocks (spaces and tabs before a block or comment tag on its own line are dropped),
// `-` / `+` whitespace control on either side of a tag, one trailing newline of the source
// dropped (keep_trailing_newline=False), \r\n and \r read as \n.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace hearth::chat::jinja {

enum class Tok : uint8_t {
    data,         // text outside tags (already whitespace-trimmed)
    var_begin,    // {{
    var_end,      // }}
    block_begin,  // {%
    block_end,    // %}
    name,
    string,       // text: the decoded literal
    integer,
    floating,
    op,           // text: the operator, e.g. "//" or "("
    eof,
};

struct Token {
    Tok type = Tok::eof;
    std::string text;
    int64_t int_value = 0;
    double float_value = 0;
    int line = 1;
    int column = 1;
};

// Fails with "line L, column C: ..." on unterminated tags, comments or strings and unexpected
// characters.
Result<std::vector<Token>> tokenize(const std::string& source);

}  // namespace hearth::chat::jinja

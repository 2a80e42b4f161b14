// Recursive-descent parser following jinja2/parser.py, with its operator precedence (filters and
// tests bind tighter than arithmetic; unary minus binds tighter than **, so `-2 ** 2` is 4 as in
// Jinja2), statements for, if/elif/else, set (incl. block set and namespace attributes), macro,
// call, filter, with, print, break/continue (loopcontrols) and generation (transformers).
#pragma once

#include <vector>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/lexer.h"

namespace moe::jinja {

// Nesting of expressions and blocks allowed in a template (deeper is a syntax error).
inline constexpr int kMaxParseDepth = 256;

// Parses tokens into a program; throws moe::Error naming line and column on syntax errors,
// including unknown filters and tests.
Body parse(std::vector<Token> tokens);

}  // namespace moe::jinja

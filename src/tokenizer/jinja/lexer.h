// Jinja2 lexer with the environment Hugging Face's apply_chat_template uses: trim_blocks=True,
// lstrip_blocks=True, keep_trailing_newline=False, default delimiters. Follows jinja2/lexer.py
// (Jinja2 3.1): whitespace control with '-' and '+', the "line starting" rule of lstrip_blocks,
// brace balancing inside tags, Python string escapes and number literals.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moe::jinja {

enum class TokenKind : uint8_t {
  kText,        // template data between tags, after whitespace control
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,  // text holds the decoded value
  kInt,
  kFloat,
  kOp,  // text holds the operator: + - * / // % ** ~ == != < <= > >= = . , : | ( ) [ ] { } ;
  kEof,
};

struct Token {
  TokenKind kind = TokenKind::kEof;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
  int col = 1;
};

// Tokenizes a template; comments are dropped and {% raw %} blocks become text. Throws
// moe::Error naming line and column on lexical errors.
std::vector<Token> tokenize(std::string_view source);

// Throws the syntax error every stage reports: "chat template syntax error at line L, column C: ...".
[[noreturn]] void syntax_error(int line, int col, const std::string& message);

}  // namespace moe::jinja

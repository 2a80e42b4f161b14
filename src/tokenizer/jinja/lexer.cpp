#include "tokenizer/jinja/lexer.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "tokenizer/jinja/text.h"

namespace moe::jinja {

void syntax_error(int line, int col, const std::string& message) {
  fail("chat template syntax error at line ", line, ", column ", col, ": ", message);
}

namespace {

bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
bool is_dec(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  explicit Lexer(std::string_view source) {
    // Newlines are normalised to \n and one trailing newline is dropped (keep_trailing_newline=False).
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_.push_back('\n');
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_.push_back(source[i]);
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    const size_t n = src_.size();
    size_t pos = 0;
    bool line_starting = true;  // did the previous match end with a newline (lstrip_blocks rule)
    while (pos < n) {
      size_t p = pos;
      while (true) {
        p = src_.find('{', p);
        if (p == std::string::npos || p + 1 >= n) {
          p = std::string::npos;
          break;
        }
        const char c = src_[p + 1];
        if (c == '{' || c == '%' || c == '#') break;
        ++p;
      }
      if (p == std::string::npos) {
        emit_text(pos, src_.substr(pos));
        break;
      }
      const char kind = src_[p + 1];
      size_t after = p + 2;
      char sign = 0;
      if (after < n && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
      size_t raw_end = kind == '%' ? match_raw_begin(after) : std::string::npos;
      std::string text = src_.substr(pos, p - pos);
      apply_left_control(&text, sign, kind != '{', line_starting);
      emit_text(pos, std::move(text));
      if (raw_end != std::string::npos) {
        pos = lex_raw_body(p, raw_end, &line_starting);
      } else if (kind == '#') {
        pos = skip_comment(p, after, &line_starting);
      } else {
        pos = lex_tag(p, after, kind == '%', &line_starting);
      }
    }
    Token eof;
    eof.kind = TokenKind::kEof;
    locate(src_.size(), &eof);
    out_.push_back(std::move(eof));
    return std::move(out_);
  }

 private:
  void locate(size_t pos, Token* t) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    const size_t line = static_cast<size_t>(it - line_starts_.begin());
    t->line = static_cast<int>(line);
    t->col = static_cast<int>(pos - line_starts_[line - 1]) + 1;
  }

  [[noreturn]] void error_at(size_t pos, const std::string& message) const {
    Token t;
    locate(pos, &t);
    syntax_error(t.line, t.col, message);
  }

  void emit_text(size_t pos, std::string text) {
    if (text.empty()) return;
    Token t;
    t.kind = TokenKind::kText;
    t.text = std::move(text);
    locate(pos, &t);
    out_.push_back(std::move(t));
  }

  // Whitespace control on the data before a tag: '-' strips all trailing whitespace; otherwise
  // lstrip_blocks removes spaces between the line start and a block or comment tag.
  static void apply_left_control(std::string* text, char sign, bool block_or_comment, bool line_starting) {
    if (sign == '-') {
      *text = std::string(text::strip(*text, nullptr, false, true));
      return;
    }
    if (sign == '+' || !block_or_comment) return;
    const size_t nl = text->rfind('\n');
    const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
    if (l_pos == 0 && !line_starting) return;
    const std::string_view tail = std::string_view(*text).substr(l_pos);
    if (!tail.empty() && text::strip(tail, nullptr, true, false).empty()) text->resize(l_pos);
  }

  size_t skip_ws(size_t pos) const {
    while (pos < src_.size()) {
      size_t i = pos;
      if (!text::is_space(text::next_code_point(src_, &i))) break;
      pos = i;
    }
    return pos;
  }

  // Matches "\s*raw\s*(-%}\s*|%})" at pos; returns the end of the match or npos.
  size_t match_raw_begin(size_t pos) const {
    size_t i = skip_ws(pos);
    if (src_.compare(i, 3, "raw") != 0) return std::string::npos;
    i = skip_ws(i + 3);
    if (src_.compare(i, 3, "-%}") == 0) return skip_ws(i + 3);
    if (src_.compare(i, 2, "%}") == 0) return i + 2;
    return std::string::npos;
  }

  // Matches the end of a block tag at pos: "+%}" | "-%}\s*" | "%}\n?" (trim_blocks).
  size_t match_block_end(size_t pos) const {
    if (src_.compare(pos, 3, "+%}") == 0) return pos + 3;
    if (src_.compare(pos, 3, "-%}") == 0) return skip_ws(pos + 3);
    if (src_.compare(pos, 2, "%}") == 0) return pos + 2 + (pos + 2 < src_.size() && src_[pos + 2] == '\n');
    return std::string::npos;
  }

  size_t lex_raw_body(size_t tag_pos, size_t body, bool* line_starting) {
    *line_starting = src_[body - 1] == '\n';
    for (size_t p = src_.find("{%", body); p != std::string::npos; p = src_.find("{%", p + 1)) {
      size_t i = p + 2;
      char sign = 0;
      if (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) sign = src_[i++];
      i = skip_ws(i);
      if (src_.compare(i, 6, "endraw") != 0) continue;
      const size_t end = match_block_end(skip_ws(i + 6));
      if (end == std::string::npos) continue;
      std::string text = src_.substr(body, p - body);
      apply_left_control(&text, sign, true, *line_starting);
      emit_text(body, std::move(text));
      *line_starting = src_[end - 1] == '\n';
      return end;
    }
    error_at(tag_pos, "Missing end of raw directive");
  }

  size_t skip_comment(size_t tag_pos, size_t body, bool* line_starting) {
    for (size_t q = src_.find("#}", body); q != std::string::npos; q = src_.find("#}", q + 1)) {
      size_t end = q + 2;
      if (q > body && src_[q - 1] == '-') {
        end = skip_ws(end);
      } else if (!(q > body && src_[q - 1] == '+')) {
        if (end < src_.size() && src_[end] == '\n') ++end;
      }
      *line_starting = src_[end - 1] == '\n';
      return end;
    }
    error_at(tag_pos, "Missing end of comment tag");
  }

  size_t lex_tag(size_t tag_pos, size_t pos, bool block, bool* line_starting) {
    Token begin;
    begin.kind = block ? TokenKind::kBlockBegin : TokenKind::kVarBegin;
    locate(tag_pos, &begin);
    out_.push_back(std::move(begin));
    std::vector<char> balance;  // closing brackets expected, innermost last
    const size_t n = src_.size();
    while (true) {
      pos = skip_ws(pos);
      if (pos >= n)
        error_at(pos, block ? "unexpected end of template, expected 'end of statement block'"
                            : "unexpected end of template, expected 'end of print statement'");
      if (balance.empty()) {
        size_t end = std::string::npos;
        if (block) {
          end = match_block_end(pos);
        } else if (src_.compare(pos, 3, "-}}") == 0) {
          end = skip_ws(pos + 3);
        } else if (src_.compare(pos, 2, "}}") == 0) {
          end = pos + 2;
        }
        if (end != std::string::npos) {
          Token t;
          t.kind = block ? TokenKind::kBlockEnd : TokenKind::kVarEnd;
          locate(pos, &t);
          out_.push_back(std::move(t));
          *line_starting = src_[end - 1] == '\n';
          return end;
        }
      }
      Token t;
      locate(pos, &t);
      const char c = src_[pos];
      if (is_dec(c)) {
        pos = lex_number(pos, &t);
      } else if (is_name_start(c)) {
        const size_t start = pos;
        while (pos < n && is_name_char(src_[pos])) ++pos;
        t.kind = TokenKind::kName;
        t.text = src_.substr(start, pos - start);
      } else if (c == '\'' || c == '"') {
        pos = lex_string(pos, &t);
      } else {
        pos = lex_operator(pos, &t, &balance);
      }
      out_.push_back(std::move(t));
    }
  }

  // Digits with single '_' separators ((\d+_)*\d+); returns the end, or start when none.
  size_t scan_digits(size_t pos, bool (*digit)(char)) const {
    size_t end = pos;
    size_t i = pos;
    while (i < src_.size() && digit(src_[i])) {
      ++i;
      end = i;
      if (i + 1 < src_.size() && src_[i] == '_' && digit(src_[i + 1])) ++i;
    }
    return end;
  }

  size_t lex_number(size_t pos, Token* t) {
    const size_t start = pos;
    auto strip_underscores = [&](size_t a, size_t b) {
      std::string s;
      for (size_t i = a; i < b; ++i)
        if (src_[i] != '_') s.push_back(src_[i]);
      return s;
    };
    const char next = pos + 1 < src_.size() ? static_cast<char>(src_[pos + 1] | 0x20) : 0;
    if (src_[pos] == '0' && (next == 'x' || next == 'o' || next == 'b')) {
      const int base = next == 'x' ? 16 : next == 'o' ? 8 : 2;
      size_t i = pos + 2;
      size_t end = i;
      auto ok = [&](char c) {
        const int d = is_dec(c)                                  ? c - '0'
                      : ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') ? (c | 0x20) - 'a' + 10
                                                                 : 99;
        return d < base;
      };
      while (i < src_.size() && (ok(src_[i]) || (src_[i] == '_' && i + 1 < src_.size() && ok(src_[i + 1])))) {
        ++i;
        end = i;
      }
      if (end > pos + 2) {
        const std::string digits = strip_underscores(pos + 2, end);
        t->kind = TokenKind::kInt;
        auto r = std::from_chars(digits.data(), digits.data() + digits.size(), t->int_value, base);
        if (r.ec != std::errc()) error_at(start, "integer literal too large");
        return end;
      }
    }
    size_t i = scan_digits(pos, [](char c) { return is_dec(c); });
    bool is_float = false;
    const bool after_dot = start > 0 && src_[start - 1] == '.';
    if (!after_dot) {
      size_t j = i;
      if (j + 1 < src_.size() && src_[j] == '.' && is_dec(src_[j + 1])) {
        j = scan_digits(j + 1, [](char c) { return is_dec(c); });
        is_float = true;
      }
      if (j < src_.size() && (src_[j] | 0x20) == 'e') {
        size_t k = j + 1;
        if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
        if (k < src_.size() && is_dec(src_[k])) {
          j = scan_digits(k, [](char c) { return is_dec(c); });
          is_float = true;
        }
      }
      if (is_float) i = j;
    }
    const std::string digits = strip_underscores(start, i);
    if (is_float) {
      t->kind = TokenKind::kFloat;
      t->float_value = std::strtod(digits.c_str(), nullptr);
    } else {
      t->kind = TokenKind::kInt;
      auto r = std::from_chars(digits.data(), digits.data() + digits.size(), t->int_value);
      if (r.ec != std::errc()) error_at(start, "integer literal too large");
    }
    return i;
  }

  static int hex_value(char c) {
    if (is_dec(c)) return c - '0';
    c = static_cast<char>(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  }

  // A quoted literal decoded as Python's unicode-escape does (unknown escapes keep the backslash).
  size_t lex_string(size_t pos, Token* t) {
    const char quote = src_[pos];
    size_t i = pos + 1;
    std::string out;
    while (true) {
      if (i >= src_.size()) error_at(pos, "unexpected end of string literal");
      const char c = src_[i];
      if (c == quote) break;
      if (c != '\\') {
        out.push_back(c);
        ++i;
        continue;
      }
      if (i + 1 >= src_.size()) error_at(pos, "unexpected end of string literal");
      const char e = src_[i + 1];
      i += 2;
      switch (e) {
        case '\n':
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '\'':
          out.push_back('\'');
          break;
        case '"':
          out.push_back('"');
          break;
        case 'a':
          out.push_back('\a');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'v':
          out.push_back('\v');
          break;
        case 'x':
        case 'u':
        case 'U': {
          const int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          char32_t cp = 0;
          for (int k = 0; k < digits; ++k) {
            const int h = i + k < src_.size() ? hex_value(src_[i + k]) : -1;
            if (h < 0) error_at(pos, std::string("truncated \\") + e + " escape");
            cp = cp * 16 + static_cast<char32_t>(h);
          }
          if (cp > 0x10FFFF) error_at(pos, "illegal Unicode character");
          i += static_cast<size_t>(digits);
          text::append_utf8(&out, cp);
          break;
        }
        case 'N':
          error_at(pos, "\\N{...} escapes are not supported");
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && i < src_.size() && src_[i] >= '0' && src_[i] <= '7'; ++k)
              cp = cp * 8 + static_cast<char32_t>(src_[i++] - '0');
            text::append_utf8(&out, cp);
          } else if (static_cast<unsigned char>(e) >= 0x80) {
            // Jinja2 first backslash-escapes non-ASCII text, so "\é" decodes to the text "\xe9".
            size_t k = i - 1;
            const char32_t cp = text::next_code_point(src_, &k);
            i = k;
            char buf[16];
            std::snprintf(buf, sizeof buf,
                          cp < 0x100     ? "\\x%02x"
                          : cp < 0x10000 ? "\\u%04x"
                                         : "\\U%08x",
                          static_cast<unsigned>(cp));
            out.append(buf);
          } else {
            out.push_back('\\');
            out.push_back(e);
          }
      }
    }
    t->kind = TokenKind::kString;
    t->text = std::move(out);
    return i + 1;
  }

  size_t lex_operator(size_t pos, Token* t, std::vector<char>* balance) {
    static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
    static constexpr std::string_view kOne = "+-/*%~[](){}><=.:|,;";
    t->kind = TokenKind::kOp;
    for (std::string_view op : kTwo) {
      if (src_.compare(pos, 2, op) == 0) {
        t->text = std::string(op);
        return pos + 2;
      }
    }
    const char c = src_[pos];
    if (kOne.find(c) == std::string_view::npos) {
      size_t i = pos;
      const char32_t cp = text::next_code_point(src_, &i);
      std::string shown;
      text::append_utf8(&shown, cp);
      error_at(pos, "unexpected char '" + shown + "'");
    }
    if (c == '(' || c == '[' || c == '{') {
      balance->push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    } else if (c == ')' || c == ']' || c == '}') {
      if (balance->empty()) error_at(pos, std::string("unexpected '") + c + "'");
      const char expected = balance->back();
      balance->pop_back();
      if (expected != c) error_at(pos, std::string("unexpected '") + c + "', expected '" + expected + "'");
    }
    t->text = std::string(1, c);
    return pos + 1;
  }

  std::string src_;
  std::vector<size_t> line_starts_;
  std::vector<Token> out_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) { return Lexer(source).run(); }

}  // namespace moe::jinja

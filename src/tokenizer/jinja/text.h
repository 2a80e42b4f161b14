// Python-compatible text helpers for the Jinja interpreter: UTF-8 code points, Python's notion of
// whitespace and case, and Python's formatting of floats and string reprs. Chat templates are
// written against Python semantics (str.strip(), repr(), json.dumps()), so these follow CPython.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace moe::jinja::text {

// Decodes the code point at s[*i] and advances *i. A byte that does not start a valid UTF-8
// sequence decodes to 0xDC00 + byte (Python's "surrogateescape"), which append_utf8 turns back
// into the same byte, so invalid input round-trips unchanged.
char32_t next_code_point(std::string_view s, size_t* i);
void append_utf8(std::string* out, char32_t cp);

// The code points of s, each as its own UTF-8 string (Python's iteration over a str).
std::vector<std::string> split_code_points(std::string_view s);
size_t code_point_count(std::string_view s);

// Python's str.isspace() (the set str.strip() and str.split() use).
bool is_space(char32_t cp);
bool is_alpha(char32_t cp);
bool is_digit(char32_t cp);
bool is_cased_upper(char32_t cp);
bool is_cased_lower(char32_t cp);

// Case mapping: ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic basic letters ("ß" upper
// becomes "SS" as in Python). Other scripts are left unchanged.
std::string upper(std::string_view s);
std::string lower(std::string_view s);
void append_upper(std::string* out, char32_t cp);
void append_lower(std::string* out, char32_t cp);

// str.strip()/lstrip()/rstrip(): with chars == nullptr strip Python whitespace, else any code
// point contained in *chars.
std::string_view strip(std::string_view s, const std::string_view* chars, bool left, bool right);

// str.splitlines(keepends): splits at \n, \r, \r\n, \v, \f, \x1c-\x1e, \x85, U+2028, U+2029.
std::vector<std::string> split_lines(std::string_view s, bool keepends);

// Python's repr(float): shortest round-trip digits, exponent form when the decimal exponent is
// below -4 or above 16, always a '.0' or exponent on integral values; "nan", "inf", "-inf".
std::string format_float(double v);

// Python's repr(str): single quotes unless the text contains ' and no ", escapes for
// backslash, the quote, \n \r \t and non-printable code points.
std::string repr_string(std::string_view s);

// A JSON string literal as Python's json.dumps writes it (ensure_ascii escapes every non-ASCII
// code point as \uXXXX, with surrogate pairs above the BMP).
void append_json_string(std::string* out, std::string_view s, bool ensure_ascii);

// HTML escaping as markupsafe.escape does it (& < > " ').
std::string html_escape(std::string_view s);

}  // namespace moe::jinja::text

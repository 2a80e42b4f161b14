// Unicode helpers for the tokenizers: UTF-8 validation and repair, GPT-2's byte <-> character
// mapping (byte-level BPE), White_Space, and Unicode normalization (NFC & co., through ICU).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moe {

constexpr uint32_t kReplacementChar = 0xFFFD;

// True when s is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool is_valid_utf8(std::string_view s);

// s with every ill-formed sequence replaced by U+FFFD, one per maximal subpart (the WHATWG /
// Unicode "best practice" rule, which Rust's String::from_utf8_lossy and every JSON client's
// UTF-8 decoder follow). Returns s itself (no copy into *storage) when it is already valid.
std::string_view sanitize_utf8(std::string_view s, std::string* storage);

// Decodes the code point at s[*pos] of valid UTF-8 and advances *pos past it.
uint32_t next_code_point(std::string_view s, size_t* pos);
// Bytes of the UTF-8 sequence that lead byte c starts (1 for continuation or invalid bytes).
size_t utf8_sequence_length(unsigned char c);
void append_utf8(uint32_t cp, std::string* out);

// PCRE2 class-body text ("\x{31350}-\x{323AF}...") of the code points that Unicode 16.0 puts in
// general category group L, M, N, P, S or Z but PCRE2's older tables leave unassigned; "" for
// other groups. Appended to \p{L} & co. so that matching follows Hugging Face's Unicode 16.
std::string_view unicode16_additions(char group);
// True when valid UTF-8 s holds a code point of unicode16_additions (any group).
bool has_unicode16_additions(std::string_view s);

// Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s accept).
bool is_white_space(uint32_t cp);

// GPT-2's bytes_to_unicode(): each byte stands for one printable character. Printable bytes
// (0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF) stand for themselves; the others for U+0100 upwards.
uint32_t byte_to_code_point(uint8_t b);
// The byte a character stands for, or -1 when it stands for none.
int code_point_to_byte(uint32_t cp);
// UTF-8 of the character byte b stands for (1 or 2 bytes).
std::string_view byte_to_utf8(uint8_t b);
// Maps every byte of bytes to its character ("Hello world" -> "HelloĠworld").
void byte_level_encode(std::string_view bytes, std::string* out);
// The inverse: false (and *out unspecified) when text holds a character that stands for no byte.
bool byte_level_decode(std::string_view text, std::string* out);

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };
// Unicode normalization of valid UTF-8 as Hugging Face tokenizers does it: with Unicode 9.0 data
// (characters assigned later are left as they are and block reordering and composition across
// them). ICU underneath; quick paths leave text that cannot change untouched.
std::string normalize_unicode(std::string_view s, NormalForm form);
// Full lowercase mapping of each code point on its own (Rust's char::to_lowercase, as Hugging
// Face's Lowercase normalizer applies it: no context rules such as final sigma).
std::string lowercase_unicode(std::string_view s);

}  // namespace moe

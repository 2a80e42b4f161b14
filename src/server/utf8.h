// Token bytes to UTF-8 text, for streaming: a byte-level BPE token can end in the middle of a character, and
// what reaches the client (JSON strings, SSE) must be valid UTF-8.
//
// Decoding follows the WHATWG Encoding Standard's UTF-8 decoder, which is also what Python's
// bytes.decode("utf-8", "replace") produces: each maximal subpart of an ill-formed sequence (an overlong
// form, a surrogate, a code point above U+10FFFF, a byte F5-FF or C0/C1, a stray continuation byte, a
// sequence cut short) becomes one U+FFFD. The output of push() depends only on the bytes, not on how they
// were split across calls: concatenated push() results plus finish() equal one push() of everything plus
// finish().
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace moe::server {

class Utf8Stream {
 public:
  // Returns the characters completed by `bytes`; an incomplete trailing sequence is held for the next call.
  std::string push(std::string_view bytes);
  // Ends the stream: a held incomplete sequence becomes U+FFFD. The stream can then be reused.
  std::string finish();
  // U+FFFD inserted so far for ill-formed input (a replacement character that was in the input is not
  // counted).
  uint64_t replacements() const { return replacements_; }

 private:
  void replace(std::string& out);

  // The WHATWG decoder's state: the code point so far, continuation bytes needed and seen, and the range the
  // next continuation byte must fall in (narrower than 80-BF right after E0, ED, F0, F4).
  uint32_t code_point_ = 0;
  int needed_ = 0;
  int seen_ = 0;
  unsigned char lower_ = 0x80;
  unsigned char upper_ = 0xBF;
  uint64_t replacements_ = 0;
};

// Whether s is well-formed UTF-8 (no overlongs, surrogates, code points above U+10FFFF, or truncation).
bool is_valid_utf8(std::string_view s);

}  // namespace moe::server

// OpenAI-style "stop" strings over streamed text: generation ends where the first stop string appears, and
// neither it nor anything after it is emitted.
//
// "First" means the stop string that is completed earliest in the stream, which is when a generator checking
// after every token would stop; if several are completed by the same byte, the longest one (the one starting
// earliest) is removed. E.g. stops {"ab", "abc"} on "xabc" emit "x"; stops {"b", "abc"} on "abc" emit "a".
// This makes the result independent of how the text is split into push() calls: concatenated push() results
// plus finish() equal one push() of everything plus finish().
//
// Matching is on bytes. When the pushed text is whole UTF-8 characters and the stop strings are valid UTF-8,
// everything returned is whole characters too (a held-back stop prefix starts at a character boundary).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace moe::server {

class StopMatcher {
 public:
  // Throws moe::Error if a stop string is empty (it would stop before the first byte). No stops:
  // pass-through.
  explicit StopMatcher(std::vector<std::string> stops);

  // Returns the text that is safe to emit: holds back a suffix that could be the start of a stop string.
  // After a stop string was found, returns the text before it once, then "" for every later call.
  std::string push(std::string_view text);
  // Ends the stream: the held-back text was not a stop string after all and is returned (unless stopped).
  std::string finish();
  // Whether a stop string has been found.
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace moe::server

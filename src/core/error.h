// One error type for everything the user can get wrong: a malformed file, a bad flag, a bad request.
// The message names the problem (file, key, tensor, offset) so that the CLI can print it as one line.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace moe {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <class... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <class... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str_cat(std::forward<Args>(args)...));
}

}  // namespace moe

// Throws moe::Error with the concatenated message when cond is false.
#define MOE_CHECK(cond, ...)                   \
  do {                                         \
    if (!(cond)) ::moe::fail(__VA_ARGS__);     \
  } while (0)

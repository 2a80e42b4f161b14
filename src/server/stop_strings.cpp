#include "server/stop_strings.h"

#include <algorithm>

#include "core/error.h"

namespace moe::server {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (size_t i = 0; i < stops_.size(); ++i) MOE_CHECK(!stops_[i].empty(), "stop string ", i, " is empty");
}

std::string StopMatcher::push(std::string_view text) {
  if (stopped_) return "";
  if (stops_.empty()) return std::string(text);
  std::string buf = std::move(held_);
  held_.clear();
  buf += text;

  // No occurrence ended before this call's text (the call that received it would have stopped), and none
  // that ends later can start before held_ (see below), so the earliest-ending occurrence in buf is the first
  // one in the stream.
  size_t best_end = std::string::npos, best_start = 0;
  for (const auto& stop : stops_) {
    const size_t at = buf.find(stop);
    if (at == std::string::npos) continue;
    const size_t end = at + stop.size();
    if (end < best_end || (end == best_end && at < best_start)) {
      best_end = end;
      best_start = at;
    }
  }
  if (best_end != std::string::npos) {
    stopped_ = true;
    buf.resize(best_start);
    return buf;
  }

  // Hold the longest suffix of buf that is a proper prefix of some stop string: any later occurrence that
  // starts in buf starts there.
  size_t hold = 0;
  for (const auto& stop : stops_) {
    for (size_t k = std::min(buf.size(), stop.size() - 1); k > hold; --k) {
      if (std::string_view(buf).substr(buf.size() - k) == std::string_view(stop).substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  held_ = buf.substr(buf.size() - hold);
  buf.resize(buf.size() - hold);
  return buf;
}

std::string StopMatcher::finish() {
  if (stopped_) return "";
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace moe::server

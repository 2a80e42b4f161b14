#include "server/reasoning.h"

#include <algorithm>

#include "core/error.h"

namespace moe::server {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t skip_space(std::string_view s, size_t from) {
  while (from < s.size() && is_space(s[from])) ++from;
  return from;
}

// Length of the longest suffix of s that is a proper prefix of tag.
size_t partial_tag_at_end(std::string_view s, std::string_view tag) {
  for (size_t k = std::min(s.size(), tag.size() - 1); k > 0; --k)
    if (s.substr(s.size() - k) == tag.substr(0, k)) return k;
  return 0;
}

}  // namespace

ReasoningSplitter::ReasoningSplitter(bool started_in_prompt, std::string open_tag, std::string close_tag)
    : started_in_prompt_(started_in_prompt),
      open_tag_(std::move(open_tag)),
      close_tag_(std::move(close_tag)),
      state_(State::kStart) {
  MOE_CHECK(!open_tag_.empty(), "reasoning open tag is empty");
  MOE_CHECK(!close_tag_.empty(), "reasoning close tag is empty");
}

bool ReasoningSplitter::in_reasoning() const {
  switch (state_) {
    case State::kStart:
      return started_in_prompt_;
    case State::kReasoningLeadSpace:
    case State::kReasoning:
      return true;
    default:
      return false;
  }
}

ReasoningDelta ReasoningSplitter::push(std::string_view text) {
  ReasoningDelta out;
  std::string buf = std::move(held_);
  held_.clear();
  buf += text;
  const std::string_view b = buf;
  size_t p = 0;
  while (p < b.size()) {
    switch (state_) {
      case State::kStart: {
        const size_t q = skip_space(b, p);
        const std::string_view rest = b.substr(q);
        if (rest.substr(0, open_tag_.size()) == open_tag_) {
          p = q + open_tag_.size();
          state_ = State::kReasoningLeadSpace;
        } else if (rest.size() < open_tag_.size() &&
                   std::string_view(open_tag_).substr(0, rest.size()) == rest) {
          held_ = b.substr(p);
          return out;
        } else if (started_in_prompt_) {
          p = q;
          state_ = State::kReasoning;
        } else {
          state_ = State::kContent;
        }
        break;
      }
      case State::kReasoningLeadSpace:
        p = skip_space(b, p);
        if (p < b.size()) state_ = State::kReasoning;
        break;
      case State::kReasoning: {
        const size_t close = b.find(close_tag_, p);
        if (close != std::string_view::npos) {
          out.reasoning += b.substr(p, close - p);
          p = close + close_tag_.size();
          state_ = State::kContentLeadSpace;
        } else {
          const size_t hold = partial_tag_at_end(b.substr(p), close_tag_);
          out.reasoning += b.substr(p, b.size() - p - hold);
          held_ = b.substr(b.size() - hold);
          return out;
        }
        break;
      }
      case State::kContentLeadSpace:
        p = skip_space(b, p);
        if (p < b.size()) state_ = State::kContent;
        break;
      case State::kContent:
        out.content += b.substr(p);
        return out;
    }
  }
  return out;
}

ReasoningDelta ReasoningSplitter::finish() {
  ReasoningDelta out;
  if (state_ == State::kStart) {
    // Whitespace and an incomplete open tag: inside the prompt's reasoning block the whitespace is the
    // block's leading whitespace, otherwise it is all content.
    if (started_in_prompt_)
      out.reasoning = held_.substr(skip_space(held_, 0));
    else
      out.content = held_;
  } else if (state_ == State::kReasoning) {
    out.reasoning = held_;
  }
  held_.clear();
  return out;
}

bool prompt_opens_reasoning(std::string_view prompt, std::string_view open_tag) {
  if (open_tag.empty()) return false;
  size_t end = prompt.size();
  while (end > 0 && is_space(prompt[end - 1])) --end;
  return prompt.substr(0, end).ends_with(open_tag);
}

}  // namespace moe::server

// Splits a streamed completion into reasoning and answer, DeepSeek-R1 style ("<think>...</think>answer").
//
// Three shapes occur: the chat template ended the prompt with "<think>\n", so the output starts inside the
// reasoning and only "</think>" appears (started_in_prompt = true); the model opens "<think>" itself at the
// start of its output; or a non-reasoning model emits neither tag, and everything is content.
//
// Rules:
//  - Only an open tag at the very start of the output (after leading whitespace) opens reasoning; elsewhere
//    it is text. With started_in_prompt, such an open tag is taken as the model repeating it and dropped.
//  - The first close tag inside reasoning ends it; later tags of either kind are content.
//  - Whitespace (space, tab, CR, LF) directly after the open tag and directly after the close tag is dropped,
//    so neither part starts with the template's newlines (as DeepSeek's API and vLLM's deepseek_r1 parser
//    return them). Whitespace before the open tag is dropped too when the tag follows.
//  - If the output ends inside reasoning, all of it was reasoning and content is empty.
//  - Tags are matched on bytes; a partial tag at the end of a push ("</thi") is held until it resolves, and
//    at finish() a partial tag that never completed is text of the part it was in.
// The result does not depend on how the output is split into push() calls: the concatenated deltas equal a
// single push() of everything plus finish().
#pragma once

#include <string>
#include <string_view>

namespace moe::server {

struct ReasoningDelta {
  std::string reasoning;
  std::string content;
};

class ReasoningSplitter {
 public:
  // Throws moe::Error if a tag is empty.
  explicit ReasoningSplitter(bool started_in_prompt, std::string open_tag = "<think>",
                             std::string close_tag = "</think>");

  ReasoningDelta push(std::string_view text);
  // Ends the output and returns what was held back; later calls return nothing more.
  ReasoningDelta finish();
  // Whether the output seen so far leaves the model inside its reasoning (the tag has not closed).
  bool in_reasoning() const;

 private:
  enum class State {
    kStart,               // before the first non-whitespace byte: an open tag may still come
    kReasoningLeadSpace,  // just after the open tag
    kReasoning,
    kContentLeadSpace,  // just after the close tag
    kContent,
  };

  bool started_in_prompt_;
  std::string open_tag_;
  std::string close_tag_;
  State state_;
  // kStart: leading whitespace and a prefix of the open tag; kReasoning: a prefix of the close tag.
  std::string held_;
};

// Whether the rendered prompt leaves the model inside a reasoning block: it ends with open_tag followed only
// by whitespace (so no close tag after it either). Pass the result as started_in_prompt.
bool prompt_opens_reasoning(std::string_view prompt, std::string_view open_tag = "<think>");

}  // namespace moe::server

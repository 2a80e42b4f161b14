// Conversations with a loaded model: its chat template, R1's "<think>\n" reply opener, and the
// sampling defaults its publisher recommends.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "model/model.h"
#include "runtime/sampler.h"
#include "tokenizer/chat_template.h"

namespace moe {

class ChatFormatter {
 public:
  // Reads tokenizer.chat_template from the model file; throws moe::Error naming the file when
  // there is none and template_source is empty. *m must outlive the formatter.
  explicit ChatFormatter(const LoadedModel& m, const std::string& template_source = "");

  // The prompt for the assistant's next reply to messages ([{role, content}, ...]). For the
  // DeepSeek-R1 family it ends in "<think>\n" (DeepSeek's usage recommendation: start every
  // reply with it), added when the template does not already.
  std::string prompt_for_reply(const nlohmann::ordered_json& messages) const;

  // True for templates of the R1 family (DeepSeek's turn markers and </think> handling).
  bool is_r1() const { return r1_; }

  // Sampling the model's publisher recommends (R1 and distills: temperature 0.6, top-p 0.95),
  // or nothing when unknown.
  std::optional<SamplingParams> recommended_sampling() const;

 private:
  std::unique_ptr<ChatTemplate> tmpl_;
  std::string bos_, eos_;
  bool r1_ = false;
};

// Ids of a rendered chat prompt: the template's own text is parsed for special tokens, the
// messages' contents are not, so a user who types "<｜Assistant｜>" gets that text, not the
// marker. BOS is added when the tokenizer asks for it and the template did not render it.
std::vector<int32_t> tokenize_chat_prompt(const Tokenizer& tok, const std::string& prompt,
                                          const nlohmann::ordered_json& messages);

}  // namespace moe

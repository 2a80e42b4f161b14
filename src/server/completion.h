// From sampled tokens to what a client sees, for one choice of one request: incremental
// detokenization (whole UTF-8 characters, invalid bytes as U+FFFD), stop strings, the reasoning /
// answer split of R1-style output, and output moderation — in that order, all streaming.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "server/batcher.h"
#include "server/filters.h"
#include "server/reasoning.h"
#include "server/stop_strings.h"
#include "server/utf8.h"
#include "tokenizer/tokenizer.h"

namespace moe::server {

struct ChoiceDelta {
  std::string reasoning;
  std::string content;
  nlohmann::ordered_json logprobs = nlohmann::ordered_json::array();  // per token, chat format
  bool empty() const { return reasoning.empty() && content.empty() && logprobs.empty(); }
};

class ChoiceStream {
 public:
  // *tok and *mod must outlive the stream. split_reasoning: separate <think> output (the prompt
  // already opened it when reasoning_in_prompt).
  ChoiceStream(std::shared_ptr<Sequence> seq, const Tokenizer& tok, std::vector<std::string> stops,
               bool split_reasoning, bool reasoning_in_prompt, const Moderator* mod);

  // Waits up to timeout for tokens; returns the text that became ready (maybe none).
  ChoiceDelta poll(std::chrono::milliseconds timeout);
  bool done() const { return done_; }
  // "stop", "length", "content_filter"; valid once done(). Throws moe::Error when generation failed.
  const std::string& finish_reason() const { return finish_; }
  int64_t completion_tokens() const { return n_tokens_; }
  int64_t reasoning_tokens() const { return n_reasoning_; }
  const std::vector<ModerationEvent>& moderation_events() const { return events_; }
  void cancel() { seq_->cancel(); }
  const Sequence& sequence() const { return *seq_; }

 private:
  void feed(const std::string& text, ChoiceDelta* d);
  // Splits reasoning from answer and moderates; last: no more text will come.
  void route(const std::string& kept, bool last, ChoiceDelta* d);
  void end(ChoiceDelta* d);

  std::shared_ptr<Sequence> seq_;
  const Tokenizer& tok_;
  StreamDecoder dec_;
  Utf8Stream utf8_;
  StopMatcher stop_;
  std::optional<ReasoningSplitter> split_;
  std::optional<ModerationStream> mod_content_, mod_reasoning_;
  std::vector<ModerationEvent> events_;
  int64_t n_tokens_ = 0, n_reasoning_ = 0;
  bool done_ = false;
  bool halted_ = false;  // a stop string or a moderation stop ended it early
  std::string finish_;
};

}  // namespace moe::server

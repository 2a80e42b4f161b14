#include "server/completion.h"

#include "core/error.h"

namespace moe::server {

using json = nlohmann::ordered_json;

namespace {

json token_logprob(const Tokenizer& tok, int32_t id, float lp) {
  const std::string piece = tok.token_to_piece(id, true);
  json bytes = json::array();
  for (unsigned char c : piece) bytes.push_back(static_cast<int>(c));
  return json{{"token", piece}, {"logprob", lp}, {"bytes", bytes}};
}

}  // namespace

ChoiceStream::ChoiceStream(std::shared_ptr<Sequence> seq, const Tokenizer& tok,
                           std::vector<std::string> stops, bool split_reasoning, bool reasoning_in_prompt,
                           const Moderator* mod)
    : seq_(std::move(seq)), tok_(tok), dec_(tok), stop_(std::move(stops)) {
  if (split_reasoning) split_.emplace(reasoning_in_prompt);
  if (mod && mod->enabled()) {
    mod_content_.emplace(*mod);
    mod_reasoning_.emplace(*mod);
  }
}

void ChoiceStream::route(const std::string& kept, bool last, ChoiceDelta* d) {
  ReasoningDelta r = split_ ? split_->push(kept) : ReasoningDelta{"", kept};
  if (last && split_) {
    ReasoningDelta rest = split_->finish();
    r.reasoning += rest.reasoning;
    r.content += rest.content;
  }
  if (mod_content_) {
    r.content = mod_content_->push(r.content);
    r.reasoning = mod_reasoning_->push(r.reasoning);
    if (mod_content_->stopped() || mod_reasoning_->stopped()) {
      halted_ = true;
      if (finish_.empty()) finish_ = "content_filter";
      seq_->cancel();
    }
  }
  d->reasoning += r.reasoning;
  d->content += r.content;
}

void ChoiceStream::feed(const std::string& text, ChoiceDelta* d) {
  if (halted_ || text.empty()) return;
  const std::string kept = stop_.push(text);
  if (stop_.stopped()) {
    halted_ = true;
    finish_ = "stop";
    seq_->cancel();
  }
  route(kept, halted_, d);
}

void ChoiceStream::end(ChoiceDelta* d) {
  done_ = true;
  if (!halted_) {
    feed(utf8_.push(dec_.flush()) + utf8_.finish(), d);
    if (!halted_) route(stop_.finish(), /*last=*/true, d);
  }
  if (mod_content_) {
    if (!mod_content_->stopped() && !mod_reasoning_->stopped()) {
      d->content += mod_content_->finish();
      d->reasoning += mod_reasoning_->finish();
    }
    for (const auto* m : {&*mod_content_, &*mod_reasoning_})
      events_.insert(events_.end(), m->events().begin(), m->events().end());
    // A stop rule may match only in the text held back until the end.
    if ((mod_content_->stopped() || mod_reasoning_->stopped()) && finish_.empty()) finish_ = "content_filter";
  }
  if (finish_.empty()) {
    switch (seq_->finish()) {
      case Finish::kEog:
        finish_ = "stop";
        break;
      case Finish::kError:
        fail("generation failed: ", seq_->error());
      default:
        finish_ = "length";
        break;
    }
  }
}

ChoiceDelta ChoiceStream::poll(std::chrono::milliseconds timeout) {
  ChoiceDelta d;
  if (done_) return d;
  std::vector<TokenOut> got;
  const bool running = seq_->wait(&got, timeout);
  for (const TokenOut& t : got) {
    if (halted_) break;
    ++n_tokens_;
    if (split_ && split_->in_reasoning()) ++n_reasoning_;
    if (seq_->params().n_logprobs >= 0) {
      json e = token_logprob(tok_, t.id, t.logprob);
      json top = json::array();
      for (const auto& [id, lp] : t.top) top.push_back(token_logprob(tok_, id, lp));
      e["top_logprobs"] = top;
      d.logprobs.push_back(e);
    }
    feed(utf8_.push(dec_.push(t.id)), &d);
  }
  // A halted sequence may still be finishing its step; the tokens after the halt are dropped.
  if (halted_ || !running) end(&d);
  return d;
}

}  // namespace moe::server

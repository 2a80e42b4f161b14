// POST /generate, /v1/completions and /v1/chat/completions: one code path from the request to
// the batcher and back, streaming (SSE) or not.
#include <algorithm>
#include <memory>

#include "core/error.h"
#include "runtime/generator.h"
#include "server/completion.h"
#include "server/server_impl.h"

namespace moe::server {

namespace {

// What one request is doing; shared by the handler and, when streaming, the content provider.
struct Job {
  Route route = Route::kChat;
  std::string id, model;
  int64_t created = 0;
  int64_t n_prompt = 0;
  int64_t max_tokens = 0;
  bool include_usage = false;
  int logprobs = -1;
  std::vector<std::unique_ptr<ChoiceStream>> choices;
  std::vector<std::string> content, reasoning;  // accumulated (non-streaming)
  std::vector<json> logprobs_acc;
  double t0 = 0, t_first = 0, t_last = 0;
  bool sent_role = false;
  std::string principal;

  void cancel() {
    for (auto& c : choices) c->cancel();
  }
  bool done() const {
    return std::all_of(choices.begin(), choices.end(), [](const auto& c) { return c->done(); });
  }
  int64_t completion_tokens() const {
    int64_t n = 0;
    for (auto& c : choices) n += c->completion_tokens();
    return n;
  }
  json usage() const {
    int64_t reasoning = 0;
    for (auto& c : choices) reasoning += c->reasoning_tokens();
    json u = {{"prompt_tokens", n_prompt * static_cast<int64_t>(choices.size() > 0 ? 1 : 0)},
              {"completion_tokens", completion_tokens()},
              {"total_tokens", n_prompt + completion_tokens()}};
    if (route == Route::kChat) u["completion_tokens_details"] = {{"reasoning_tokens", reasoning}};
    return u;
  }
};

// Legacy completions logprobs from the chat-style per-token entries.
json completion_logprobs(const json& entries) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  int64_t off = 0;
  for (const json& e : entries) {
    tokens.push_back(e["token"]);
    lps.push_back(e["logprob"]);
    json t = json::object();
    for (const json& x : e["top_logprobs"]) t[x["token"].get<std::string>()] = x["logprob"];
    tops.push_back(t);
    offs.push_back(off);
    off += static_cast<int64_t>(e["token"].get<std::string>().size());
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

// One SSE chunk for choice i carrying delta d (or the finish when finish is non-empty).
json chunk(const Job& job, size_t i, const ChoiceDelta& d, const std::string& finish) {
  const json fr = finish.empty() ? json(nullptr) : json(finish);
  if (job.route == Route::kGenerate) {
    json c = {{"text", d.content}};
    if (!finish.empty()) c["finish_reason"] = finish;
    return c;
  }
  json c = {{"id", job.id}, {"created", job.created}, {"model", job.model}};
  if (job.route == Route::kChat) {
    c["object"] = "chat.completion.chunk";
    json delta = json::object();
    if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
    if (!d.content.empty()) delta["content"] = d.content;
    json lp = job.logprobs >= 0 && !d.logprobs.empty() ? json{{"content", d.logprobs}} : json(nullptr);
    c["choices"] = json::array({{{"index", i}, {"delta", delta}, {"logprobs", lp}, {"finish_reason", fr}}});
  } else {
    c["object"] = "text_completion";
    json lp = job.logprobs >= 0 && !d.logprobs.empty() ? completion_logprobs(d.logprobs) : json(nullptr);
    c["choices"] =
        json::array({{{"index", i}, {"text", d.content}, {"logprobs", lp}, {"finish_reason", fr}}});
  }
  if (job.include_usage) c["usage"] = nullptr;
  return c;
}

json final_response(const Job& job) {
  if (job.route == Route::kGenerate) {
    return {{"text", job.content[0]},
            {"finish_reason", job.choices[0]->finish_reason()},
            {"model", job.model},
            {"usage", job.usage()}};
  }
  json choices = json::array();
  for (size_t i = 0; i < job.choices.size(); ++i) {
    const ChoiceStream& c = *job.choices[i];
    if (job.route == Route::kChat) {
      json msg = {{"role", "assistant"}, {"content", job.content[i]}};
      if (!job.reasoning[i].empty()) msg["reasoning_content"] = job.reasoning[i];
      json lp = job.logprobs >= 0 ? json{{"content", job.logprobs_acc[i]}} : json(nullptr);
      choices.push_back(
          {{"index", i}, {"message", msg}, {"logprobs", lp}, {"finish_reason", c.finish_reason()}});
    } else {
      json lp = job.logprobs >= 0 ? completion_logprobs(job.logprobs_acc[i]) : json(nullptr);
      choices.push_back(
          {{"index", i}, {"text", job.content[i]}, {"logprobs", lp}, {"finish_reason", c.finish_reason()}});
    }
  }
  return {
      {"id", job.id},           {"object", job.route == Route::kChat ? "chat.completion" : "text_completion"},
      {"created", job.created}, {"model", job.model},
      {"choices", choices},     {"usage", job.usage()}};
}

}  // namespace

void Server::Impl::handle_completion(Route route, const httplib::Request& req, const std::string& body,
                                     httplib::Response& res) {
  auto job = std::make_shared<Job>();
  job->t0 = now_s();
  job->route = route;
  const CompletionRequest r = parse_request(route, body, cfg.api);
  ServedModel& m = find_model(r.model);
  const Tokenizer& tok = *m.loaded.tokenizer;
  job->model = m.spec.id;
  job->id = random_id(route == Route::kChat ? "chatcmpl-" : "cmpl-");
  job->created = unix_now();
  job->include_usage = r.include_usage;
  job->logprobs = r.logprobs;

  // Redaction happens before anything reaches the model: the template, the tokenizer, the log.
  std::vector<int64_t> counts;
  auto redact = [&](const std::string& text) {
    if (!redactor) return text;
    std::vector<int64_t> c;
    std::string out = redactor->redact(text, &c);
    for (size_t i = 0; i < c.size(); ++i)
      if (c[i] > 0)
        metrics.counter_add("moe_redactions_total", "Input spans replaced by redaction rules.",
                            {{"rule", redactor->rules()[i].name}}, static_cast<double>(c[i]));
    return out;
  };
  std::string prompt_text;
  std::vector<int32_t> ids;
  if (route == Route::kChat) {
    json msgs = r.messages;
    for (json& msg : msgs) msg["content"] = redact(msg["content"].get<std::string>());
    prompt_text = m.chat->prompt_for_reply(msgs);
    ids = tokenize_chat_prompt(tok, prompt_text, msgs);
  } else {
    prompt_text = redact(r.prompt);
    ids = tokenize_prompt(tok, prompt_text, /*parse_special=*/false);
  }
  const int64_t n_ctx = m.batcher->options().n_ctx;
  job->n_prompt = static_cast<int64_t>(ids.size());
  if (job->n_prompt >= n_ctx)
    throw ApiError(400,
                   "the prompt has " + std::to_string(job->n_prompt) +
                       " tokens; this model's context holds " + std::to_string(n_ctx),
                   route == Route::kChat ? "messages" : "prompt");
  job->max_tokens =
      std::min(r.max_tokens > 0 ? r.max_tokens : cfg.api.default_max_tokens, n_ctx - job->n_prompt);

  SamplingParams sp = r.sampling;
  if (auto rec = m.chat->recommended_sampling(); rec && route == Route::kChat) {
    if (!r.temperature_set) sp.temperature = rec->temperature;
    if (!r.top_p_set) sp.top_p = rec->top_p;
  }
  const uint64_t seed = r.seed ? *r.seed : std::random_device{}();

  const int64_t reserve = job->max_tokens * r.n;
  if (cfg.rate.requests_per_min > 0 || cfg.rate.tokens_per_min > 0) {
    job->principal = auth.check(req.get_header_value("Authorization"), req.get_header_value("x-api-key"),
                                "generate", unix_now())
                         .principal;
    int retry = 1;
    if (!limiter.admit(job->principal, reserve, now_s(), &retry)) {
      res.set_header("Retry-After", std::to_string(retry));
      metrics.counter_add("moe_rate_limited_total", "Requests refused by the per-key rate limits.",
                          {{"model", job->model}});
      throw ApiError(429, "rate limit reached; retry after " + std::to_string(retry) + " s");
    }
  }

  const bool split = route == Route::kChat && !r.raw_reasoning;
  const bool in_prompt = split && prompt_opens_reasoning(prompt_text);
  for (int i = 0; i < r.n; ++i) {
    GenParams p;
    p.prompt = ids;
    p.max_tokens = job->max_tokens;
    p.sampling = sp;
    p.sampling.seed = seed + static_cast<uint64_t>(i);
    p.n_logprobs = r.logprobs;
    p.ignore_eog = r.ignore_eos;
    std::shared_ptr<Sequence> seq = m.batcher->submit(std::move(p));
    if (!seq) {
      job->cancel();
      res.set_header("Retry-After", "1");
      metrics.counter_add("moe_queue_full_total", "Requests refused because the queue was full.",
                          {{"model", job->model}});
      throw ApiError(429, "the server is busy (queue full); retry shortly");
    }
    job->choices.push_back(std::make_unique<ChoiceStream>(seq, tok, r.stop, split, in_prompt, &moderator));
  }
  job->content.resize(job->choices.size());
  job->reasoning.resize(job->choices.size());
  job->logprobs_acc.assign(job->choices.size(), json::array());
  metrics.counter_add("moe_prompt_tokens_total", "Prompt tokens evaluated.", {{"model", job->model}},
                      static_cast<double>(job->n_prompt * r.n));

  // Called when the job ends, however it ends: metrics, refunds, and cancellation of whatever
  // still runs (a client that went away frees its sequences here).
  auto finish = [this, job] {
    job->cancel();
    const int64_t used = job->completion_tokens();
    metrics.counter_add("moe_completion_tokens_total", "Tokens generated and delivered.",
                        {{"model", job->model}}, static_cast<double>(used));
    if (job->t_first > 0) {
      metrics.histogram_observe("moe_time_to_first_token_seconds", "Time from request to first token.",
                                kLatencyBuckets, {{"model", job->model}}, job->t_first - job->t0);
      if (used > 1)
        metrics.histogram_observe("moe_time_per_output_token_seconds",
                                  "Mean time between output tokens of a request.", kLatencyBuckets,
                                  {{"model", job->model}},
                                  (job->t_last - job->t_first) / static_cast<double>(used - 1));
    }
    for (auto& c : job->choices)
      for (const ModerationEvent& e : c->moderation_events())
        metrics.counter_add("moe_moderation_events_total", "Output moderation matches.",
                            {{"rule", e.rule},
                             {"action", e.action == ModAction::kFlag     ? "flag"
                                        : e.action == ModAction::kRedact ? "redact"
                                                                         : "stop"}});
    if (!job->principal.empty())
      limiter.refund(job->principal, job->max_tokens * static_cast<int64_t>(job->choices.size()) - used,
                     now_s());
  };

  // Advances every choice a little; on_delta gets what each produced.
  auto advance = [job](const std::function<void(size_t, const ChoiceDelta&)>& on_delta) {
    const auto slice = std::chrono::milliseconds(job->choices.size() > 1 ? 10 : 50);
    for (size_t i = 0; i < job->choices.size(); ++i) {
      ChoiceStream& c = *job->choices[i];
      if (c.done()) continue;
      const int64_t before = c.completion_tokens();
      ChoiceDelta d = c.poll(slice);
      if (c.completion_tokens() > before) {
        job->t_last = now_s();
        if (job->t_first == 0) job->t_first = job->t_last;
      }
      on_delta(i, d);
    }
  };

  if (!r.stream) {
    auto accumulate = [job](size_t i, const ChoiceDelta& d) {
      job->content[i] += d.content;
      job->reasoning[i] += d.reasoning;
      for (const json& e : d.logprobs) job->logprobs_acc[i].push_back(e);
    };
    // Most replies are done within a second and get a plain response. A longer one continues as a
    // chunked response that sends a space (JSON allows leading whitespace) every second, so a
    // client that went away is noticed by a failed write and its sequences cancelled.
    const double t_plain = now_s() + 1.0;
    try {
      while (!job->done() && now_s() < t_plain) advance(accumulate);
    } catch (...) {
      finish();
      throw;
    }
    if (job->done()) {
      finish();
      send_json(res, 200, final_response(*job));
      return;
    }
    res.set_chunked_content_provider(
        "application/json",
        [job, advance, accumulate](size_t, httplib::DataSink& sink) {
          const double t_beat = now_s() + 1.0;
          std::string out;
          try {
            while (!job->done() && now_s() < t_beat) advance(accumulate);
            if (job->done()) out = dump(final_response(*job));
          } catch (const std::exception& e) {
            out = ApiError(500, std::string("generation failed: ") + e.what()).body();
          }
          if (out.empty()) return sink.is_writable() && sink.write(" ", 1);
          if (!sink.write(out.data(), out.size())) return false;
          sink.done();
          return true;
        },
        [finish](bool) { finish(); });
    return;
  }

  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [job, advance](size_t, httplib::DataSink& sink) {
        auto send = [&](const json& j) {
          const std::string s = "data: " + dump(j) + "\n\n";
          return sink.write(s.data(), s.size());
        };
        if (!sink.is_writable()) return false;
        if (job->route == Route::kChat && !job->sent_role) {
          job->sent_role = true;
          for (size_t i = 0; i < job->choices.size(); ++i) {
            json c = chunk(*job, i, ChoiceDelta{}, "");
            c["choices"][0]["delta"] = {{"role", "assistant"}, {"content", ""}};
            if (!send(c)) return false;
          }
        }
        bool ok = true;
        try {
          advance([&](size_t i, const ChoiceDelta& d) {
            if (ok && (!d.content.empty() || !d.reasoning.empty() || !d.logprobs.empty()))
              ok = send(chunk(*job, i, d, ""));
            if (ok && job->choices[i]->done())
              ok = send(chunk(*job, i, ChoiceDelta{}, job->choices[i]->finish_reason()));
          });
        } catch (const std::exception& e) {
          send({{"error", {{"message", e.what()}, {"type", "server_error"}}}});
          ok = false;
        }
        if (!ok) return false;  // the client is gone: the releaser cancels what still runs
        if (job->done()) {
          if (job->include_usage) {
            json u = job->route == Route::kGenerate
                         ? json{{"usage", job->usage()}}
                         : json{{"id", job->id},
                                {"object",
                                 job->route == Route::kChat ? "chat.completion.chunk" : "text_completion"},
                                {"created", job->created},
                                {"model", job->model},
                                {"choices", json::array()},
                                {"usage", job->usage()}};
            if (!send(u)) return false;
          }
          const std::string done = "data: [DONE]\n\n";
          sink.write(done.data(), done.size());
          sink.done();
        }
        return true;
      },
      [finish](bool) { finish(); });
}

}  // namespace moe::server

#include "runtime/generator.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace moe {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::vector<int32_t> tokenize_prompt(const Tokenizer& tok, const std::string& text, bool parse_special) {
  std::vector<int32_t> ids;
  if ((tok.add_bos() || text.empty()) && tok.bos_id() >= 0) ids.push_back(tok.bos_id());
  const std::vector<int32_t> body = tok.encode(text, parse_special);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

GenerateStats generate(const LoadedModel& m, const std::vector<int32_t>& prompt,
                       const GenerateOptions& opts, ThreadPool& pool,
                       const std::function<bool(int32_t)>& on_token) {
  const Model& model = *m.model;
  const ModelConfig& cfg = model.config();
  MOE_CHECK(!prompt.empty(), "the prompt is empty and the model has no BOS token");
  const int64_t n_ctx = opts.n_ctx > 0 ? opts.n_ctx : std::min<int64_t>(cfg.n_ctx_train, 4096);
  MOE_CHECK(static_cast<int64_t>(prompt.size()) < n_ctx, "the prompt has ", prompt.size(),
            " tokens, which does not leave room in a context of ", n_ctx);

  KvCache cache = model.new_cache(n_ctx);
  Sampler sampler(opts.sampling, static_cast<int32_t>(cfg.n_vocab));
  for (int32_t id : prompt) sampler.accept(id);
  std::vector<float> logits(static_cast<size_t>(cfg.n_vocab));

  GenerateStats st;
  st.n_prompt = static_cast<int64_t>(prompt.size());
  auto t0 = std::chrono::steady_clock::now();
  model.forward(prompt, 0, cache, /*all_logits=*/false, logits.data(), pool);
  st.prompt_ms = ms_since(t0);

  t0 = std::chrono::steady_clock::now();
  int64_t pos = st.n_prompt;
  for (;;) {
    if (opts.n_predict >= 0 && st.n_generated >= opts.n_predict) break;
    const int32_t id = sampler.sample(logits.data());
    if (opts.stop_at_eog && m.tokenizer->is_eog(id)) {
      st.stop_reason = "eog";
      break;
    }
    sampler.accept(id);
    ++st.n_generated;
    if (!on_token(id)) {
      st.stop_reason = "callback";
      break;
    }
    if (opts.n_predict >= 0 && st.n_generated >= opts.n_predict) break;
    if (pos >= n_ctx) {
      st.stop_reason = "context";
      break;
    }
    const int32_t next[1] = {id};
    model.forward(next, pos, cache, /*all_logits=*/false, logits.data(), pool);
    ++pos;
  }
  st.generate_ms = ms_since(t0);
  return st;
}

}  // namespace moe

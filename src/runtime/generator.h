// Prompt processing and token-by-token generation for one sequence.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/thread_pool.h"
#include "model/model.h"
#include "runtime/sampler.h"

namespace moe {

struct GenerateOptions {
  int64_t n_predict = 128;      // tokens to generate at most (< 0: until EOS or the context is full)
  int64_t n_ctx = 0;            // context size; 0: the model's training context, capped at 4096
  SamplingParams sampling;
  bool stop_at_eog = true;      // stop at an end-of-generation token (not passed to on_token)
};

struct GenerateStats {
  int64_t n_prompt = 0;
  double prompt_ms = 0.0;
  int64_t n_generated = 0;
  double generate_ms = 0.0;     // from the first sampled token to the last
  const char* stop_reason = "length";  // "length", "eog", "context", "callback"
};

// Returns prompt ids for text as the model expects them: BOS first when the model's metadata
// asks for it (or when the text is empty, so generation has a start).
std::vector<int32_t> tokenize_prompt(const Tokenizer& tok, const std::string& text, bool parse_special);

// Evaluates prompt (at least one token), then samples up to n_predict tokens, calling
// on_token(id) for each; on_token returning false stops generation.
GenerateStats generate(const LoadedModel& m, const std::vector<int32_t>& prompt,
                       const GenerateOptions& opts, ThreadPool& pool,
                       const std::function<bool(int32_t)>& on_token);

}  // namespace moe

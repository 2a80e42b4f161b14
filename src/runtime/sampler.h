// Token sampling: penalties, then top-k, top-p, min-p, temperature, then a seeded draw — the
// order llama.cpp's default sampler chain uses. Temperature <= 0 is greedy (argmax after the
// penalties). The same seed and the same logits give the same tokens on every run.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

namespace moe {

struct SamplingParams {
  float temperature = 0.8f;
  int32_t top_k = 40;             // <= 0: off
  float top_p = 0.95f;            // >= 1: off
  float min_p = 0.05f;            // <= 0: off
  float repeat_penalty = 1.0f;    // 1: off; divides positive logits, multiplies negative ones
  float frequency_penalty = 0.0f; // subtracts count * f
  float presence_penalty = 0.0f;  // subtracts p once a token has appeared
  int32_t penalty_last_n = 64;    // how many recent tokens the penalties look at (-1: all)
  uint64_t seed = 0;
};

// splitmix64-seeded xoshiro256**: a small, fully specified generator, so a seed gives the same
// stream with any compiler and standard library.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1) with 53 random bits

 private:
  uint64_t s_[4];
};

class Sampler {
 public:
  Sampler(const SamplingParams& params, int32_t n_vocab);

  // Picks the next token from logits[n_vocab] (not modified).
  int32_t sample(const float* logits);
  // Records a token of the context (prompt or generated) for the penalties.
  void accept(int32_t id);
  const SamplingParams& params() const { return params_; }

 private:
  struct Candidate {
    int32_t id;
    float logit;
  };
  void apply_penalties(std::vector<Candidate>& cands) const;

  SamplingParams params_;
  int32_t n_vocab_;
  Rng rng_;
  std::deque<int32_t> recent_;
  std::vector<Candidate> cands_;
};

}  // namespace moe

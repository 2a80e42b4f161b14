#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "core/error.h"

namespace moe {

namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

Sampler::Sampler(const SamplingParams& params, int32_t n_vocab)
    : params_(params), n_vocab_(n_vocab), rng_(params.seed) {
  MOE_CHECK(n_vocab > 0, "sampler: empty vocabulary");
  MOE_CHECK(std::isfinite(params.temperature), "sampler: temperature must be finite");
  MOE_CHECK(params.top_p >= 0.0f && params.top_p <= 1.0f, "sampler: top_p must be in [0, 1]");
  MOE_CHECK(params.min_p >= 0.0f && params.min_p <= 1.0f, "sampler: min_p must be in [0, 1]");
  MOE_CHECK(params.repeat_penalty > 0.0f, "sampler: repeat penalty must be > 0");
}

void Sampler::accept(int32_t id) {
  if (params_.penalty_last_n == 0) return;
  recent_.push_back(id);
  if (params_.penalty_last_n > 0)
    while (recent_.size() > static_cast<size_t>(params_.penalty_last_n)) recent_.pop_front();
}

void Sampler::apply_penalties(std::vector<Candidate>& cands) const {
  if (recent_.empty() || (params_.repeat_penalty == 1.0f && params_.frequency_penalty == 0.0f &&
                          params_.presence_penalty == 0.0f))
    return;
  std::unordered_map<int32_t, int> counts;
  for (int32_t id : recent_) ++counts[id];
  for (const auto& [id, count] : counts) {
    if (id < 0 || id >= n_vocab_) continue;
    float& l = cands[id].logit;  // cands is still indexed by id here
    l = l <= 0.0f ? l * params_.repeat_penalty : l / params_.repeat_penalty;
    l -= static_cast<float>(count) * params_.frequency_penalty + params_.presence_penalty;
  }
}

int32_t Sampler::sample(const float* logits) {
  cands_.resize(n_vocab_);
  for (int32_t i = 0; i < n_vocab_; ++i) cands_[i] = {i, logits[i]};
  apply_penalties(cands_);

  // Greedy: the first maximum wins, as an argmax over ids.
  if (params_.temperature <= 0.0f) {
    int32_t best = 0;
    for (int32_t i = 1; i < n_vocab_; ++i)
      if (cands_[i].logit > cands_[best].logit) best = i;
    return best;
  }

  // Sorting by (logit desc, id asc) makes every cut below independent of the sort's stability.
  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  size_t n = cands_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
    std::partial_sort(cands_.begin(), cands_.begin() + params_.top_k, cands_.end(), by_logit);
    n = static_cast<size_t>(params_.top_k);
  } else {
    std::sort(cands_.begin(), cands_.end(), by_logit);
  }

  // Probabilities at temperature 1 for the top-p and min-p cuts (as llama.cpp's chain, where
  // temperature comes last).
  std::vector<double> p(n);
  const double max_logit = cands_[0].logit;
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) sum += p[i] = std::exp(static_cast<double>(cands_[i].logit) - max_logit);
  if (params_.top_p < 1.0f) {
    double cum = 0.0;
    for (size_t i = 0; i < n; ++i) {
      cum += p[i] / sum;
      if (cum >= params_.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  if (params_.min_p > 0.0f) {
    const double threshold = params_.min_p * p[0];  // relative to the most likely token
    size_t keep = 1;
    while (keep < n && p[keep] >= threshold) ++keep;
    n = keep;
  }

  double total = 0.0;
  for (size_t i = 0; i < n; ++i)
    total += p[i] = std::exp((static_cast<double>(cands_[i].logit) - max_logit) / params_.temperature);
  double r = rng_.uniform() * total;
  for (size_t i = 0; i < n; ++i) {
    r -= p[i];
    if (r < 0.0) return cands_[i].id;
  }
  return cands_[n - 1].id;
}

}  // namespace moe

#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "core/error.h"

namespace moe {
namespace {

std::vector<float> ramp_logits(int n) {
  std::vector<float> l(n);
  for (int i = 0; i < n; ++i) l[i] = 0.1f * static_cast<float>((i * 37) % n);
  return l;
}

TEST(SamplerTest, GreedyPicksFirstArgmax) {
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler s(p, 5);
  const float logits[5] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
  EXPECT_EQ(s.sample(logits), 1);
}

TEST(SamplerTest, SameSeedSameTokens) {
  const std::vector<float> logits = ramp_logits(100);
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 1234;
  Sampler a(p, 100), b(p, 100);
  std::vector<int32_t> ta, tb;
  for (int i = 0; i < 200; ++i) {
    ta.push_back(a.sample(logits.data()));
    tb.push_back(b.sample(logits.data()));
  }
  EXPECT_EQ(ta, tb);
  p.seed = 1235;
  Sampler c(p, 100);
  std::vector<int32_t> tc;
  for (int i = 0; i < 200; ++i) tc.push_back(c.sample(logits.data()));
  EXPECT_NE(ta, tc);
}

TEST(SamplerTest, TopKRestrictsToKMostLikely) {
  const std::vector<float> logits = ramp_logits(50);
  SamplingParams p;
  p.temperature = 5.0f;  // flat, so all k candidates show up
  p.top_k = 3;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  Sampler s(p, 50);
  std::vector<std::pair<float, int>> sorted;
  for (int i = 0; i < 50; ++i) sorted.push_back({logits[i], i});
  std::sort(sorted.rbegin(), sorted.rend());
  std::map<int32_t, int> seen;
  for (int i = 0; i < 2000; ++i) ++seen[s.sample(logits.data())];
  EXPECT_EQ(seen.size(), 3u);
  for (int k = 0; k < 3; ++k) EXPECT_GT(seen[sorted[k].second], 0);
}

TEST(SamplerTest, TopPKeepsSmallestNucleus) {
  // probabilities 0.5, 0.3, 0.2 at temperature 1: top_p 0.75 keeps the first two.
  const float logits[3] = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 0.75f;
  p.min_p = 0.0f;
  Sampler s(p, 3);
  std::map<int32_t, int> seen;
  for (int i = 0; i < 5000; ++i) ++seen[s.sample(logits)];
  EXPECT_EQ(seen.count(2), 0u);
  // Renormalised: token 0 with probability 0.5 / 0.8 = 0.625.
  EXPECT_NEAR(seen[0] / 5000.0, 0.625, 0.03);
}

TEST(SamplerTest, MinPDropsUnlikelyTokens) {
  const float logits[3] = {std::log(0.6f), std::log(0.35f), std::log(0.05f)};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.1f;  // threshold 0.06: drops token 2
  Sampler s(p, 3);
  for (int i = 0; i < 3000; ++i) EXPECT_NE(s.sample(logits), 2);
}

TEST(SamplerTest, TemperatureSharpensDistribution) {
  const float logits[2] = {1.0f, 0.0f};
  SamplingParams p;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.temperature = 0.5f;  // p0 = 1 / (1 + e^-2)
  Sampler s(p, 2);
  int zeros = 0;
  for (int i = 0; i < 20000; ++i) zeros += s.sample(logits) == 0;
  EXPECT_NEAR(zeros / 20000.0, 1.0 / (1.0 + std::exp(-2.0)), 0.015);
}

TEST(SamplerTest, PenaltiesChangeGreedyChoice) {
  const float logits[3] = {2.0f, 1.9f, 0.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.repeat_penalty = 1.1f;  // 2.0 / 1.1 = 1.82 < 1.9
  Sampler s(p, 3);
  EXPECT_EQ(s.sample(logits), 0);
  s.accept(0);
  EXPECT_EQ(s.sample(logits), 1);

  SamplingParams q;
  q.temperature = 0.0f;
  q.frequency_penalty = 0.06f;
  Sampler f(q, 3);
  f.accept(0);
  EXPECT_EQ(f.sample(logits), 0);  // 2.0 - 0.06 > 1.9
  f.accept(0);
  EXPECT_EQ(f.sample(logits), 1);  // 2.0 - 0.12 < 1.9

  SamplingParams r;
  r.temperature = 0.0f;
  r.presence_penalty = 0.2f;
  Sampler pr(r, 3);
  pr.accept(0);
  EXPECT_EQ(pr.sample(logits), 1);
}

TEST(SamplerTest, PenaltyWindowForgetsOldTokens) {
  const float logits[2] = {2.0f, 1.9f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.presence_penalty = 1.0f;
  p.penalty_last_n = 2;
  Sampler s(p, 2);
  s.accept(0);
  EXPECT_EQ(s.sample(logits), 1);
  s.accept(1);
  s.accept(1);  // token 0 has left the window
  EXPECT_EQ(s.sample(logits), 0);
}

TEST(SamplerTest, RejectsBadParameters) {
  SamplingParams p;
  p.top_p = 1.5f;
  EXPECT_THROW(Sampler(p, 10), Error);
  p = SamplingParams{};
  p.repeat_penalty = 0.0f;
  EXPECT_THROW(Sampler(p, 10), Error);
  EXPECT_THROW(Sampler(SamplingParams{}, 0), Error);
}

}  // namespace
}  // namespace moe

#include "server/rate_limit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "core/error.h"

namespace moe::server {
namespace {

TEST(ServerRateLimit, UnlimitedAdmitsEverythingAndKeepsNoState) {
  RateLimiter rl(RateLimits{});
  int retry = -1;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(rl.admit("p" + std::to_string(i), 1 << 20, 0.0, &retry));
  EXPECT_EQ(retry, -1);
  EXPECT_EQ(rl.size(), 0u);
}

TEST(ServerRateLimit, RequestBurstThenRetryAfter) {
  RateLimiter rl(RateLimits{5, 0});  // one request per 12 s, burst of 5
  int retry = 0;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(rl.admit("a", 100, 0.0, &retry)) << i;
  EXPECT_FALSE(rl.admit("a", 100, 0.0, &retry));
  EXPECT_EQ(retry, 12);
  EXPECT_FALSE(rl.admit("a", 100, 6.0, &retry));  // half a request refilled
  EXPECT_EQ(retry, 6);
  EXPECT_FALSE(rl.admit("a", 100, 11.5, &retry));
  EXPECT_EQ(retry, 1);  // 0.5 s rounds up to at least 1
  EXPECT_TRUE(rl.admit("a", 100, 12.0, &retry));
  EXPECT_FALSE(rl.admit("a", 100, 12.0, &retry));
  EXPECT_EQ(retry, 12);
  // Principals are independent.
  EXPECT_TRUE(rl.admit("b", 100, 12.0, &retry));
  // A refusal does not consume anything: after a long pause the burst is back, but never above 5.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(rl.admit("a", 1, 1000.0, &retry)) << i;
  EXPECT_FALSE(rl.admit("a", 1, 1000.0, &retry));
}

TEST(ServerRateLimit, TokenBucketRefillsContinuously) {
  RateLimiter rl(RateLimits{0, 600});  // 10 tokens per second
  int retry = 0;
  EXPECT_TRUE(rl.admit("a", 500, 0.0, &retry));
  EXPECT_FALSE(rl.admit("a", 200, 0.0, &retry));  // 100 left, 100 missing = 10 s
  EXPECT_EQ(retry, 10);
  EXPECT_FALSE(rl.admit("a", 200, 9.9, &retry));
  EXPECT_EQ(retry, 1);
  EXPECT_TRUE(rl.admit("a", 200, 10.0, &retry));
  EXPECT_TRUE(rl.admit("a", 0, 10.0, &retry));  // zero-token requests are free when only tokens are limited
  EXPECT_FALSE(rl.admit("a", 1, 10.0, &retry));
  EXPECT_EQ(retry, 1);
}

TEST(ServerRateLimit, BothLimitsMustPassAndRetryIsTheLonger) {
  RateLimiter rl(RateLimits{2, 120});  // 1 request per 30 s, 2 tokens per s
  int retry = 0;
  EXPECT_TRUE(rl.admit("a", 100, 0.0, &retry));
  EXPECT_FALSE(rl.admit("a", 100, 0.0, &retry));  // requests ok (1 left), tokens: 80 missing = 40 s
  EXPECT_EQ(retry, 40);
  EXPECT_TRUE(rl.admit("a", 20, 0.0, &retry));  // fits both; the refusal above charged nothing
  EXPECT_FALSE(rl.admit("a", 0, 0.0, &retry));  // no request left: 30 s
  EXPECT_EQ(retry, 30);
  EXPECT_FALSE(rl.admit("a", 120, 30.0, &retry));  // request back, tokens 60/120: 30 s more
  EXPECT_EQ(retry, 30);
  EXPECT_TRUE(rl.admit("a", 120, 60.0, &retry));
}

TEST(ServerRateLimit, RefundReturnsUnusedTokensUpToTheCap) {
  RateLimiter rl(RateLimits{0, 600});
  int retry = 0;
  EXPECT_TRUE(rl.admit("a", 600, 0.0, &retry));
  EXPECT_FALSE(rl.admit("a", 400, 0.0, &retry));
  rl.refund("a", 400, 0.0);
  EXPECT_TRUE(rl.admit("a", 400, 0.0, &retry));
  EXPECT_FALSE(rl.admit("a", 1, 0.0, &retry));
  rl.refund("a", 100000, 1.0);  // capped at one minute's allowance
  EXPECT_TRUE(rl.admit("a", 600, 1.0, &retry));
  EXPECT_FALSE(rl.admit("a", 1, 1.0, &retry));
  rl.refund("unknown", 10, 1.0);  // no state for it; must not create any
  rl.refund("a", -5, 1.0);        // ignored
  EXPECT_EQ(rl.size(), 1u);
  EXPECT_FALSE(rl.admit("a", 1, 1.0, &retry));
}

TEST(ServerRateLimit, OversizedRequestWaitsForAFullBucketThenGoesIntoDebt) {
  RateLimiter rl(RateLimits{0, 60});  // 1 token per second
  int retry = 0;
  EXPECT_TRUE(rl.admit("a", 10, 0.0, &retry));
  EXPECT_FALSE(rl.admit("a", 600, 0.0, &retry));  // needs a full bucket: 10 s
  EXPECT_EQ(retry, 10);
  EXPECT_TRUE(rl.admit("a", 600, 10.0, &retry));  // bucket now at -540
  EXPECT_FALSE(rl.admit("a", 1, 10.0, &retry));
  EXPECT_EQ(retry, 541);
}

TEST(ServerRateLimit, RetryAfterIsExactUnderRandomLoad) {
  // Property: on refusal with retry r, the same request is admitted at +r and (for r > 1) still refused
  // at +(r - 1), given no other traffic.
  std::mt19937 rng(7);
  int refusals = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const RateLimits lim{static_cast<int64_t>(rng() % 20), static_cast<int64_t>(rng() % 5000)};
    if (lim.requests_per_min == 0 && lim.tokens_per_min == 0) continue;
    RateLimiter a(lim), b(lim);
    double t = 0;
    for (int step = 0; step < 50; ++step) {
      t += (rng() % 1000) / 100.0;
      const int64_t tokens = rng() % 3000;
      int retry = 0;
      const bool ok = a.admit("p", tokens, t, &retry);
      EXPECT_EQ(ok, b.admit("p", tokens, t, nullptr));  // twin limiter tracks the same state
      if (ok) continue;
      ASSERT_GE(retry, 1);
      ++refusals;
      if (retry > 1) {
        EXPECT_FALSE(b.admit("p", tokens, t + retry - 1, nullptr)) << trial << " " << step;
      }
      ASSERT_TRUE(a.admit("p", tokens, t + retry, nullptr)) << trial << " " << step << " retry " << retry;
      ASSERT_TRUE(b.admit("p", tokens, t + retry, nullptr));
      t += retry;
    }
  }
  EXPECT_GT(refusals, 500);  // the property was exercised, not vacuously true
}

TEST(ServerRateLimit, LongRunRateNeverExceedsBurstPlusRefill) {
  RateLimiter rl(RateLimits{30, 0});
  int admitted = 0;
  const double duration = 600;
  for (double t = 0; t <= duration; t += 0.1) admitted += rl.admit("a", 0, t, nullptr);
  // At most the burst (30) plus 0.5/s for 600 s; saturating traffic gets all of it.
  EXPECT_LE(admitted, 30 + 300);
  EXPECT_GE(admitted, 30 + 300 - 1);
}

TEST(ServerRateLimit, ThreadSafeExactlyTheBurstIsAdmitted) {
  RateLimiter rl(RateLimits{250, 0});
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 100; ++j) admitted += rl.admit("shared", 1, 5.0, nullptr);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(admitted.load(), 250);
}

TEST(ServerRateLimit, MemoryIsBoundedAndFullBucketsGoFirst) {
  RateLimiter rl(RateLimits{1, 0}, 10);
  int retry = 0;
  for (int i = 0; i < 9; ++i) EXPECT_TRUE(rl.admit("p" + std::to_string(i), 0, 0.0, &retry));
  EXPECT_TRUE(rl.admit("active", 0, 59.0, &retry));
  EXPECT_EQ(rl.size(), 10u);
  // At t=60 p0..p8 are full again (indistinguishable from unseen) and are evicted; "active" is not.
  EXPECT_TRUE(rl.admit("new", 0, 60.0, &retry));
  EXPECT_EQ(rl.size(), 2u);
  EXPECT_FALSE(rl.admit("active", 0, 60.0, &retry));
  EXPECT_EQ(retry, 59);
  // A flood of distinct active principals never grows the table past its bound.
  for (int i = 0; i < 1000; ++i) {
    EXPECT_TRUE(rl.admit("flood" + std::to_string(i), 0, 61.0, &retry));
    ASSERT_LE(rl.size(), 10u);
  }
}

TEST(ServerRateLimit, RejectsBadConfiguration) {
  EXPECT_THROW(RateLimiter(RateLimits{-1, 0}), Error);
  EXPECT_THROW(RateLimiter(RateLimits{0, -1}), Error);
  EXPECT_THROW(RateLimiter(RateLimits{1, 0}, 0), Error);
}

}  // namespace
}  // namespace moe::server

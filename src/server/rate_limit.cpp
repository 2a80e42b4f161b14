#include "server/rate_limit.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <utility>
#include <vector>

#include "core/error.h"

namespace moe::server {
namespace {

// Refill arithmetic in double can land a hair below a whole request; never refuse for that.
constexpr double kEps = 1e-6;

}  // namespace

RateLimiter::RateLimiter(RateLimits limits, size_t max_entries) : limits_(limits), max_entries_(max_entries) {
  MOE_CHECK(limits.requests_per_min >= 0, "rate limit: requests per minute must be >= 0, got ",
            limits.requests_per_min);
  MOE_CHECK(limits.tokens_per_min >= 0, "rate limit: tokens per minute must be >= 0, got ",
            limits.tokens_per_min);
  MOE_CHECK(max_entries > 0, "rate limit: max_entries must be > 0");
}

void RateLimiter::refill(Bucket* b, double now_s) const {
  const double dt = now_s - b->last_s;
  if (!(dt > 0)) return;
  if (limits_.requests_per_min > 0) {
    const double cap = static_cast<double>(limits_.requests_per_min);
    b->requests = std::min(cap, b->requests + dt * cap / 60.0);
  }
  if (limits_.tokens_per_min > 0) {
    const double cap = static_cast<double>(limits_.tokens_per_min);
    b->tokens = std::min(cap, b->tokens + dt * cap / 60.0);
  }
  b->last_s = now_s;
}

bool RateLimiter::is_full(const Bucket& b) const {
  return (limits_.requests_per_min == 0 || b.requests >= static_cast<double>(limits_.requests_per_min)) &&
         (limits_.tokens_per_min == 0 || b.tokens >= static_cast<double>(limits_.tokens_per_min));
}

void RateLimiter::evict(double now_s) {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    refill(&it->second, now_s);
    it = is_full(it->second) ? buckets_.erase(it) : std::next(it);
  }
  if (buckets_.size() < max_entries_) return;
  // Every principal is active: reset the fullest ones, down to 90% so this O(n) pass is amortized.
  const size_t target = max_entries_ - std::max<size_t>(1, max_entries_ / 10);
  using Entry = std::pair<double, decltype(buckets_)::iterator>;
  std::vector<Entry> by_fullness;
  by_fullness.reserve(buckets_.size());
  for (auto it = buckets_.begin(); it != buckets_.end(); ++it) {
    double f = 1.0;
    if (limits_.requests_per_min > 0) {
      f = std::min(f, it->second.requests / static_cast<double>(limits_.requests_per_min));
    }
    if (limits_.tokens_per_min > 0)
      f = std::min(f, it->second.tokens / static_cast<double>(limits_.tokens_per_min));
    by_fullness.emplace_back(f, it);
  }
  const size_t n_remove = buckets_.size() - target;
  std::nth_element(by_fullness.begin(), by_fullness.begin() + static_cast<std::ptrdiff_t>(n_remove),
                   by_fullness.end(), [](const Entry& a, const Entry& b) { return a.first > b.first; });
  for (size_t i = 0; i < n_remove; ++i) buckets_.erase(by_fullness[i].second);
}

bool RateLimiter::admit(const std::string& principal, int64_t tokens, double now_s, int* retry_after_s) {
  const int64_t rpm = limits_.requests_per_min, tpm = limits_.tokens_per_min;
  if (rpm == 0 && tpm == 0) return true;
  MOE_CHECK(std::isfinite(now_s), "rate limit: time must be finite");
  tokens = std::max<int64_t>(tokens, 0);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = buckets_.find(principal);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_entries_) evict(now_s);
    it = buckets_.emplace(principal, Bucket{static_cast<double>(rpm), static_cast<double>(tpm), now_s}).first;
  }
  Bucket& b = it->second;
  refill(&b, now_s);
  double wait_s = 0;
  if (rpm > 0 && b.requests < 1.0 - kEps) {
    wait_s = std::max(wait_s, (1.0 - b.requests) * 60.0 / static_cast<double>(rpm));
  }
  if (tpm > 0) {
    const double need = static_cast<double>(std::min(tokens, tpm));
    if (b.tokens < need - kEps)
      wait_s = std::max(wait_s, (need - b.tokens) * 60.0 / static_cast<double>(tpm));
  }
  if (wait_s > 0) {
    if (retry_after_s) {
      const double whole = std::ceil(wait_s - kEps);
      *retry_after_s = whole >= INT_MAX ? INT_MAX : std::max(1, static_cast<int>(whole));
    }
    return false;
  }
  if (rpm > 0) b.requests -= 1.0;
  if (tpm > 0) b.tokens -= static_cast<double>(tokens);
  return true;
}

void RateLimiter::refund(const std::string& principal, int64_t tokens, double now_s) {
  if (limits_.tokens_per_min == 0 || tokens <= 0 || !std::isfinite(now_s)) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = buckets_.find(principal);
  if (it == buckets_.end()) return;  // evicted because full: nothing to give back
  refill(&it->second, now_s);
  it->second.tokens =
      std::min(static_cast<double>(limits_.tokens_per_min), it->second.tokens + static_cast<double>(tokens));
}

size_t RateLimiter::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return buckets_.size();
}

}  // namespace moe::server

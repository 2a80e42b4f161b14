// Per-principal rate limits for `moe serve`: requests per minute and tokens per minute, each a token
// bucket that holds at most one minute's allowance and refills continuously.
//
// Contract:
//  * A limit of 0 means unlimited; with both limits 0 admit() always succeeds and keeps no state.
//  * admit() is all-or-nothing: a request is admitted only when both buckets can pay, then both are
//    charged (1 request, `tokens` tokens). A request for more tokens than one minute's allowance is
//    admitted once the token bucket is full and leaves it in debt, so the long-run rate still holds.
//  * On refusal *retry_after_s is the whole number of seconds (>= 1, rounded up) after which the same
//    request would be admitted if nothing else happens.
//  * Time is the caller's (seconds as double, any monotonic origin); time going backwards refills nothing.
//  * Memory is bounded: a principal whose buckets are full behaves exactly like an unseen one, so such
//    entries are evicted; if max_entries are still all in use, the entries closest to full are reset
//    (a small leniency for those principals) rather than growing without bound.
// Thread-safety: all member functions may be called concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace moe::server {

struct RateLimits {
  int64_t requests_per_min = 0;
  int64_t tokens_per_min = 0;
};

class RateLimiter {
 public:
  static constexpr size_t kDefaultMaxEntries = 100000;

  // Throws moe::Error when a limit is negative or max_entries is 0.
  explicit RateLimiter(RateLimits limits, size_t max_entries = kDefaultMaxEntries);

  // Admits one request that may use up to `tokens` tokens (negative counts as 0) at time now_s. On
  // refusal returns false and sets *retry_after_s (when non-null) as described above.
  bool admit(const std::string& principal, int64_t tokens, double now_s, int* retry_after_s);

  // Returns tokens reserved by admit() but not used (e.g. the reply was shorter than max_tokens); the
  // bucket never exceeds one minute's allowance.
  void refund(const std::string& principal, int64_t tokens, double now_s);

  // Number of principals currently tracked (for tests and metrics).
  size_t size() const;

 private:
  struct Bucket {
    double requests;  // available requests
    double tokens;    // available tokens; negative after an oversized request
    double last_s;    // time of the last refill
  };

  void refill(Bucket* b, double now_s) const;
  bool is_full(const Bucket& b) const;
  void evict(double now_s);

  const RateLimits limits_;
  const size_t max_entries_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace moe::server

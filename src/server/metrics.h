// A thread-safe Prometheus metrics registry rendered in the text exposition format 0.0.4
// (what `GET /metrics` returns, Content-Type "text/plain; version=0.0.4").
//
// A family is declared by its first use (name, help, type, and for histograms the buckets); every later use
// must agree on all of them, or the call throws moe::Error naming the family and the mismatch. Within a
// family, samples are keyed by their label set, compared as given (order included: {a,b} and {b,a} are two
// samples, so callers should pass labels in a fixed order). Families and samples render in first-use order.
//
// Checked on use (moe::Error): metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
// [a-zA-Z_][a-zA-Z0-9_]* and do not start with "__"; a label name appears once per set; histograms do not use
// the label "le"; counters only grow (v >= 0, not NaN); histogram observations are not NaN; histogram buckets
// are finite and strictly increasing (a trailing +Inf is accepted and dropped: the +Inf bucket is always
// rendered); a family whose rendered series names would collide with another's (histogram "x" makes
// "x_bucket", "x_sum", "x_count") is rejected. Label values and help text may be any bytes; they are escaped
// as the format says.
//
// Every member takes one mutex: meant for a few thousand updates per second, not a per-token hot loop.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace moe::server {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Metrics {
 public:
  void counter_add(const std::string& name, const std::string& help, const Labels& labels, double v = 1);
  void gauge_set(const std::string& name, const std::string& help, const Labels& labels, double v);
  void gauge_add(const std::string& name, const std::string& help, const Labels& labels, double v = 1);
  // An observation v lands in every bucket whose upper bound is >= v (the "le" semantics).
  void histogram_observe(const std::string& name, const std::string& help, const std::vector<double>& buckets,
                         const Labels& labels, double v);

  // "# HELP" and "# TYPE" once per family, then its samples; histograms as cumulative
  // name_bucket{...,le="b"} lines ending with le="+Inf", then name_sum and name_count.
  std::string render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Sample {
    double value = 0;                     // counter, gauge
    std::vector<uint64_t> bucket_counts;  // histogram, per bucket (not cumulative), last is +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    std::string name;
    std::string help;
    Type type;
    std::vector<double> buckets;  // finite bounds only
    std::vector<std::pair<Labels, Sample>> samples;
    std::map<Labels, size_t> index;
  };

  // Both expect mu_ held.
  Family& family(const std::string& name, const std::string& help, Type type,
                 const std::vector<double>* buckets);
  Sample& sample(Family& f, const Labels& labels);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Family>> families_;
  std::map<std::string, Family*> by_name_;
  std::map<std::string, std::string> series_owner_;  // rendered series name -> family name
};

}  // namespace moe::server

#include "server/metrics.h"

#include <charconv>
#include <cmath>

#include "core/error.h"

namespace moe::server {
namespace {

bool is_metric_name(const std::string& s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool is_label_name(const std::string& s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

const char* type_name(int type) {
  static const char* kNames[] = {"counter", "gauge", "histogram"};
  return kNames[type];
}

// Shortest text that parses back to the same double; Prometheus (Go's ParseFloat) reads exponents too.
std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string escape_help(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string escape_label_value(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

// le: the histogram bucket's bound, rendered after the user's labels as the client libraries do.
void append_series(std::string& out, const std::string& name, const Labels& labels, const std::string* le,
                   const std::string& value) {
  out += name;
  if (!labels.empty() || le) {
    out += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first) out += ',';
      first = false;
      out += k;
      out += "=\"";
      out += escape_label_value(v);
      out += '"';
    }
    if (le) {
      if (!first) out += ',';
      out += "le=\"";
      out += *le;
      out += '"';
    }
    out += '}';
  }
  out += ' ';
  out += value;
  out += '\n';
}

// Checked before the family is declared, so that a bad call leaves the registry as it was.
void check_labels(const std::string& name, bool histogram, const Labels& labels) {
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::string& k = labels[i].first;
    MOE_CHECK(is_label_name(k), "metric ", name, ": invalid label name \"", k,
              "\" (must match [a-zA-Z_][a-zA-Z0-9_]*)");
    MOE_CHECK(k.rfind("__", 0) != 0, "metric ", name, ": label name \"", k,
              "\" is reserved (starts with __)");
    MOE_CHECK(!histogram || k != "le", "histogram ", name, ": label name \"le\" is reserved");
    for (size_t j = 0; j < i; ++j)
      MOE_CHECK(labels[j].first != k, "metric ", name, ": label \"", k, "\" given twice");
  }
}

}  // namespace

Metrics::Family& Metrics::family(const std::string& name, const std::string& help, Type type,
                                 const std::vector<double>* buckets) {
  const auto it = by_name_.find(name);
  if (it != by_name_.end()) {
    Family& f = *it->second;
    if (f.type != type)
      fail("metric ", name, " was declared as a ", type_name(static_cast<int>(f.type)), ", used as a ",
           type_name(static_cast<int>(type)));
    if (f.help != help)
      fail("metric ", name, " was declared with help \"", f.help, "\", used with \"", help, "\"");
    if (buckets) {
      std::vector<double> finite = *buckets;
      if (!finite.empty() && finite.back() == INFINITY) finite.pop_back();
      if (finite != f.buckets) fail("histogram ", name, " used with buckets different from its declaration");
    }
    return f;
  }

  MOE_CHECK(is_metric_name(name), "invalid metric name \"", name, "\" (must match [a-zA-Z_:][a-zA-Z0-9_:]*)");
  auto f = std::make_unique<Family>();
  f->name = name;
  f->help = help;
  f->type = type;
  if (buckets) {
    f->buckets = *buckets;
    if (!f->buckets.empty() && f->buckets.back() == INFINITY) f->buckets.pop_back();
    for (size_t i = 0; i < f->buckets.size(); ++i) {
      MOE_CHECK(std::isfinite(f->buckets[i]), "histogram ", name, ": bucket ", i, " is not finite");
      MOE_CHECK(i == 0 || f->buckets[i] > f->buckets[i - 1], "histogram ", name,
                ": buckets must be strictly increasing (bucket ", i, ")");
    }
  }
  std::vector<std::string> series;
  if (type == Type::kHistogram)
    series = {name + "_bucket", name + "_sum", name + "_count"};
  else
    series = {name};
  for (const auto& s : series) {
    const auto owner = series_owner_.find(s);
    if (owner != series_owner_.end())
      fail("metric ", name, " would render series ", s, ", which metric ", owner->second, " already renders");
  }
  for (const auto& s : series) series_owner_[s] = name;

  Family* raw = f.get();
  families_.push_back(std::move(f));
  by_name_[name] = raw;
  return *raw;
}

Metrics::Sample& Metrics::sample(Family& f, const Labels& labels) {
  const auto it = f.index.find(labels);
  if (it != f.index.end()) return f.samples[it->second].second;

  f.index.emplace(labels, f.samples.size());
  f.samples.emplace_back(labels, Sample{});
  Sample& s = f.samples.back().second;
  if (f.type == Type::kHistogram) s.bucket_counts.assign(f.buckets.size() + 1, 0);
  return s;
}

void Metrics::counter_add(const std::string& name, const std::string& help, const Labels& labels, double v) {
  MOE_CHECK(v >= 0, "counter ", name, ": cannot add ", format_value(v), " (counters only grow)");
  check_labels(name, false, labels);
  std::lock_guard lock(mu_);
  sample(family(name, help, Type::kCounter, nullptr), labels).value += v;
}

void Metrics::gauge_set(const std::string& name, const std::string& help, const Labels& labels, double v) {
  check_labels(name, false, labels);
  std::lock_guard lock(mu_);
  sample(family(name, help, Type::kGauge, nullptr), labels).value = v;
}

void Metrics::gauge_add(const std::string& name, const std::string& help, const Labels& labels, double v) {
  check_labels(name, false, labels);
  std::lock_guard lock(mu_);
  sample(family(name, help, Type::kGauge, nullptr), labels).value += v;
}

void Metrics::histogram_observe(const std::string& name, const std::string& help,
                                const std::vector<double>& buckets, const Labels& labels, double v) {
  MOE_CHECK(!std::isnan(v), "histogram ", name, ": cannot observe NaN");
  check_labels(name, true, labels);
  std::lock_guard lock(mu_);
  Family& f = family(name, help, Type::kHistogram, &buckets);
  Sample& s = sample(f, labels);
  size_t b = 0;
  while (b < f.buckets.size() && v > f.buckets[b]) ++b;
  ++s.bucket_counts[b];
  s.sum += v;
  ++s.count;
}

std::string Metrics::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& f : families_) {
    out += "# HELP " + f->name + " " + escape_help(f->help) + "\n";
    out += "# TYPE " + f->name + " " + type_name(static_cast<int>(f->type)) + "\n";
    for (const auto& [labels, s] : f->samples) {
      if (f->type != Type::kHistogram) {
        append_series(out, f->name, labels, nullptr, format_value(s.value));
        continue;
      }
      uint64_t cumulative = 0;
      for (size_t b = 0; b <= f->buckets.size(); ++b) {
        cumulative += s.bucket_counts[b];
        const std::string le = b < f->buckets.size() ? format_value(f->buckets[b]) : "+Inf";
        append_series(out, f->name + "_bucket", labels, &le, std::to_string(cumulative));
      }
      append_series(out, f->name + "_sum", labels, nullptr, format_value(s.sum));
      append_series(out, f->name + "_count", labels, nullptr, std::to_string(s.count));
    }
  }
  return out;
}

}  // namespace moe::server

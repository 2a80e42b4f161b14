#include "server/api.h"

#include <cmath>
#include <limits>
#include <set>

namespace moe::server {

using json = nlohmann::ordered_json;

std::string ApiError::body() const {
  json e = {{"message", what()},
            {"type", !type_.empty()   ? type_
                     : status_ == 401 ? "authentication_error"
                     : status_ == 403 ? "permission_error"
                     : status_ == 404 ? "not_found_error"
                     : status_ == 429 ? "rate_limit_error"
                     : status_ >= 500 ? "server_error"
                                      : "invalid_request_error"},
            {"param", param_.empty() ? json(nullptr) : json(param_)},
            {"code", nullptr}};
  return json{{"error", e}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& msg) {
  throw ApiError(400, "'" + field + "': " + msg, field);
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "a number";
  }
}

// Typed, range-checked reads of optional fields; null counts as absent (OpenAI clients send it).
class Fields {
 public:
  explicit Fields(const json& j) : j_(j) {}
  const json* get(const std::string& k) const {
    auto it = j_.find(k);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  std::optional<int64_t> integer(const std::string& k, int64_t lo, int64_t hi) const {
    const json* v = get(k);
    if (!v) return std::nullopt;
    int64_t x;
    if (v->is_number_integer()) {
      if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi))
        bad(k, "must be at most " + std::to_string(hi));
      x = v->get<int64_t>();
    } else if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
               std::fabs(v->get<double>()) < 9e15) {
      x = static_cast<int64_t>(v->get<double>());
    } else {
      bad(k, std::string("expected an integer, got ") + type_name(*v));
    }
    if (x < lo || x > hi)
      bad(k, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " +
                 std::to_string(x));
    return x;
  }
  std::optional<double> number(const std::string& k, double lo, double hi) const {
    const json* v = get(k);
    if (!v) return std::nullopt;
    if (!v->is_number()) bad(k, std::string("expected a number, got ") + type_name(*v));
    const double x = v->get<double>();
    if (!(x >= lo && x <= hi)) bad(k, "must be between " + fmt(lo) + " and " + fmt(hi));
    return x;
  }
  std::optional<bool> boolean(const std::string& k) const {
    const json* v = get(k);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) bad(k, std::string("expected a boolean, got ") + type_name(*v));
    return v->get<bool>();
  }
  std::optional<std::string> string(const std::string& k) const {
    const json* v = get(k);
    if (!v) return std::nullopt;
    if (!v->is_string()) bad(k, std::string("expected a string, got ") + type_name(*v));
    return v->get<std::string>();
  }

 private:
  static std::string fmt(double x) {
    std::string s = std::to_string(x);
    while (s.size() > 1 && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  }
  const json& j_;
};

// Text of a message's content: a string, or OpenAI's array of {"type": "text", "text": ...} parts.
std::string content_text(const json& c, const std::string& field) {
  if (c.is_string()) return c.get<std::string>();
  if (c.is_null()) return "";
  if (!c.is_array())
    bad(field, std::string("expected a string or an array of content parts, got ") + type_name(c));
  std::string out;
  for (size_t i = 0; i < c.size(); ++i) {
    const std::string f = field + "[" + std::to_string(i) + "]";
    const json& part = c[i];
    if (!part.is_object()) bad(f, "expected an object");
    auto t = part.find("type");
    if (t == part.end() || !t->is_string()) bad(f + ".type", "missing or not a string");
    if (*t != "text")
      bad(f + ".type", "only \"text\" content parts are supported, got \"" + t->get<std::string>() + "\"");
    auto x = part.find("text");
    if (x == part.end() || !x->is_string()) bad(f + ".text", "missing or not a string");
    out += x->get<std::string>();
  }
  return out;
}

json parse_messages(const json& m) {
  if (!m.is_array()) bad("messages", std::string("expected an array, got ") + type_name(m));
  if (m.empty()) bad("messages", "must not be empty");
  if (m.size() > 4096) bad("messages", "too many messages");
  static const std::set<std::string> kRoles = {"system", "developer", "user", "assistant", "tool"};
  static const std::set<std::string> kKeys = {"role",       "content",      "name",   "reasoning_content",
                                              "tool_calls", "tool_call_id", "refusal"};
  json out = json::array();
  for (size_t i = 0; i < m.size(); ++i) {
    const std::string f = "messages[" + std::to_string(i) + "]";
    const json& msg = m[i];
    if (!msg.is_object()) bad(f, std::string("expected an object, got ") + type_name(msg));
    for (auto it = msg.begin(); it != msg.end(); ++it)
      if (!kKeys.count(it.key())) bad(f + "." + it.key(), "unknown field");
    auto r = msg.find("role");
    if (r == msg.end() || !r->is_string()) bad(f + ".role", "missing or not a string");
    std::string role = r->get<std::string>();
    if (!kRoles.count(role))
      bad(f + ".role", "must be one of system, developer, user, assistant, tool; got \"" + role + "\"");
    if (role == "developer") role = "system";
    auto c = msg.find("content");
    if (c == msg.end() && role != "assistant") bad(f + ".content", "missing");
    out.push_back({{"role", role}, {"content", c == msg.end() ? "" : content_text(*c, f + ".content")}});
  }
  return out;
}

}  // namespace

CompletionRequest parse_request(Route route, const std::string& body, const ApiLimits& limits) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    throw ApiError(400, std::string("the body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw ApiError(400, std::string("the body must be a JSON object, got ") + type_name(j));

  // Fields OpenAI defines that change nothing here are accepted; others are refused by name, so
  // a client never silently gets behaviour it did not ask for.
  static const std::set<std::string> kCommon = {"model",
                                                "max_tokens",
                                                "temperature",
                                                "top_p",
                                                "top_k",
                                                "min_p",
                                                "stop",
                                                "seed",
                                                "presence_penalty",
                                                "frequency_penalty",
                                                "repeat_penalty",
                                                "n",
                                                "stream",
                                                "stream_options",
                                                "user",
                                                "logprobs",
                                                "ignore_eos",
                                                "metadata",
                                                "store",
                                                "service_tier",
                                                "logit_bias",
                                                "response_format",
                                                "parallel_tool_calls"};
  static const std::set<std::string> kChat = {"messages", "max_completion_tokens", "top_logprobs",
                                              "reasoning_format", "reasoning_effort"};
  static const std::set<std::string> kCompl = {"prompt", "echo", "suffix", "best_of"};
  static const std::set<std::string> kGenerate = {"prompt", "max_length", "max_new_tokens"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const bool known = kCommon.count(k) || (route == Route::kChat && kChat.count(k)) ||
                       (route == Route::kCompletions && kCompl.count(k)) ||
                       (route == Route::kGenerate && kGenerate.count(k));
    if (!known) bad(k, "unknown field");
  }
  const Fields f(j);
  CompletionRequest r;
  r.route = route;
  r.model = f.string("model").value_or("");
  if (route == Route::kChat) {
    const json* m = f.get("messages");
    if (!m) bad("messages", "missing");
    r.messages = parse_messages(*m);
  } else {
    const json* p = f.get("prompt");
    if (!p) bad("prompt", "missing");
    if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) {
      r.prompt = (*p)[0].get<std::string>();
    } else if (p->is_string()) {
      r.prompt = p->get<std::string>();
    } else {
      bad("prompt", std::string("expected a string, got ") + type_name(*p));
    }
  }

  const int64_t cap = limits.max_tokens_cap;
  for (const char* k : {"max_tokens", "max_completion_tokens", "max_length", "max_new_tokens"})
    if (auto v = f.integer(k, 1, cap)) r.max_tokens = *v;

  SamplingParams& s = r.sampling;
  if (auto v = f.number("temperature", 0.0, 2.0)) {
    s.temperature = static_cast<float>(*v);
    r.temperature_set = true;
  }
  if (auto v = f.number("top_p", 0.0, 1.0)) {
    s.top_p = static_cast<float>(*v);
    r.top_p_set = true;
  }
  if (auto v = f.integer("top_k", 0, 1 << 20)) s.top_k = static_cast<int32_t>(*v);
  if (auto v = f.number("min_p", 0.0, 1.0)) s.min_p = static_cast<float>(*v);
  if (auto v = f.number("presence_penalty", -2.0, 2.0)) s.presence_penalty = static_cast<float>(*v);
  if (auto v = f.number("frequency_penalty", -2.0, 2.0)) s.frequency_penalty = static_cast<float>(*v);
  if (auto v = f.number("repeat_penalty", 0.0, 10.0)) s.repeat_penalty = static_cast<float>(*v);
  if (auto v = f.integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()))
    r.seed = static_cast<uint64_t>(*v);
  if (auto v = f.integer("n", 1, limits.max_n)) r.n = static_cast<int>(*v);
  if (auto v = f.integer("best_of", 1, 1)) (void)v;
  r.stream = f.boolean("stream").value_or(false);
  r.ignore_eos = f.boolean("ignore_eos").value_or(false);
  if (const json* so = f.get("stream_options")) {
    if (!so->is_object()) bad("stream_options", "expected an object");
    for (auto it = so->begin(); it != so->end(); ++it)
      if (it.key() != "include_usage") bad("stream_options." + it.key(), "unknown field");
    const Fields sf(*so);
    try {
      r.include_usage = sf.boolean("include_usage").value_or(false);
    } catch (const ApiError&) {
      bad("stream_options.include_usage", "expected a boolean");
    }
    if (!r.stream) bad("stream_options", "only allowed when stream is true");
  }
  if (const json* st = f.get("stop")) {
    if (st->is_string()) {
      r.stop.push_back(st->get<std::string>());
    } else if (st->is_array()) {
      for (size_t i = 0; i < st->size(); ++i) {
        if (!(*st)[i].is_string()) bad("stop[" + std::to_string(i) + "]", "expected a string");
        r.stop.push_back((*st)[i].get<std::string>());
      }
    } else {
      bad("stop", std::string("expected a string or an array of strings, got ") + type_name(*st));
    }
    if (static_cast<int>(r.stop.size()) > limits.max_stop)
      bad("stop", "at most " + std::to_string(limits.max_stop) + " stop strings");
    for (size_t i = 0; i < r.stop.size(); ++i) {
      if (r.stop[i].empty()) bad("stop[" + std::to_string(i) + "]", "must not be empty");
      if (r.stop[i].size() > 256) bad("stop[" + std::to_string(i) + "]", "longer than 256 bytes");
    }
  }
  if (route == Route::kChat) {
    const bool lp = f.boolean("logprobs").value_or(false);
    const auto top = f.integer("top_logprobs", 0, 20);
    if (top && !lp) bad("top_logprobs", "requires logprobs: true");
    if (lp) r.logprobs = static_cast<int>(top.value_or(0));
    if (auto rf = f.string("reasoning_format")) {
      if (*rf == "none" || *rf == "raw") {
        r.raw_reasoning = true;
      } else if (*rf != "deepseek" && *rf != "auto") {
        bad("reasoning_format", "must be one of deepseek, auto, none; got \"" + *rf + "\"");
      }
    }
    f.string("reasoning_effort");
  } else if (route == Route::kCompletions) {
    if (auto v = f.integer("logprobs", 0, 5)) r.logprobs = static_cast<int>(*v);
    if (f.boolean("echo").value_or(false)) bad("echo", "echo is not supported");
    if (auto sfx = f.string("suffix"); sfx && !sfx->empty()) bad("suffix", "suffix is not supported");
  } else if (f.get("logprobs")) {
    bad("logprobs", "not supported on /generate");
  }
  if (const json* lb = f.get("logit_bias")) {
    if (!lb->is_object()) bad("logit_bias", "expected an object");
    if (!lb->empty()) bad("logit_bias", "logit_bias is not supported");
  }
  if (const json* rf = f.get("response_format")) {
    if (!rf->is_object() || rf->value("type", "") != "text")
      bad("response_format", "only {\"type\": \"text\"} is supported");
  }
  f.string("user");
  return r;
}

}  // namespace moe::server

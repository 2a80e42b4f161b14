#include "server/filters.h"

#include <re2/re2.h>
#include <re2/set.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <utility>

#include "core/error.h"

namespace moe::server {
namespace {

// ---- UTF-8 helpers: invalid bytes count as one-byte characters ----

bool is_cont(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

size_t seq_len(char lead) {
  const auto b = static_cast<unsigned char>(lead);
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) return 2;
  if ((b & 0xF0) == 0xE0) return 3;
  if ((b & 0xF8) == 0xF0) return 4;
  return 1;
}

// Length of the character at i (1 for an invalid or truncated sequence); i < t.size().
size_t char_len_at(std::string_view t, size_t i) {
  const size_t n = seq_len(t[i]);
  if (i + n > t.size()) return 1;
  for (size_t k = 1; k < n; ++k)
    if (!is_cont(t[i + k])) return 1;
  return n;
}

// Start of the character that ends at i (i > lo), never below lo.
size_t char_start_before(std::string_view t, size_t i, size_t lo) {
  size_t j = i - 1;
  for (int steps = 0; steps < 3 && j > lo && is_cont(t[j]); ++steps) --j;
  return j;
}

// The largest character boundary <= x, never below lo.
size_t boundary_at_or_before(std::string_view t, size_t x, size_t lo) {
  for (int steps = 0; steps < 3 && x > lo && x < t.size() && is_cont(t[x]); ++steps) --x;
  return x;
}

// t without a trailing incomplete UTF-8 sequence (one that more bytes could still complete).
size_t complete_prefix(std::string_view t, size_t lo) {
  const size_t n = t.size();
  for (size_t k = 1; k <= 3 && k <= n - lo; ++k) {
    const char c = t[n - k];
    if (is_cont(c)) continue;
    return seq_len(c) > k ? n - k : n;
  }
  return n;
}

RE2::Options re2_options() {
  RE2::Options o;
  o.set_encoding(RE2::Options::EncodingUTF8);
  o.set_log_errors(false);
  return o;
}

// Empty string if pattern is usable, else the problem.
std::string pattern_problem(const std::string& pattern) {
  const RE2 re(pattern, re2_options());
  if (!re.ok()) return "invalid pattern: " + re.error();
  if (RE2::FullMatch("", re)) return "pattern matches the empty string";
  return "";
}

std::unique_ptr<RE2> compile_or_throw(const std::string& pattern, const std::string& what) {
  const std::string problem = pattern_problem(pattern);
  MOE_CHECK(problem.empty(), what, ": ", problem);
  return std::make_unique<RE2>(pattern, re2_options());
}

// Letters, marks, digits and '_' (Unicode), the characters a whole-word blocklist match must not touch.
bool is_word_char_at(std::string_view t, size_t i) {
  if (i >= t.size()) return false;
  const auto c = static_cast<unsigned char>(t[i]);
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  static const RE2 kWordChar("[\\p{L}\\p{M}\\p{N}]", re2_options());
  return kWordChar.Match(t, i, t.size(), RE2::ANCHOR_START, nullptr, 0);
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }  // RE2's \s

}  // namespace

// ---- Redactor --------------------------------------------------------------------------------------------

Redactor::Redactor(std::vector<RedactRule> rules) : rules_(std::move(rules)) {
  std::set<std::string> names;
  for (const RedactRule& r : rules_) {
    MOE_CHECK(!r.name.empty(), "redact rule with pattern '", r.pattern, "': empty name");
    MOE_CHECK(names.insert(r.name).second, "redact rule '", r.name, "': duplicate name");
    compiled_.push_back(compile_or_throw(r.pattern, "redact rule '" + r.name + "'"));
  }
}

Redactor::~Redactor() = default;
Redactor::Redactor(Redactor&&) noexcept = default;
Redactor& Redactor::operator=(Redactor&&) noexcept = default;

std::vector<RedactRule> Redactor::default_rules() {
  return {
      {"ssn", R"(\b\d{3}-\d{2}-\d{4}\b)"},
      {"email", R"([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"},
  };
}

std::string Redactor::redact(std::string_view text, std::vector<int64_t>* counts) const {
  if (counts) counts->assign(rules_.size(), 0);
  std::string cur(text);
  for (size_t i = 0; i < rules_.size(); ++i) {
    std::string out;
    size_t emitted = 0, from = 0;
    re2::StringPiece m;
    while (from < cur.size() && compiled_[i]->Match(cur, from, cur.size(), RE2::UNANCHORED, &m, 1)) {
      const size_t s = static_cast<size_t>(m.data() - cur.data());
      if (m.empty()) {
        from = s < cur.size() ? s + char_len_at(cur, s) : s + 1;
        continue;
      }
      out.append(cur, emitted, s - emitted);
      out += rules_[i].replacement;
      emitted = from = s + m.size();
      if (counts) ++(*counts)[i];
    }
    if (emitted == 0) continue;  // no match: cur is unchanged
    out.append(cur, emitted, std::string::npos);
    cur = std::move(out);
  }
  return cur;
}

// ---- Moderator -------------------------------------------------------------------------------------------

const char* mod_action_name(ModAction a) {
  switch (a) {
    case ModAction::kFlag:
      return "flag";
    case ModAction::kRedact:
      return "redact";
    case ModAction::kStop:
      return "stop";
  }
  return "?";
}

struct Moderator::BlockEntry {
  std::string text;     // trimmed entry
  std::string pattern;  // (?i:...) with whitespace runs as \s+
  std::unique_ptr<RE2> re;
  bool left_word = false;   // first character is a word character: needs a boundary before
  bool right_word = false;  // last character is a word character: needs a boundary after
};

struct Moderator::BlockIndex {
  explicit BlockIndex(const RE2::Options& o) : set(o, RE2::ANCHOR_START) {}
  RE2::Set set;  // the entries, anchored: which of them match at the start of a text
};

Moderator::Moderator(ModerationConfig cfg) : cfg_(std::move(cfg)) {
  MOE_CHECK(cfg_.max_hold >= kMinHold && cfg_.max_hold <= kMaxHold, "moderation.max_hold: ", cfg_.max_hold,
            " is out of range [", kMinHold, ", ", kMaxHold, "]");
  std::string combined;
  std::set<std::string> names;
  for (size_t i = 0; i < cfg_.rules.size(); ++i) {
    const ModRule& r = cfg_.rules[i];
    const std::string key = str_cat("moderation.rules[", i, "]");
    MOE_CHECK(!r.name.empty(), key, ".name: empty name");
    MOE_CHECK(r.name != "blocklist", key, ".name: \"blocklist\" is reserved for blocklist events");
    MOE_CHECK(names.insert(r.name).second, key, ".name: duplicate rule name '", r.name, "'");
    rule_re_.push_back(compile_or_throw(r.pattern, key + ".pattern: rule '" + r.name + "'"));
    if (!combined.empty()) combined += '|';
    combined += "(?:" + r.pattern + ")";
  }
  for (size_t i = 0; i < cfg_.blocklist.size(); ++i) {
    const std::string key = str_cat("moderation.blocklist[", i, "]");
    const std::string& raw = cfg_.blocklist[i];
    BlockEntry e;
    std::string body;
    for (size_t p = 0; p < raw.size();) {
      if (is_space(raw[p])) {
        ++p;
        continue;
      }
      size_t q = p;
      while (q < raw.size() && !is_space(raw[q])) ++q;
      const std::string word = raw.substr(p, q - p);
      if (!e.text.empty()) {
        e.text += ' ';
        body += "\\s+";
      }
      e.text += word;
      body += RE2::QuoteMeta(word);
      p = q;
    }
    MOE_CHECK(!e.text.empty(), key, ": empty entry");
    MOE_CHECK(e.text.size() <= max_match(), key, ": entry '", e.text, "' is ", e.text.size(),
              " bytes, longer than max_hold - ", kHoldOverhead, " = ", max_match(),
              " (a stream could miss it); raise moderation.max_hold");
    e.pattern = "(?i:" + body + ")";
    e.re = compile_or_throw(e.pattern, key + ": entry '" + e.text + "'");
    e.left_word = is_word_char_at(e.text, 0);
    e.right_word = is_word_char_at(e.text, char_start_before(e.text, e.text.size(), 0));
    blocklist_.push_back(std::move(e));
  }
  std::stable_sort(blocklist_.begin(), blocklist_.end(),
                   [](const BlockEntry& a, const BlockEntry& b) { return a.text.size() > b.text.size(); });
  if (!blocklist_.empty()) {
    RE2::Options so = re2_options();
    so.set_max_mem(int64_t{64} << 20);
    blocklist_index_ = std::make_unique<BlockIndex>(so);
    for (const BlockEntry& b : blocklist_) {
      std::string error;
      MOE_CHECK(blocklist_index_->set.Add(b.pattern, &error) >= 0, "moderation.blocklist: entry '", b.text,
                "': ", error);
    }
    MOE_CHECK(blocklist_index_->set.Compile(), "moderation.blocklist: too large to compile");
  }
  if (cfg_.rules.empty()) return;
  combined_ = std::make_unique<RE2>(combined, re2_options());
  MOE_CHECK(combined_->ok(),
            "moderation.rules: the rules do not combine into one pattern: ", combined_->error());
}

Moderator::~Moderator() = default;
Moderator::Moderator(Moderator&&) noexcept = default;
Moderator& Moderator::operator=(Moderator&&) noexcept = default;

bool Moderator::match_blocklist(std::string_view t, size_t s, size_t endpos, size_t* e) const {
  const bool prev_word = s > 0 && is_word_char_at(t, char_start_before(t, s, 0));
  // No entry can start here: it would need a word boundary before s, or a non-word character at s.
  if (prev_word && is_word_char_at(t, s)) return false;
  std::vector<int> hits;
  RE2::Set::ErrorInfo info{};
  if (!blocklist_index_->set.Match(t.substr(s, endpos - s), &hits, &info)) {
    if (info.kind == RE2::Set::kNoError) return false;
    // The set's DFA ran out of memory: try every entry rather than let a blocked word through.
    hits.resize(blocklist_.size());
    for (size_t i = 0; i < hits.size(); ++i) hits[i] = static_cast<int>(i);
  }
  std::sort(hits.begin(), hits.end());
  for (const int i : hits) {
    const BlockEntry& b = blocklist_[static_cast<size_t>(i)];
    if (b.left_word && prev_word) continue;
    re2::StringPiece m;
    if (!b.re->Match(t, s, endpos, RE2::ANCHOR_START, &m, 1) || m.empty()) continue;
    const size_t end = s + m.size();
    if (b.right_word && is_word_char_at(t, end)) continue;
    *e = end;
    return true;
  }
  return false;
}

size_t Moderator::scan(std::string_view t, size_t p, size_t* from_io, bool final, Sink* sink) const {
  const size_t n = t.size();
  if (!enabled()) {
    const size_t end = final ? n : complete_prefix(t, p);
    sink->out->append(t.substr(p, end - p));
    *from_io = end;
    return end;
  }
  // Matches are searched in t[p, limit) (with all of t as context for \b, $ and the whole-word check), and
  // only accepted when they start before `safe`: from there on, a match of up to max_match() bytes plus the
  // character after it lies inside t, so more input cannot change which match wins.
  size_t limit = n, safe = n;
  if (!final) {
    const size_t complete = complete_prefix(t, p);
    if (complete <= p) return p;
    limit = char_start_before(t, complete, p);
    safe = limit >= p + max_match() ? boundary_at_or_before(t, limit - max_match(), p) : p;
  }
  size_t from = std::max(p, *from_io);
  // The next rule match [rs, re), searched from `searched`; still the next one while rs >= from (so that
  // many blocklist matches before a distant rule match do not search for it again each time).
  size_t rs = limit, re = limit, searched = limit + 1;
  const ModRule* rule = nullptr;
  while (from < limit) {
    if (searched > from || rs < from) {
      // Where the alternation of all rules first matches; the first rule matching there (the alternation's
      // preference) gives the end.
      rs = re = limit;
      rule = nullptr;
      searched = from;
      re2::StringPiece m;
      if (combined_ && combined_->Match(t, from, limit, RE2::UNANCHORED, &m, 1)) {
        rs = static_cast<size_t>(m.data() - t.data());
        for (size_t i = 0; i < rule_re_.size() && !rule; ++i) {
          if (rule_re_[i]->Match(t, rs, limit, RE2::ANCHOR_START, &m, 1)) {
            rule = &cfg_.rules[i];
            re = rs + m.size();
          }
        }
      }
    }
    // A blocklist match starting before it (a tie goes to the rule, unless its match is empty).
    size_t s = rs, e = re;
    bool blocked = false;
    if (blocklist_index_) {
      const size_t end = std::min(rule && re == rs ? rs + 1 : rs, safe);
      for (size_t q = from; q < end; q += char_len_at(t, q)) {
        if (match_blocklist(t, q, limit, &e)) {
          s = q;
          blocked = true;
          break;
        }
      }
    }
    if (!blocked) {
      if (!rule || (!final && rs >= safe)) {
        from = std::max(from, std::min(rs, safe));
        break;
      }
      if (re == rs) {  // empty match: ignored
        from = rs + char_len_at(t, rs);
        continue;
      }
    }
    const ModAction action = blocked ? cfg_.blocklist_action : rule->action;
    sink->out->append(t.substr(p, s - p));
    sink->events->push_back({blocked ? "blocklist" : rule->name, action});
    switch (action) {
      case ModAction::kFlag:
        sink->out->append(t.substr(s, e - s));
        break;
      case ModAction::kRedact:
        *sink->out += blocked ? cfg_.blocklist_replacement : rule->replacement;
        break;
      case ModAction::kStop:
        sink->stopped = true;
        return n;
    }
    p = from = e;
  }
  const size_t end = std::max(p, safe);
  sink->out->append(t.substr(p, end - p));
  *from_io = std::max(from, end);
  return end;
}

ModerationResult Moderator::moderate(std::string_view text) const {
  ModerationResult r;
  Sink sink{&r.text, &r.events};
  size_t from = 0;
  scan(text, 0, &from, true, &sink);
  r.stopped = sink.stopped;
  return r;
}

// ---- ModerationStream ------------------------------------------------------------------------------------

ModerationStream::ModerationStream(const Moderator& m) : m_(&m) {}

std::string ModerationStream::push(std::string_view delta) {
  std::string out;
  if (stopped_ || finished_) return out;
  buf_.append(delta);
  Moderator::Sink sink{&out, &events_};
  const size_t next = m_->scan(buf_, pos_, &from_, false, &sink);
  if (sink.stopped) {
    stopped_ = true;
    buf_.clear();
    pos_ = 0;
    return out;
  }
  // Keep 4 processed bytes as context: \b, ^ and the whole-word check look at most one character back, and
  // with the same 4 bytes they decide exactly as on the whole text, even on invalid UTF-8.
  const size_t ctx = next >= 4 ? next - 4 : 0;
  buf_.erase(0, ctx);
  pos_ = next - ctx;
  from_ -= ctx;
  return out;
}

std::string ModerationStream::finish() {
  std::string out;
  if (stopped_ || finished_) return out;
  finished_ = true;
  Moderator::Sink sink{&out, &events_};
  m_->scan(buf_, pos_, &from_, true, &sink);
  stopped_ = sink.stopped;
  buf_.clear();
  pos_ = 0;
  return out;
}

// ---- Configuration ---------------------------------------------------------------------------------------

namespace {

using nlohmann::json;

class ConfigReader {
 public:
  explicit ConfigReader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void bad(const std::string& key, const std::string& problem) const {
    fail(file_, ": ", key, ": ", problem);
  }

  void check_keys(const json& obj, const std::string& key, std::initializer_list<const char*> allowed) const {
    if (!obj.is_object()) bad(key, "expected an object");
    for (const auto& [k, v] : obj.items()) {
      if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return k == a; })) {
        std::string list;
        for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        bad(join(key, k), "unknown key (expected one of " + list + ")");
      }
    }
  }

  static std::string join(const std::string& key, const std::string& k) {
    return key.empty() ? k : key + "." + k;
  }

  std::string get_string(const json& v, const std::string& key) const {
    if (!v.is_string()) bad(key, "expected a string");
    return v.get<std::string>();
  }

  const json& get_array(const json& v, const std::string& key) const {
    if (!v.is_array()) bad(key, "expected an array");
    return v;
  }

  ModAction get_action(const json& v, const std::string& key) const {
    if (v.is_string()) {
      const std::string s = v.get<std::string>();
      if (s == "flag") return ModAction::kFlag;
      if (s == "redact") return ModAction::kRedact;
      if (s == "stop") return ModAction::kStop;
    }
    bad(key, "expected one of flag, redact, stop");
  }

  // name and pattern (required) and replacement (optional) of a rule object.
  void read_rule(const json& r, const std::string& key, std::string* name, std::string* pattern,
                 std::string* replacement) const {
    if (!r.contains("name")) bad(key, "missing key name");
    if (!r.contains("pattern")) bad(key, "missing key pattern");
    *name = get_string(r.at("name"), key + ".name");
    if (name->empty()) bad(key + ".name", "empty name");
    *pattern = get_string(r.at("pattern"), key + ".pattern");
    const std::string problem = pattern_problem(*pattern);
    if (!problem.empty()) bad(key + ".pattern", problem);
    if (r.contains("replacement")) *replacement = get_string(r.at("replacement"), key + ".replacement");
  }

  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

// Parses text, rejecting duplicate keys (nlohmann keeps the last one silently).
json parse_strict(const std::string& text, const ConfigReader& rd) {
  std::vector<std::set<std::string>> seen;
  std::string dup;
  const json::parser_callback_t cb = [&](int, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) {
      seen.emplace_back();
    } else if (ev == json::parse_event_t::object_end) {
      if (!seen.empty()) seen.pop_back();
    } else if (ev == json::parse_event_t::key && !seen.empty()) {
      const std::string k = parsed.get<std::string>();
      if (!seen.back().insert(k).second && dup.empty()) dup = k;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, cb);
  } catch (const json::exception& e) {
    fail(rd.file(), ": invalid JSON: ", e.what());
  }
  if (!dup.empty()) fail(rd.file(), ": duplicate key \"", dup, "\"");
  return j;
}

}  // namespace

FilterConfig load_filter_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open: ", std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(path, ": read error");
  const ConfigReader rd(path);
  const json j = parse_strict(ss.str(), rd);
  if (!j.is_object()) fail(path, ": expected a JSON object at the top level");
  rd.check_keys(j, "", {"redact", "keep_default_redaction", "moderation"});

  FilterConfig cfg;
  if (j.contains("keep_default_redaction")) {
    if (!j.at("keep_default_redaction").is_boolean())
      rd.bad("keep_default_redaction", "expected true or false");
    cfg.keep_default_redaction = j.at("keep_default_redaction").get<bool>();
  }
  if (j.contains("redact")) {
    const json& arr = rd.get_array(j.at("redact"), "redact");
    std::set<std::string> names;
    if (cfg.keep_default_redaction)
      for (const RedactRule& r : Redactor::default_rules()) names.insert(r.name);
    for (size_t i = 0; i < arr.size(); ++i) {
      const std::string key = str_cat("redact[", i, "]");
      rd.check_keys(arr[i], key, {"name", "pattern", "replacement"});
      RedactRule r;
      rd.read_rule(arr[i], key, &r.name, &r.pattern, &r.replacement);
      if (!names.insert(r.name).second)
        rd.bad(key + ".name",
               "duplicate rule name '" + r.name + "'" +
                   (cfg.keep_default_redaction ? " (default rules: ssn, email; set "
                                                 "keep_default_redaction to false to replace them)"
                                               : ""));
      cfg.redact.push_back(std::move(r));
    }
  }
  if (j.contains("moderation")) {
    const json& m = j.at("moderation");
    rd.check_keys(m, "moderation",
                  {"max_hold", "rules", "blocklist", "blocklist_action", "blocklist_replacement"});
    ModerationConfig& mc = cfg.moderation;
    if (m.contains("max_hold")) {
      const json& v = m.at("max_hold");
      if (!v.is_number_unsigned() || v.get<uint64_t>() < Moderator::kMinHold ||
          v.get<uint64_t>() > Moderator::kMaxHold)
        rd.bad("moderation.max_hold",
               str_cat("expected an integer in [", Moderator::kMinHold, ", ", Moderator::kMaxHold, "]"));
      mc.max_hold = static_cast<size_t>(v.get<uint64_t>());
    }
    if (m.contains("rules")) {
      const json& arr = rd.get_array(m.at("rules"), "moderation.rules");
      for (size_t i = 0; i < arr.size(); ++i) {
        const std::string key = str_cat("moderation.rules[", i, "]");
        rd.check_keys(arr[i], key, {"name", "pattern", "action", "replacement"});
        ModRule r;
        rd.read_rule(arr[i], key, &r.name, &r.pattern, &r.replacement);
        if (!arr[i].contains("action")) rd.bad(key, "missing key action");
        r.action = rd.get_action(arr[i].at("action"), key + ".action");
        mc.rules.push_back(std::move(r));
      }
    }
    if (m.contains("blocklist")) {
      const json& arr = rd.get_array(m.at("blocklist"), "moderation.blocklist");
      for (size_t i = 0; i < arr.size(); ++i)
        mc.blocklist.push_back(rd.get_string(arr[i], str_cat("moderation.blocklist[", i, "]")));
    }
    if (m.contains("blocklist_action"))
      mc.blocklist_action = rd.get_action(m.at("blocklist_action"), "moderation.blocklist_action");
    if (m.contains("blocklist_replacement"))
      mc.blocklist_replacement =
          rd.get_string(m.at("blocklist_replacement"), "moderation.blocklist_replacement");
  }
  // The remaining checks (duplicate names, blocklist entries) are the Moderator's; its messages name the key.
  try {
    Moderator check(cfg.moderation);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  return cfg;
}

std::vector<RedactRule> effective_redact_rules(const FilterConfig& cfg) {
  std::vector<RedactRule> rules;
  if (cfg.keep_default_redaction) rules = Redactor::default_rules();
  rules.insert(rules.end(), cfg.redact.begin(), cfg.redact.end());
  return rules;
}

}  // namespace moe::server

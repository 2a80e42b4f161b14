// Text filters for `moe serve`: redaction of prompts before they reach the model, and moderation of the
// generated text as it streams out. All patterns are RE2 (UTF-8, linear time in the input), so untrusted
// text can never make a filter backtrack exponentially.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace re2 {
class RE2;
}

namespace moe::server {

// ---- Input redaction ------------------------------------------------------------------------------------

struct RedactRule {
  std::string name;
  std::string pattern;                     // RE2 syntax
  std::string replacement = "[REDACTED]";  // literal text (no \1 substitution)
};

class Redactor {
 public:
  // Rules are compiled once (RE2, UTF-8). An invalid pattern, a pattern that matches the empty string, an
  // empty or duplicate name throws moe::Error naming the rule (and RE2's error).
  explicit Redactor(std::vector<RedactRule> rules);
  ~Redactor();
  Redactor(Redactor&&) noexcept;
  Redactor& operator=(Redactor&&) noexcept;

  // "ssn" (US SSN \b\d{3}-\d{2}-\d{4}\b) and "email" (ASCII addresses: local@domain.tld; internationalized
  // addresses are not covered, add a rule for them).
  static std::vector<RedactRule> default_rules();

  // Replaces every non-overlapping match of every rule, rules applied in order (rule i sees the output of
  // rule i-1). Empty matches are ignored. *counts (optional) is resized to rules().size() and gets the
  // per-rule match counts. Invalid UTF-8 in text is passed through, never an error.
  std::string redact(std::string_view text, std::vector<int64_t>* counts = nullptr) const;
  const std::vector<RedactRule>& rules() const { return rules_; }

 private:
  std::vector<RedactRule> rules_;
  std::vector<std::unique_ptr<re2::RE2>> compiled_;
};

// ---- Output moderation ----------------------------------------------------------------------------------

enum class ModAction { kFlag, kRedact, kStop };
const char* mod_action_name(ModAction a);  // "flag", "redact", "stop"

struct ModRule {
  std::string name;
  std::string pattern;  // RE2 syntax
  ModAction action = ModAction::kFlag;
  std::string replacement = "[REDACTED]";  // literal, used by kRedact
};

struct ModerationConfig {
  std::vector<ModRule> rules;
  // Words or phrases, matched case-insensitively (Unicode simple case folding) and as whole words: an entry
  // whose first (last) character is a letter, mark, digit or '_' only matches where the character before
  // (after) it is not one, so "ass" does not match inside "class". Whitespace inside a phrase matches any
  // run of whitespace.
  std::vector<std::string> blocklist;
  ModAction blocklist_action = ModAction::kRedact;
  size_t max_hold = 64;  // bytes a stream may hold back; must be in [Moderator::kMinHold, kMaxHold]
  std::string blocklist_replacement = "[REDACTED]";
};

struct ModerationEvent {
  std::string rule;  // the rule's name, or "blocklist"
  ModAction action;
};

struct ModerationResult {
  std::string text;
  std::vector<ModerationEvent> events;
  bool stopped = false;
};

// Matching semantics (one-shot and streaming alike): the text is scanned left to right; at each step the
// earliest match of any rule or blocklist entry wins; at the same start the rule listed first wins, rules
// win over the blocklist, and a longer blocklist entry over a shorter one. Matches do not overlap: the text
// a match covers is not searched again, so a flagged match also hides a stop or redact match starting
// inside it (keep flag patterns short). An empty rule match is ignored.
// kFlag passes the match through and records an event; kRedact replaces it by the replacement; kStop
// drops the text from the start of the match on and ends the output.
//
// Streaming limitation: a stream holds back at most max_hold bytes. A match of at most max_match() =
// max_hold - 10 bytes is always found exactly as in one-shot moderation (the other 10 bytes cover the
// character after a match, an incomplete UTF-8 sequence and rounding to a character boundary). A longer
// match can be missed, or cut short, where it crosses the hold boundary; a regex rule that can match more
// than max_match() bytes is therefore only best-effort when streaming. Blocklist entries longer than
// max_match() are rejected.
class Moderator {
 public:
  static constexpr size_t kMinHold = 16;
  static constexpr size_t kMaxHold = size_t{1} << 20;
  static constexpr size_t kHoldOverhead = 10;

  // Throws moe::Error naming the key ("moderation.rules[1].pattern: ...") on a bad pattern, a pattern
  // matching the empty string, an empty or duplicate name (or the reserved "blocklist"), an empty blocklist
  // entry or one longer than max_match(), or max_hold out of range.
  explicit Moderator(ModerationConfig cfg);
  ~Moderator();
  Moderator(Moderator&&) noexcept;
  Moderator& operator=(Moderator&&) noexcept;

  bool enabled() const { return !cfg_.rules.empty() || !cfg_.blocklist.empty(); }
  const ModerationConfig& config() const { return cfg_; }
  size_t max_match() const { return cfg_.max_hold - kHoldOverhead; }

  // Moderates a complete text at once (the reference the streaming output always equals, see above).
  ModerationResult moderate(std::string_view text) const;

 private:
  friend class ModerationStream;
  struct BlockEntry;
  struct Sink {
    std::string* out;
    std::vector<ModerationEvent>* events;
    bool stopped = false;
  };
  // Processes t[p, ...), where t[0, p) is already-processed context (at least 4 bytes of it, or all).
  // Appends the output to *sink and returns the first byte not yet processed. When final is false, t may
  // continue: only what no continuation can change is processed. *from (>= p) is where the search resumes:
  // candidates before it were already rejected for good; it is updated for the next call.
  size_t scan(std::string_view t, size_t p, size_t* from, bool final, Sink* sink) const;
  // The blocklist entry matching at s (whole-word, first in order) within t[.., endpos); false if none.
  bool match_blocklist(std::string_view t, size_t s, size_t endpos, size_t* e) const;

  ModerationConfig cfg_;
  // (?:rule0)|(?:rule1)|...: where the next rule match starts, in one DFA pass; which rule it is and where
  // it ends come from the rules' own patterns (the first one matching there is the alternation's choice).
  std::unique_ptr<re2::RE2> combined_;
  std::vector<std::unique_ptr<re2::RE2>> rule_re_;
  std::vector<BlockEntry> blocklist_;  // sorted by decreasing length
  struct BlockIndex;
  std::unique_ptr<BlockIndex> blocklist_index_;  // which entries match at a position, in one DFA pass
};

// One per response; not thread-safe. The Moderator must outlive it and stay where it is (not moved).
class ModerationStream {
 public:
  explicit ModerationStream(const Moderator& m);

  // Feeds a delta (any bytes; a UTF-8 character may be split across deltas). Returns the text now safe to
  // emit (possibly empty); it never ends inside a UTF-8 character of valid input. After a stop, returns "".
  std::string push(std::string_view delta);
  // End of generation: returns the rest. Further pushes return "".
  std::string finish();

  // A kStop rule matched: the caller ends the stream (finish_reason "content_filter").
  bool stopped() const { return stopped_; }
  const std::vector<ModerationEvent>& events() const { return events_; }
  // Input bytes received but not yet emitted or dropped; never more than max_hold after push returns.
  size_t held_bytes() const { return buf_.size() - pos_; }

 private:
  const Moderator* m_;
  std::string buf_;  // buf_[0, pos_) is context (up to 4 processed bytes), then the held text
  size_t pos_ = 0;
  size_t from_ = 0;  // search resume position in buf_
  bool stopped_ = false;
  bool finished_ = false;
  std::vector<ModerationEvent> events_;
};

// ---- Configuration --------------------------------------------------------------------------------------

struct FilterConfig {
  std::vector<RedactRule> redact;
  ModerationConfig moderation;
  bool keep_default_redaction = true;
};

// Reads a JSON file:
//   {"redact": [{"name": .., "pattern": .., "replacement": ..}], "keep_default_redaction": true,
//    "moderation": {"max_hold": 64, "rules": [{"name": .., "pattern": .., "action": "flag|redact|stop",
//                   "replacement": ..}], "blocklist": ["..."], "blocklist_action": "redact",
//                   "blocklist_replacement": "[REDACTED]"}}
// Every key is optional except a rule's name and pattern, and a moderation rule's action. Strict: an unknown
// or duplicate key, a wrong type, a bad value or a pattern RE2 rejects throws moe::Error "<path>: <key>:
// <problem>", e.g. "filters.json: moderation.rules[1].action: expected one of flag, redact, stop".
FilterConfig load_filter_config(const std::string& path);

// The redaction rules to use: the defaults (when kept) followed by the configured ones.
std::vector<RedactRule> effective_redact_rules(const FilterConfig& cfg);

}  // namespace moe::server

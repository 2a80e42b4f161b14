#include "server/filters.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "core/error.h"
#include "testdata.h"

namespace moe::server {
namespace {

using test::error_of;

// Independent UTF-8 validator (RFC 3629: no overlongs, no surrogates, max U+10FFFF).
bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (b < 0x80) {
      ++i;
      continue;
    } else if (b >= 0xC2 && b <= 0xDF) {
      n = 2, cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
      n = 3, cp = b & 0x0F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      n = 4, cp = b & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n;
  }
  return true;
}

ModerationConfig rules_only(std::vector<ModRule> rules) {
  ModerationConfig c;
  c.rules = std::move(rules);
  return c;
}

// CPU time of this thread: unlike wall time, not inflated by other processes on a loaded machine.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// ---- Redaction -------------------------------------------------------------------------------------------

TEST(ServerRedact, DefaultRulesInVariousPositions) {
  const Redactor r(Redactor::default_rules());
  EXPECT_EQ(r.redact("123-45-6789"), "[REDACTED]");
  EXPECT_EQ(r.redact("SSN: 123-45-6789."), "SSN: [REDACTED].");
  EXPECT_EQ(r.redact("123-45-6789 is mine"), "[REDACTED] is mine");
  EXPECT_EQ(r.redact("(078-05-1120)"), "([REDACTED])");
  EXPECT_EQ(r.redact("alice@example.com"), "[REDACTED]");
  EXPECT_EQ(r.redact("Mail bob.smith+tag@mail.example.co.uk, thanks"), "Mail [REDACTED], thanks");
  EXPECT_EQ(r.redact("<x_y%z@sub-domain.example.org>"), "<[REDACTED]>");
  EXPECT_EQ(r.redact("end: a@b.io."), "end: [REDACTED].");
}

TEST(ServerRedact, NonMatchesAreUntouched) {
  const Redactor r(Redactor::default_rules());
  for (const char* s :
       {"1234-56-7890", "123-456-7890", "123-45-67890", "a123-45-6789", "123-45-6789x", "12-345-6789",
        "123 45 6789", "user@localhost", "@example.com", "name@.com", "a@b.c", ""}) {
    std::vector<int64_t> counts;
    EXPECT_EQ(r.redact(s, &counts), s);
    EXPECT_EQ(counts, (std::vector<int64_t>{0, 0})) << s;
  }
}

TEST(ServerRedact, MultipleMatchesAndCounts) {
  const Redactor r(Redactor::default_rules());
  std::vector<int64_t> counts;
  EXPECT_EQ(r.redact("a 111-22-3333 b 444-55-6666,777-88-9999 c x@y.org d p.q@r.net", &counts),
            "a [REDACTED] b [REDACTED],[REDACTED] c [REDACTED] d [REDACTED]");
  EXPECT_EQ(counts, (std::vector<int64_t>{3, 2}));
}

TEST(ServerRedact, UnicodeAroundMatches) {
  const Redactor r(Redactor::default_rules());
  const std::string out = r.redact("请联系alice@example.com谢谢，号码：123-45-6789。Ünïcödé 😀987-65-4321😀");
  EXPECT_EQ(out, "请联系[REDACTED]谢谢，号码：[REDACTED]。Ünïcödé 😀[REDACTED]😀");
  EXPECT_TRUE(valid_utf8(out));
  // Invalid UTF-8 passes through unchanged around a match instead of failing.
  EXPECT_EQ(r.redact("\xff\xfe 123-45-6789 \xc3"), "\xff\xfe [REDACTED] \xc3");
}

TEST(ServerRedact, RulesApplyInOrderWithLiteralReplacement) {
  const Redactor r({{"cat", "cat", "dog"}, {"dog", "(d)og", "\\1<$0>"}});
  std::vector<int64_t> counts;
  EXPECT_EQ(r.redact("cat dog catalog", &counts), "\\1<$0> \\1<$0> \\1<$0>alog");
  EXPECT_EQ(counts, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(r.rules().size(), 2u);
}

// The SSN rule against a plain C++ matcher of the same specification on random strings.
TEST(ServerRedact, SsnMatchesIndependentReference) {
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  auto reference = [&](const std::string& s) {
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
      bool m = i + 11 <= s.size() && (i == 0 || !word(s[i - 1])) && (i + 11 == s.size() || !word(s[i + 11]));
      for (size_t k = 0; m && k < 11; ++k)
        m = (k == 3 || k == 6) ? s[i + k] == '-' : std::isdigit(static_cast<unsigned char>(s[i + k])) != 0;
      if (m) {
        out += "[REDACTED]";
        i += 11;
      } else {
        out += s[i++];
      }
    }
    return out;
  };
  const Redactor r({Redactor::default_rules()[0]});
  std::mt19937 rng(7);
  const std::string alphabet = "0123456789----  a_.\xc3\xa9";
  int matched = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s;
    const int len = static_cast<int>(rng() % 40);
    for (int k = 0; k < len; ++k) s += alphabet[rng() % alphabet.size()];
    if (rng() % 2) s.insert(rng() % (s.size() + 1), "123-45-6789");
    const std::string want = reference(s);
    matched += want != s;
    ASSERT_EQ(r.redact(s), want) << s;
  }
  EXPECT_GT(matched, 300);  // the generator does exercise matches
}

TEST(ServerRedact, BadRulesNameTheRule) {
  std::string e = error_of([] { Redactor r({{"ok", "a"}, {"broken", "(abc"}}); });
  EXPECT_NE(e.find("redact rule 'broken'"), std::string::npos) << e;
  EXPECT_NE(e.find("missing )"), std::string::npos) << e;  // RE2's own message
  e = error_of([] { Redactor r(std::vector<RedactRule>{{"empty", "x*"}}); });
  EXPECT_NE(e.find("'empty': pattern matches the empty string"), std::string::npos) << e;
  e = error_of([] { Redactor r({{"a", "x"}, {"a", "y"}}); });
  EXPECT_NE(e.find("'a': duplicate name"), std::string::npos) << e;
  e = error_of([] {
    Redactor r(std::vector<RedactRule>{{"backref", "(a)\\1"}});
  });  // RE2 has no backreferences
  EXPECT_NE(e.find("'backref': invalid pattern"), std::string::npos) << e;
}

TEST(ServerRedact, PathologicalInputIsLinear) {
  const std::string text(100 * 1024, 'a');
  const double t0 = thread_cpu_seconds();
  const Redactor r({{"evil", "(a+)+b"}, {"evil2", "(a|aa)*c"}, {"evil3", "(.*a){12}x"}});
  std::vector<int64_t> counts;
  EXPECT_EQ(r.redact(text, &counts), text);
  EXPECT_EQ(counts, (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(r.redact(text + "b"), "[REDACTED]");
  // CPU seconds; a backtracking engine would take longer than the age of the universe.
  EXPECT_LT(thread_cpu_seconds() - t0, 2.0);
}

// ---- Moderation ------------------------------------------------------------------------------------------

ModerationConfig basic_config() {
  ModerationConfig c;
  c.rules = {{"stopword", "secret", ModAction::kStop},
             {"ssn", R"(\b\d{3}-\d{2}-\d{4}\b)", ModAction::kRedact, "<ssn>"},
             {"number", R"(\b\d{2,6}\b)", ModAction::kFlag}};
  c.blocklist = {"ass", "bad  word", "école", "中文"};
  c.blocklist_action = ModAction::kRedact;
  return c;
}

TEST(ServerModeration, BlocklistIsCaseInsensitiveAndWholeWord) {
  const Moderator m(basic_config());
  for (const char* s : {"class", "passé", "assess", "Bass", "éass", "assé", "ass_", "_ass", "ass1", "écoles",
                        "bad wordy", "xbad word", "中文字"}) {
    // "中文字": CJK ideographs are letters, so "中文" is inside a longer word here.
    const ModerationResult r = m.moderate(s);
    EXPECT_EQ(r.text, s);
    EXPECT_TRUE(r.events.empty()) << s;
  }
  EXPECT_EQ(m.moderate("ASS").text, "[REDACTED]");
  EXPECT_EQ(m.moderate("You Ass!").text, "You [REDACTED]!");
  EXPECT_EQ(m.moderate("an ass, an aSs.").text, "an [REDACTED], an [REDACTED].");
  EXPECT_EQ(m.moderate("a BAD \n Word here").text, "a [REDACTED] here");
  EXPECT_EQ(m.moderate("L'ÉCOLE est").text, "L'[REDACTED] est");
  EXPECT_EQ(m.moderate("说中文。").text, "说中文。");  // "说" is a letter: not a whole word
  EXPECT_EQ(m.moderate("说 中文。").text, "说 [REDACTED]。");
  const ModerationResult r = m.moderate("ass ass");
  EXPECT_EQ(r.text, "[REDACTED] [REDACTED]");
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].rule, "blocklist");
  EXPECT_EQ(r.events[0].action, ModAction::kRedact);
}

TEST(ServerModeration, BlocklistEdgesThatAreNotWordCharacters) {
  ModerationConfig c;
  c.blocklist = {"#1", "c#", "ab"};
  c.blocklist_action = ModAction::kRedact;
  c.max_hold = 16;
  const Moderator m(c);
  // Only a word-character edge needs a boundary: "c#" may be followed by a letter, not preceded by one.
  EXPECT_EQ(m.moderate("x#1 c#x xc# ab #12").text, "x[REDACTED] [REDACTED]x xc# [REDACTED] #12");
  // A longer entry that fails the boundary check falls back to a shorter one at the same position.
  const Moderator m2({{}, {"ab", "ab cd"}, ModAction::kFlag, 16});
  const ModerationResult r = m2.moderate("ab cde");
  EXPECT_EQ(r.text, "ab cde");
  ASSERT_EQ(r.events.size(), 1u);
}

TEST(ServerModeration, FlagRedactAndStop) {
  const Moderator m(basic_config());
  ModerationResult r = m.moderate("call 555-12-3456 at 42 or 7 or 1234567 or 777");
  EXPECT_EQ(r.text, "call <ssn> at 42 or 7 or 1234567 or 777");
  ASSERT_EQ(r.events.size(), 3u);
  EXPECT_EQ(r.events[0].rule, "ssn");
  EXPECT_EQ(r.events[1].rule, "number");
  EXPECT_EQ(r.events[1].action, ModAction::kFlag);
  EXPECT_FALSE(r.stopped);

  r = m.moderate("the secret is 42 ass");
  EXPECT_EQ(r.text, "the ");
  EXPECT_TRUE(r.stopped);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].rule, "stopword");
  EXPECT_EQ(r.events[0].action, ModAction::kStop);
  EXPECT_STREQ(mod_action_name(ModAction::kStop), "stop");
}

TEST(ServerModeration, TiesGoToTheRuleAndEarliestMatchWins) {
  ModerationConfig c =
      rules_only({{"word", "darn", ModAction::kFlag}, {"long", "darn it all", ModAction::kStop}});
  c.blocklist = {"darn", "it"};
  const Moderator m(c);
  // At the same start the first rule wins over later rules and the blocklist; later starts come later.
  const ModerationResult r = m.moderate("darn it all");
  EXPECT_EQ(r.text, "darn [REDACTED] all");
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].rule, "word");
  EXPECT_EQ(r.events[1].rule, "blocklist");
}

TEST(ServerModeration, PathologicalInputIsLinear) {
  const std::string text(100 * 1024, 'a');
  const double t0 = thread_cpu_seconds();
  const Moderator m(rules_only({{"evil", "(a+)+b", ModAction::kStop}}));
  ModerationStream st(m);
  std::string out;
  for (size_t i = 0; i < text.size(); i += 1000) out += st.push(std::string_view(text).substr(i, 1000));
  out += st.finish();
  EXPECT_EQ(out, text);
  // Many blocklist matches before a distant rule match: the rule is not searched for again after each.
  ModerationConfig c = rules_only({{"far", "[yz][yz]q", ModAction::kFlag}});
  c.blocklist = {"ass"};
  std::string many;
  for (int i = 0; i < 40000; ++i) many += "ass ";
  const ModerationResult mr = Moderator(c).moderate(many + "yzq");
  EXPECT_EQ(mr.events.size(), 40001u);
  EXPECT_EQ(mr.text.size(), 40000 * std::string("[REDACTED] ").size() + 3);
  EXPECT_LT(thread_cpu_seconds() - t0, 2.0);  // CPU seconds; quadratic search took about 10
}

TEST(ServerModeration, LargeBlocklistStreamsQuickly) {
  std::mt19937 rng(5);
  auto word = [&] {
    std::string w;
    for (int k = 0, n = 3 + static_cast<int>(rng() % 8); k < n; ++k) w += static_cast<char>('a' + rng() % 26);
    return w;
  };
  ModerationConfig c;
  for (int i = 0; i < 1000; ++i) c.blocklist.push_back(word());
  std::string text;
  while (text.size() < 20000) text += (rng() % 50 == 0 ? c.blocklist[rng() % 1000] : word()) + " ";
  const double t0 = thread_cpu_seconds();
  const Moderator m(c);
  ModerationStream s(m);
  std::string out;
  for (size_t i = 0; i < text.size(); i += 4) out += s.push(std::string_view(text).substr(i, 4));
  out += s.finish();
  const double sec = thread_cpu_seconds() - t0;
  EXPECT_EQ(out, m.moderate(text).text);
  EXPECT_GT(s.events().size(), 40u);
  EXPECT_LT(sec, 3.0);  // CPU seconds (ASan); searching each entry at each position took minutes
}

TEST(ServerModeration, StopWithholdsTextInAStream) {
  const Moderator m(basic_config());
  const std::string text =
      "abc def ghi jkl mno the sec"
      "ret plan is here, more text";
  for (size_t piece = 1; piece <= 7; ++piece) {
    ModerationStream s(m);
    std::string out;
    for (size_t i = 0; i < text.size(); i += piece) {
      out += s.push(std::string_view(text).substr(i, piece));
      EXPECT_EQ(out.find("sec"), std::string::npos) << "leaked before the stop was decided: " << out;
    }
    out += s.finish();
    EXPECT_EQ(out, "abc def ghi jkl mno the ");
    EXPECT_TRUE(s.stopped());
    EXPECT_EQ(s.push("more"), "");
    EXPECT_EQ(s.finish(), "");
    ASSERT_EQ(s.events().size(), 1u);
    EXPECT_EQ(s.events()[0].rule, "stopword");
  }
}

TEST(ServerModeration, PhraseSplitAcrossDeltasIsCaught) {
  const Moderator m(basic_config());
  ModerationStream s(m);
  std::string out = s.push("this is a bad w");
  EXPECT_EQ(out.find("bad"), std::string::npos);
  out += s.push("ord indeed; ");
  out += s.push("an a");
  out += s.push("ss");
  EXPECT_EQ(out.find("ass"), std::string::npos);  // could still be "assess"
  out += s.push("ess");
  out += s.finish();
  EXPECT_EQ(out, "this is a [REDACTED] indeed; an assess");
}

TEST(ServerModeration, StreamHoldsBackOnlyWhatItMust) {
  const Moderator m(basic_config());
  ModerationStream s(m);
  const std::string text(200, 'x');
  // ASCII: max_match() bytes stay held, plus the one character after them (a match's right context).
  const size_t held = m.max_match() + 1;
  EXPECT_EQ(s.push(text), text.substr(0, 200 - held));
  EXPECT_EQ(s.held_bytes(), held);
  // The character after is now 3 bytes long: the hold grows by 2 (still within max_hold).
  EXPECT_EQ(s.push("中"), "x");
  EXPECT_EQ(s.held_bytes(), held + 2);
  EXPECT_EQ(s.finish(), text.substr(201 - held) + "中");
  // Disabled: only an incomplete UTF-8 character is held back.
  const Moderator off({});
  EXPECT_FALSE(off.enabled());
  ModerationStream t(off);
  EXPECT_EQ(t.push("ab\xe4\xb8"), "ab");
  EXPECT_EQ(t.push("\xad"
                   "c"),
            "\xe4\xb8\xad"
            "c");
  EXPECT_EQ(t.finish(), "");
}

// Concatenated stream output equals one-shot moderation for random texts and random splits (also inside
// multibyte characters); every emitted piece is valid UTF-8 and the hold never exceeds max_hold.
void check_stream_property(const Moderator& m, const std::vector<std::string>& tokens, bool valid_text,
                           uint32_t seed, int iters) {
  std::mt19937 rng(seed);
  int stops = 0, events = 0;
  for (int iter = 0; iter < iters; ++iter) {
    std::string text;
    const int n = static_cast<int>(rng() % 60);
    for (int k = 0; k < n; ++k) text += tokens[rng() % tokens.size()];
    const ModerationResult want = m.moderate(text);
    ModerationStream s(m);
    std::string got;
    for (size_t i = 0; i < text.size();) {
      const size_t len = std::min<size_t>(text.size() - i, rng() % 3 == 0 ? rng() % 40 : rng() % 5);
      const std::string piece = s.push(std::string_view(text).substr(i, len));
      i += len;
      if (valid_text) {
        ASSERT_TRUE(valid_utf8(piece)) << text;
      }
      ASSERT_LE(s.held_bytes(), m.config().max_hold);
      got += piece;
    }
    got += s.finish();
    ASSERT_EQ(got, want.text) << "text: " << text;
    ASSERT_EQ(s.stopped(), want.stopped) << text;
    ASSERT_EQ(s.events().size(), want.events.size()) << text;
    for (size_t k = 0; k < want.events.size(); ++k) ASSERT_EQ(s.events()[k].rule, want.events[k].rule);
    stops += want.stopped;
    events += static_cast<int>(want.events.size());
  }
  EXPECT_GT(stops, 0);
  EXPECT_GT(events, iters);
}

const std::vector<std::string> kTokens = {
    " ",    " ",           "a",  "x",    "ass",  "Ass",  "cl",    "é",     "É",     "中",
    "中文", "😀",           "\n", "bad",  "word", "BAD ", "école", "1",     "23",    "456",
    "-",    "123-45-6789", "se", "cret", ".",    ",",    "_",     "ÉCOLE", "sécret"};

TEST(ServerModeration, StreamEqualsOneShotForEverySplit) {
  check_stream_property(Moderator(basic_config()), kTokens, true, 1, 1500);
  // A small hold: matches up to max_match() = 6 bytes.
  ModerationConfig small;
  small.max_hold = 16;
  small.rules = {{"stop", "sec", ModAction::kStop},
                 {"num", R"(\d{1,3})", ModAction::kRedact, "#"},
                 {"f", R"(\bx+\b)", ModAction::kFlag}};
  small.blocklist = {"ass", "中文", "école"};
  check_stream_property(Moderator(small), kTokens, true, 2, 1500);
}

TEST(ServerModeration, StreamEqualsOneShotOnInvalidUtf8) {
  std::vector<std::string> tokens = kTokens;
  for (const char* b : {"\xff", "\x80", "\xc3", "\xe4\xb8", "\xf0\x9f", "\xed\xa0\x80", "\xc0\xaf"})
    tokens.push_back(b);
  check_stream_property(Moderator(basic_config()), tokens, false, 3, 800);
}

// ---- Configuration ---------------------------------------------------------------------------------------

class ServerModerationConfig {
 public:
  ServerModerationConfig() {
    dir_ = std::filesystem::temp_directory_path() / ("moe_filters_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  ~ServerModerationConfig() { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& json) const {
    const std::string p = (dir_ / "filters.json").string();
    std::ofstream(p) << json;
    return p;
  }
  std::string error(const std::string& json) const {
    const std::string p = write(json);
    return error_of([&] { load_filter_config(p); });
  }

 private:
  std::filesystem::path dir_;
};

TEST(ServerModeration, ConfigLoads) {
  const ServerModerationConfig t;
  const FilterConfig c = load_filter_config(t.write(R"({
    "redact": [{"name": "phone", "pattern": "\\d{3}-\\d{4}", "replacement": "<phone>"}, {"name": "k", "pattern": "key-\\w+"}],
    "keep_default_redaction": true,
    "moderation": {"max_hold": 128,
      "rules": [{"name": "s", "pattern": "(?i)forbidden", "action": "stop"},
                {"name": "f", "pattern": "maybe", "action": "flag", "replacement": "?"}],
      "blocklist": ["darn", "heck it"], "blocklist_action": "stop", "blocklist_replacement": "***"}})"));
  ASSERT_EQ(c.redact.size(), 2u);
  EXPECT_EQ(c.redact[0].replacement, "<phone>");
  EXPECT_EQ(c.redact[1].replacement, "[REDACTED]");
  EXPECT_TRUE(c.keep_default_redaction);
  EXPECT_EQ(c.moderation.max_hold, 128u);
  ASSERT_EQ(c.moderation.rules.size(), 2u);
  EXPECT_EQ(c.moderation.rules[0].action, ModAction::kStop);
  EXPECT_EQ(c.moderation.rules[1].action, ModAction::kFlag);
  EXPECT_EQ(c.moderation.blocklist, (std::vector<std::string>{"darn", "heck it"}));
  EXPECT_EQ(c.moderation.blocklist_action, ModAction::kStop);
  const Redactor r(effective_redact_rules(c));
  EXPECT_EQ(r.redact("555-1234 a@b.com 123-45-6789 key-abc"), "<phone> [REDACTED] [REDACTED] [REDACTED]");
  const Moderator m(c.moderation);
  EXPECT_EQ(m.moderate("well FORBIDDEN").text, "well ");

  const FilterConfig empty = load_filter_config(t.write("{}"));
  EXPECT_TRUE(empty.keep_default_redaction);
  EXPECT_FALSE(Moderator(empty.moderation).enabled());
  EXPECT_EQ(effective_redact_rules(empty).size(), 2u);
  const FilterConfig nodef = load_filter_config(
      t.write(R"({"keep_default_redaction": false, "redact": [{"name": "email", "pattern": "@"}]})"));
  EXPECT_EQ(effective_redact_rules(nodef).size(), 1u);
}

TEST(ServerModeration, ConfigErrorsNameTheKey) {
  const ServerModerationConfig t;
  auto expect_error = [&](const std::string& json, const std::string& want) {
    const std::string e = t.error(json);
    EXPECT_NE(e.find("filters.json: " + want), std::string::npos) << "got: " << e << "\nwant: " << want;
  };
  expect_error(R"({"moderation": {"rules": [{"name": "a", "pattern": "x", "action": "stop"},
                 {"name": "b", "pattern": "y", "action": "block"}]}})",
               "moderation.rules[1].action: expected one of flag, redact, stop");
  expect_error(R"({"redact": [{"name": "a", "pattern": "(x"}]})",
               "redact[0].pattern: invalid pattern: missing )");
  expect_error(R"({"redact": [{"name": "a", "pattern": "x?"}]})",
               "redact[0].pattern: pattern matches the empty string");
  expect_error(R"({"redact": [{"name": "a", "patern": "x"}]})", "redact[0].patern: unknown key");
  expect_error(R"({"redact": [{"name": "a"}]})", "redact[0]: missing key pattern");
  expect_error(R"({"redact": [{"name": 3, "pattern": "x"}]})", "redact[0].name: expected a string");
  expect_error(R"({"redact": [{"name": "email", "pattern": "x"}]})",
               "redact[0].name: duplicate rule name 'email'");
  expect_error(R"({"redact": {"name": "a"}})", "redact: expected an array");
  expect_error(R"({"redact": ["x"]})", "redact[0]: expected an object");
  expect_error(R"({"keep_default_redaction": "yes"})", "keep_default_redaction: expected true or false");
  expect_error(R"({"moderaton": {}})", "moderaton: unknown key");
  expect_error(R"({"moderation": {"max_hold": 8}})",
               "moderation.max_hold: expected an integer in [16, 1048576]");
  expect_error(R"({"moderation": {"max_hold": -1}})", "moderation.max_hold: expected an integer");
  expect_error(R"({"moderation": {"max_hold": 64.5}})", "moderation.max_hold: expected an integer");
  expect_error(R"({"moderation": {"blocklist": ["ok", 5]}})", "moderation.blocklist[1]: expected a string");
  expect_error(R"({"moderation": {"blocklist": ["ok", "  "]}})", "moderation.blocklist[1]: empty entry");
  expect_error(R"({"moderation": {"max_hold": 16, "blocklist": ["longword"]}})",
               "moderation.blocklist[0]: entry 'longword' is 8 bytes, longer than max_hold - 10 = 6");
  expect_error(R"({"moderation": {"blocklist_action": 1}})",
               "moderation.blocklist_action: expected one of flag, redact, stop");
  expect_error(R"({"moderation": {"rules": [{"name": "a", "pattern": "x", "action": "flag"},
                 {"name": "a", "pattern": "y", "action": "flag"}]}})",
               "moderation.rules[1].name: duplicate rule name 'a'");
  expect_error(R"({"moderation": {"rules": [{"name": "blocklist", "pattern": "x", "action": "flag"}]}})",
               "moderation.rules[0].name: \"blocklist\" is reserved");
  expect_error(R"({"moderation": {"max_hold": 64, "max_hold": 32}})", "duplicate key \"max_hold\"");
  expect_error(R"({"redact": [}])", "invalid JSON");
  expect_error("[1, 2]", "expected a JSON object at the top level");
  const std::string missing = error_of([] { load_filter_config("/nonexistent/filters.json"); });
  EXPECT_NE(missing.find("/nonexistent/filters.json: cannot open"), std::string::npos) << missing;
}

TEST(ServerModeration, BadRulesNameTheKey) {
  std::string e = error_of([] {
    Moderator m(rules_only({{"ok", "a", ModAction::kFlag}, {"bad", "[z-a]", ModAction::kStop}}));
  });
  EXPECT_NE(e.find("moderation.rules[1].pattern: rule 'bad': invalid pattern"), std::string::npos) << e;
  EXPECT_NE(e.find("invalid character class range: z-a"), std::string::npos) << e;
  e = error_of([] { Moderator m({{}, {"x", ""}}); });
  EXPECT_NE(e.find("moderation.blocklist[1]: empty entry"), std::string::npos) << e;
  // Inline flags stay inside their rule: (?i) of rule "a" must not make rule "b" case-insensitive.
  const Moderator m(rules_only({{"a", "(?i)foo", ModAction::kFlag}, {"b", "bar", ModAction::kRedact}}));
  EXPECT_EQ(m.moderate("FOO BAR bar").text, "FOO BAR [REDACTED]");
  // Capture groups inside rules do not shift which rule is reported.
  const Moderator g(rules_only({{"a", "(x)(y)", ModAction::kFlag}, {"b", "(z)", ModAction::kRedact}}));
  const ModerationResult r = g.moderate("z xy");
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].rule, "b");
  EXPECT_EQ(r.events[1].rule, "a");
  EXPECT_EQ(r.text, "[REDACTED] xy");
}

}  // namespace
}  // namespace moe::server

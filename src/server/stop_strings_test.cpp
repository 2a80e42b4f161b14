#include "server/stop_strings.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "core/error.h"

namespace moe::server {
namespace {

struct StopResult {
  std::string text;
  bool stopped = false;
};

// The definition, applied directly: walk the end positions and cut at the first one where a stop string ends
// (the longest if several end there).
StopResult reference_stop(const std::string& text, const std::vector<std::string>& stops) {
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t longest = 0;
    for (const auto& s : stops)
      if (s.size() <= end && s.size() > longest && text.compare(end - s.size(), s.size(), s) == 0)
        longest = s.size();
    if (longest > 0) return {text.substr(0, end - longest), true};
  }
  return {text, false};
}

StopResult run_split(const std::string& text, const std::vector<std::string>& stops,
                     const std::vector<size_t>& cuts) {
  StopMatcher m(stops);
  StopResult r;
  size_t from = 0;
  for (size_t cut : cuts) {
    r.text += m.push(std::string_view(text).substr(from, cut - from));
    from = cut;
  }
  r.text += m.push(std::string_view(text).substr(from));
  r.text += m.finish();
  r.stopped = m.stopped();
  return r;
}

std::vector<size_t> random_cuts(size_t n, std::mt19937& rng) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < n; ++i)
    if (std::uniform_int_distribution<int>(0, 2)(rng) == 0) cuts.push_back(i);
  return cuts;
}

TEST(ServerStopStrings, StopSpanningDeltas) {
  StopMatcher m({"</s>", "\nUser:"});
  EXPECT_EQ(m.push("The answer"), "The answer");
  EXPECT_EQ(m.push(" is 4.</"), " is 4.");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.push("s"), "");
  EXPECT_EQ(m.push(">ignored"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.push("more"), "");
  EXPECT_EQ(m.finish(), "");
}

TEST(ServerStopStrings, HeldPrefixReleasedWhenItDiverges) {
  StopMatcher m({"</s>"});
  EXPECT_EQ(m.push("a</"), "a");
  EXPECT_EQ(m.push("b"), "</b");
  EXPECT_EQ(m.push("x</s"), "x");
  EXPECT_EQ(m.finish(), "</s");
  EXPECT_FALSE(m.stopped());
}

TEST(ServerStopStrings, OverlappingStops) {
  // "ab" is complete before "abc" can be.
  EXPECT_EQ(run_split("xabcd", {"ab", "abc"}, {}).text, "x");
  EXPECT_EQ(run_split("xabcd", {"abc", "ab"}, {2, 3}).text, "x");
  // "b" ends before "abc" does, even though "abc" starts earlier.
  EXPECT_EQ(run_split("abc", {"abc", "b"}, {}).text, "a");
  // Both end at the same byte: the longer one is removed.
  EXPECT_EQ(run_split("xabc", {"bc", "abc"}, {}).text, "x");
  EXPECT_EQ(run_split("xabc", {"bc", "abc"}, {1, 2, 3}).text, "x");
  // A stop string overlapping itself.
  EXPECT_EQ(run_split("aaab", {"aab"}, {1, 2, 3}).text, "a");
}

TEST(ServerStopStrings, StopAtStart) {
  StopMatcher m({"Hello"});
  EXPECT_EQ(m.push("Hel"), "");
  EXPECT_EQ(m.push("lo world"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.finish(), "");
  const StopResult r = run_split("\n\nrest", {"\n"}, {});
  EXPECT_EQ(r.text, "");
  EXPECT_TRUE(r.stopped);
}

TEST(ServerStopStrings, NoStopsPassThrough) {
  StopMatcher m({});
  EXPECT_EQ(m.push("anything </s>"), "anything </s>");
  EXPECT_EQ(m.finish(), "");
  EXPECT_FALSE(m.stopped());
}

TEST(ServerStopStrings, MultibyteStopsKeepCharactersWhole) {
  // "。" is E3 80 82 and "』" E3 80 8F: the shared prefix E3 80 is held, never a partial character emitted.
  StopMatcher m({"。\n", "』"});
  EXPECT_EQ(m.push("日本"), "日本");
  EXPECT_EQ(m.push("語。"), "語");
  EXPECT_EQ(m.push("x"), "。x");
  EXPECT_EQ(m.push("終わり。\n次"), "終わり");
  EXPECT_TRUE(m.stopped());
}

TEST(ServerStopStrings, EmptyStopIsAnError) {
  try {
    StopMatcher m({"ok", ""});
    FAIL() << "no error";
  } catch (const moe::Error& e) {
    EXPECT_STREQ(e.what(), "stop string 1 is empty");
  }
}

TEST(ServerStopStrings, RandomSplitsMatchDefinition) {
  std::mt19937 rng(7);
  const std::string alphabet = "ab</>";
  auto random_string = [&](size_t min_len, size_t max_len) {
    std::string s(std::uniform_int_distribution<size_t>(min_len, max_len)(rng), ' ');
    for (char& c : s) c = alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)];
    return s;
  };
  int stopped = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<std::string> stops;
    const int n_stops = std::uniform_int_distribution<int>(1, 5)(rng);
    for (int i = 0; i < n_stops; ++i) stops.push_back(random_string(1, 4));
    const std::string text = random_string(0, 30);
    const StopResult want = reference_stop(text, stops);
    stopped += want.stopped;
    for (int rep = 0; rep < 3; ++rep) {
      const StopResult got = run_split(text, stops, random_cuts(text.size(), rng));
      ASSERT_EQ(got.text, want.text) << "text " << text << " first stop " << stops[0];
      ASSERT_EQ(got.stopped, want.stopped) << text;
    }
    std::vector<size_t> every_byte;
    for (size_t i = 1; i < text.size(); ++i) every_byte.push_back(i);
    ASSERT_EQ(run_split(text, stops, every_byte).text, want.text) << text;
  }
  // Both outcomes must be common for the comparison to mean anything.
  EXPECT_GT(stopped, 500);
  EXPECT_LT(stopped, 2500);
}

}  // namespace
}  // namespace moe::server

#include "server/reasoning.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "core/error.h"

namespace moe::server {
namespace {

struct Case {
  bool started_in_prompt;
  std::string output;
  std::string reasoning;
  std::string content;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> kCases = {
      // The template opened the block: only the close tag appears.
      {true, "Okay, 2+2.\nSo 4.\n</think>\n\nThe answer is **4**.", "Okay, 2+2.\nSo 4.\n",
       "The answer is **4**."},
      {true, "\n   Let me think.</think>Answer", "Let me think.", "Answer"},
      {true, "</think>\n\nJust the answer.", "", "Just the answer."},
      {true, "\xF0\x9F\xA4\x94 hmm</think>\xF0\x9F\x91\x8D", "\xF0\x9F\xA4\x94 hmm", "\xF0\x9F\x91\x8D"},
      {true, "a</think></think>b", "a", "</think>b"},
      {true, "<think>\nx</think>y", "x", "y"},  // the model repeats the open tag
      {true, "still thinking </thi", "still thinking </thi", ""},
      {true, "  <th", "<th", ""},
      {true, "", "", ""},
      // The model opens the block itself.
      {false, "<think>\nhmm 思考\n</think>\n\n答案", "hmm 思考\n", "答案"},
      {false, "  \n<think>x</think>y", "x", "y"},
      {false, "<think>a</think>b<think>c</think>", "a", "b<think>c</think>"},
      {false, "<think>a<</think>b", "a<", "b"},
      {false, "<think>a</think>\n\n", "a", ""},
      {false, "<think>abc </thi", "abc </thi", ""},
      {false, "<think>\n\n</think>\n\nNo thinking needed. </think> stays", "",
       "No thinking needed. </think> stays"},
      // No reasoning.
      {false, "Hello <think> world </think>", "", "Hello <think> world </think>"},
      {false, "\n\nHello", "", "\n\nHello"},
      {false, "<thi", "", "<thi"},
      {false, "<thinking>x", "", "<thinking>x"},
      {false, " \n ", "", " \n "},
      {false, "", "", ""},
  };
  return kCases;
}

// The rules applied to a whole output at once, written independently of the streaming state machine.
ReasoningDelta reference_split(const std::string& s, bool started, const std::string& open = "<think>",
                               const std::string& close = "</think>") {
  auto skip = [&](size_t i) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
    return i;
  };
  size_t i = skip(0);
  if (s.compare(i, open.size(), open) == 0)
    i = skip(i + open.size());
  else if (!started)
    return {"", s};
  const size_t end = s.find(close, i);
  if (end == std::string::npos) return {s.substr(i), ""};
  return {s.substr(i, end - i), s.substr(skip(end + close.size()))};
}

ReasoningDelta run_split(ReasoningSplitter splitter, const std::string& text,
                         const std::vector<size_t>& cuts) {
  ReasoningDelta total;
  size_t from = 0;
  auto add = [&](const ReasoningDelta& d) {
    total.reasoning += d.reasoning;
    total.content += d.content;
  };
  for (size_t cut : cuts) {
    add(splitter.push(std::string_view(text).substr(from, cut - from)));
    from = cut;
  }
  add(splitter.push(std::string_view(text).substr(from)));
  add(splitter.finish());
  return total;
}

// Every single cut point, every byte on its own, and random cuts (which fall inside tags and characters).
void expect_split_invariant(const ReasoningSplitter& fresh, const std::string& text,
                            const ReasoningDelta& want, std::mt19937& rng) {
  std::vector<std::vector<size_t>> splits = {{}};
  std::vector<size_t> every_byte;
  for (size_t i = 1; i < text.size(); ++i) {
    splits.push_back({i});
    every_byte.push_back(i);
  }
  splits.push_back(every_byte);
  for (int rep = 0; rep < 20; ++rep) {
    std::vector<size_t> cuts;
    for (size_t i = 1; i < text.size(); ++i)
      if (std::uniform_int_distribution<int>(0, 3)(rng) == 0) cuts.push_back(i);
    splits.push_back(cuts);
  }
  for (const auto& cuts : splits) {
    const ReasoningDelta got = run_split(fresh, text, cuts);
    ASSERT_EQ(got.reasoning, want.reasoning) << "output: " << text << " (" << cuts.size() << " cuts)";
    ASSERT_EQ(got.content, want.content) << "output: " << text << " (" << cuts.size() << " cuts)";
  }
}

TEST(ServerReasoning, KnownOutputsAnySplit) {
  std::mt19937 rng(11);
  for (const Case& c : cases()) {
    const ReasoningDelta ref = reference_split(c.output, c.started_in_prompt);
    EXPECT_EQ(ref.reasoning, c.reasoning) << c.output;
    EXPECT_EQ(ref.content, c.content) << c.output;
    expect_split_invariant(ReasoningSplitter(c.started_in_prompt), c.output, {c.reasoning, c.content}, rng);
  }
}

TEST(ServerReasoning, RandomOutputsAnySplitMatchReference) {
  std::mt19937 rng(5);
  const std::vector<std::string> pieces = {"<think>", "</think>", "<th", "</", "</thi", "<",    ">",
                                           "\n",      " ",        "a",   "é",  "🤔",  "\n\n", "think"};
  for (int iter = 0; iter < 300; ++iter) {
    std::string text;
    const int n = std::uniform_int_distribution<int>(0, 10)(rng);
    for (int i = 0; i < n; ++i)
      text += pieces[std::uniform_int_distribution<size_t>(0, pieces.size() - 1)(rng)];
    const bool started = iter % 2;
    expect_split_invariant(ReasoningSplitter(started), text, reference_split(text, started), rng);
  }
}

TEST(ServerReasoning, CustomTags) {
  std::mt19937 rng(3);
  for (const std::string text : {"[THINK]\nplan[/THINK]\n\nanswer", "[THINK]plan [/THINK", "plain [THINK]"}) {
    const ReasoningDelta want = reference_split(text, false, "[THINK]", "[/THINK]");
    expect_split_invariant(ReasoningSplitter(false, "[THINK]", "[/THINK]"), text, want, rng);
  }
  EXPECT_EQ(reference_split("[THINK]\nplan[/THINK]\n\nanswer", false, "[THINK]", "[/THINK]").content,
            "answer");
  EXPECT_THROW(ReasoningSplitter(false, "", "</think>"), moe::Error);
  EXPECT_THROW(ReasoningSplitter(false, "<think>", ""), moe::Error);
}

TEST(ServerReasoning, HoldsPartialTagsUntilResolved) {
  ReasoningSplitter s(false);
  ReasoningDelta d = s.push("\n<thi");
  EXPECT_EQ(d.reasoning + d.content, "");
  d = s.push("nk>\nStep one");
  EXPECT_EQ(d.reasoning, "Step one");
  EXPECT_TRUE(s.in_reasoning());
  d = s.push(".</thi");
  EXPECT_EQ(d.reasoning, ".");
  EXPECT_EQ(d.content, "");
  d = s.push("nk>\n");
  EXPECT_EQ(d.reasoning + d.content, "");
  EXPECT_FALSE(s.in_reasoning());
  d = s.push("\nDone.");
  EXPECT_EQ(d.content, "Done.");
  d = s.finish();
  EXPECT_EQ(d.reasoning + d.content, "");

  // Text that only looked like the start of a tag is released as soon as it diverges.
  ReasoningSplitter t(true);
  d = t.push("x </th");
  EXPECT_EQ(d.reasoning, "x ");
  d = t.push("at");
  EXPECT_EQ(d.reasoning, "</that");
  EXPECT_TRUE(t.in_reasoning());
}

TEST(ServerReasoning, PromptOpensReasoning) {
  EXPECT_TRUE(prompt_opens_reasoning("<｜User｜>hi<｜Assistant｜><think>\n"));
  EXPECT_TRUE(prompt_opens_reasoning("...<think>"));
  EXPECT_TRUE(prompt_opens_reasoning("<think> \n\t\r\n"));
  EXPECT_FALSE(prompt_opens_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
  EXPECT_FALSE(prompt_opens_reasoning("<|im_start|>assistant\n"));
  EXPECT_FALSE(prompt_opens_reasoning("<think>\nalready some text"));
  EXPECT_FALSE(prompt_opens_reasoning(""));
  EXPECT_TRUE(prompt_opens_reasoning("[INST]q[/INST][THINK]\n", "[THINK]"));
  EXPECT_FALSE(prompt_opens_reasoning("[INST]q[/INST]<think>\n", "[THINK]"));
}

}  // namespace
}  // namespace moe::server

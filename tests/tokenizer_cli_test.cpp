// `moe tokenize`, `moe detokenize` and `moe chat-template` against the Hugging Face references.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "testdata.h"

namespace moe {
namespace {

std::string moe(const std::string& args, int* rc, bool merge_stderr = false) {
  std::string out;
  *rc = test::run_command(test::moe_binary() + " " + args + (merge_stderr ? " 2>&1" : " 2>/dev/null"), &out);
  return out;
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

void write(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(test::read_file(path));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// The special-token references, fed through --jsonl with ids of our own: every output line must
// carry its input id and Hugging Face's ids. The tokenizer is named three ways.
TEST(TokenizerCli, JsonlMatchesHuggingFace) {
  const std::string dir = test::temp_dir("tokcli");
  for (const std::string name : {"deepseek-v3", "qwen3"}) {
    const std::string tdir = test::testdata("tokenizers/" + name);
    const auto refs = read_jsonl(tdir + "/" + name + "-special.jsonl");
    std::string input;
    for (size_t i = 0; i < refs.size(); ++i)
      input += nlohmann::json{{"id", "case-" + std::to_string(i)}, {"text", refs[i]["text"]}}.dump() + "\n";
    write(dir + "/in.jsonl", input);
    for (const std::string path : {tdir, tdir + "/tokenizer.json"}) {
      int rc;
      const std::string out = moe("tokenize --tokenizer " + path + " --special --jsonl " + dir + "/in.jsonl", &rc);
      ASSERT_EQ(rc, 0) << path;
      std::istringstream lines(out);
      std::string line;
      size_t i = 0;
      for (; std::getline(lines, line); ++i) {
        ASSERT_LT(i, refs.size());
        const auto j = nlohmann::json::parse(line);
        EXPECT_EQ(j["id"], "case-" + std::to_string(i));
        EXPECT_EQ(j["ids"], refs[i]["ids"]) << name << " " << refs[i]["text"];
      }
      EXPECT_EQ(i, refs.size());
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(TokenizerCli, SpecialTextIsPlainUnlessAsked) {
  const std::string tok = test::testdata("tokenizers/deepseek-v3");
  int rc1, rc2;
  const std::string plain = moe("tokenize --tokenizer " + tok + " --ids-only '<｜User｜>Hi'", &rc1);
  const std::string special = moe("tokenize --tokenizer " + tok + " --ids-only --special '<｜User｜>Hi'", &rc2);
  ASSERT_EQ(rc1 | rc2, 0);
  EXPECT_EQ(special.rfind("[128803, ", 0), 0u) << special;
  EXPECT_EQ(plain.find("128803"), std::string::npos) << plain;
}

TEST(TokenizerCli, VocabVectorsFromGguf) {
  // The first strings of llama.cpp's own vectors, through the CLI with --ids-only (no BOS).
  const std::string base = test::testdata("vocab/ggml-vocab-deepseek-coder.gguf");
  const std::string inp = test::read_file(base + ".inp");
  const std::string outp = test::read_file(base + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::istringstream out_lines(outp);
  size_t start = 0;
  for (int n = 0; n < 8; ++n) {
    const size_t end = inp.find(sep, start);
    ASSERT_NE(end, std::string::npos);
    const std::string text = inp.substr(start, end - start);
    start = end + sep.size();
    std::string expected_line;
    std::getline(out_lines, expected_line);
    std::istringstream ids(expected_line);
    std::string expected = "[";
    for (int id, k = 0; ids >> id; ++k) expected += (k ? ", " : "") + std::to_string(id);
    expected += "]\n";
    int rc;
    EXPECT_EQ(moe("tokenize --tokenizer " + base + " --ids-only " + quote(text), &rc), expected) << text;
    EXPECT_EQ(rc, 0);
  }
}

TEST(TokenizerCli, DetokenizeRoundTrip) {
  const std::string tok = test::testdata("tokenizers/qwen3/tokenizer.json");
  const std::string text = "Héllo wörld 你好 🙂 <think>\n  x = 1_000</think>";
  int rc;
  const std::string ids = moe("tokenize --tokenizer " + tok + " --special --ids-only " + quote(text), &rc);
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(moe("detokenize --tokenizer " + tok + " " + quote(ids), &rc), text + "\n");
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(moe("detokenize --tokenizer " + tok + " 151644,872", &rc), "<|im_start|>user\n");
  EXPECT_EQ(moe("detokenize --skip-special --tokenizer " + tok + " 151644,872", &rc), "user\n");
  const std::string err = moe("detokenize --tokenizer " + tok + " 1,99999999", &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("99999999"), std::string::npos) << err;
}

// Conversations rendered through the CLI from a model directory equal the @huggingface/jinja
// references checked in under tests/data/chat_templates/.
TEST(TokenizerCli, ChatTemplateFromModelDirectory) {
  const std::string dir = test::temp_dir("tokcli");
  for (const std::string name : {"deepseek-v3", "qwen3"}) {
    const auto ref = nlohmann::ordered_json::parse(
        test::read_file(std::string(MOE_SOURCE_DIR) + "/tests/data/chat_templates/tokenizer_config-" + name + ".json"));
    int checked = 0;
    for (const auto& c : ref["cases"]) {
      if (!c.contains("expected") || ++checked > 6) continue;
      nlohmann::ordered_json doc = {{"messages", c["messages"]}, {"add_generation_prompt", c["add_generation_prompt"]}};
      for (const auto& [k, v] : c["extra"].items()) doc[k] = v;
      write(dir + "/m.json", doc.dump());
      int rc;
      const std::string out =
          moe("chat-template --tokenizer " + test::testdata("tokenizers/" + name) + " --messages " + dir + "/m.json", &rc);
      EXPECT_EQ(rc, 0) << c["name"];
      EXPECT_EQ(out, c["expected"].get<std::string>()) << name << " " << c["name"];
    }
    EXPECT_GT(checked, 2);
  }
  std::filesystem::remove_all(dir);
}

TEST(TokenizerCli, BadInputGivesOneClearLine) {
  const std::string dir = test::temp_dir("tokcli");
  write(dir + "/bad.jsonl", "{\"id\": 1, \"text\": \"ok\"}\n{\"id\": 2, \"text\": 5}\n");
  write(dir + "/bad.json", "[{\"content\": \"no role\"}]");
  const std::string tok = test::testdata("tokenizers/deepseek-v3");
  struct Case {
    std::string args, must_mention;
  };
  const std::vector<Case> cases = {
      {"tokenize --tokenizer /nonexistent/dir hi", "/nonexistent/dir"},
      {"tokenize --tokenizer " + test::testdata("README.md") + " hi", "not a tokenizer"},
      {"tokenize --tokenizer " + tok + " --jsonl " + dir + "/bad.jsonl", "bad.jsonl:2"},
      {"detokenize --tokenizer " + tok + " 1,two", "two"},
      {"chat-template --tokenizer " + tok + " --messages " + dir + "/bad.json", "role"},
      {"chat-template --tokenizer " + test::testdata("vocab/ggml-vocab-gpt-2.gguf") + " --messages " + dir +
           "/bad.json",
       "no chat template"},
  };
  for (const Case& c : cases) {
    std::string out;  // stderr only: lines before the bad one are still answered on stdout
    const int rc = test::run_command(test::moe_binary() + " " + c.args + " 2>&1 >/dev/null", &out);
    EXPECT_NE(rc, 0) << c.args;
    EXPECT_NE(out.find(c.must_mention), std::string::npos) << c.args << "\n" << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << c.args << "\n" << out;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace moe

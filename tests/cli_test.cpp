// The `moe` command as users and other tools call it.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "formats/npy.h"
#include "testdata.h"

namespace moe {
namespace {

std::string moe(const std::string& args, int* rc, bool merge_stderr = false) {
  std::string out;
  *rc = test::run_command(test::moe_binary() + " " + args + (merge_stderr ? " 2>&1" : " 2>/dev/null"), &out);
  return out;
}

std::string model() { return test::testdata("models/stories260K.gguf"); }

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

TEST(CliTest, RunGreedyFromBosPrintsPublishedText) {
  int rc;
  const std::string out = moe("run -m " + model() + " -p '' -n 200 --temp 0 -t 2", &rc);
  ASSERT_EQ(rc, 0);
  std::string ref = test::read_file(test::testdata("models/stories260K.greedy-200.txt"));
  if (!ref.empty() && ref.back() != '\n') ref += '\n';
  EXPECT_EQ(out, ref);
}

TEST(CliTest, RunReportsSpeedOnStderr) {
  int rc;
  const std::string out = moe("run -m " + model() + " -p 'Once upon a time' -n 16 --seed 7", &rc, true);
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(out.rfind("Once upon a time", 0), 0u);
  EXPECT_NE(out.find("load:"), std::string::npos);
  EXPECT_NE(out.find("prompt:"), std::string::npos);
  EXPECT_NE(out.find("tokens/s"), std::string::npos);
}

TEST(CliTest, SameSeedSameSample) {
  int rc1, rc2, rc3;
  const std::string a = moe("run -m " + model() + " -p 'Lily' -n 40 --seed 3 --temp 1", &rc1);
  const std::string b = moe("run -m " + model() + " -p 'Lily' -n 40 --seed 3 --temp 1 -t 1", &rc2);
  const std::string c = moe("run -m " + model() + " -p 'Lily' -n 40 --seed 4 --temp 1", &rc3);
  ASSERT_EQ(rc1 | rc2 | rc3, 0);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(CliTest, TokenizeIdsOnly) {
  int rc;
  const std::string out = moe("tokenize -m " + model() + " --ids-only 'Once upon a time'", &rc);
  ASSERT_EQ(rc, 0);
  const auto ids = nlohmann::json::parse(out).get<std::vector<int>>();
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], 1);  // BOS, as the model's metadata asks
  std::string via_stdin;
  ASSERT_EQ(test::run_command("printf 'Once upon a time' | " + test::moe_binary() + " tokenize -m " + model() +
                                  " --ids-only -",
                              &via_stdin),
            0);
  EXPECT_EQ(via_stdin, out);
}

TEST(CliTest, LogitsWritesNpy) {
  const std::string dir = test::temp_dir("cli");
  int rc;
  moe("logits -m " + model() + " --ids 1,403,407 --out " + dir + "/l.npy", &rc);
  ASSERT_EQ(rc, 0);
  const NpyArray a = read_npy_f32(dir + "/l.npy");
  ASSERT_EQ(a.shape, (std::vector<int64_t>{3, 512}));
  // Greedy continuation of [BOS] is the first published token (403), then 407.
  auto argmax = [&](int row) {
    return static_cast<int>(std::max_element(a.data.begin() + row * 512, a.data.begin() + (row + 1) * 512) -
                            (a.data.begin() + row * 512));
  };
  EXPECT_EQ(argmax(0), 403);
  EXPECT_EQ(argmax(1), 407);
  moe("logits -m " + model() + " -p 'Once' --out " + dir + "/p.npy", &rc);
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(read_npy_f32(dir + "/p.npy").shape[1], 512);
  std::filesystem::remove_all(dir);
}

TEST(CliTest, InfoPrintsMetadataAndTensors) {
  int rc;
  const std::string out = moe("info " + model(), &rc);
  ASSERT_EQ(rc, 0);
  EXPECT_NE(out.find("general.architecture"), std::string::npos);
  EXPECT_NE(out.find("token_embd.weight"), std::string::npos);
  EXPECT_NE(out.find("blk.4.ffn_down.weight"), std::string::npos);
}

TEST(CliTest, EverySubcommandHasHelp) {
  for (const char* sub : {"info", "run", "tokenize", "logits"}) {
    int rc;
    const std::string out = moe(std::string(sub) + " --help", &rc);
    EXPECT_EQ(rc, 0) << sub;
    EXPECT_NE(out.find("--help"), std::string::npos) << sub;
  }
}

TEST(CliTest, BadInputGivesOneClearLine) {
  struct Case {
    std::string args;
    std::string must_mention;
  };
  const std::vector<Case> cases = {
      {"run -m " + model() + " --bogus-flag", "--bogus-flag"},
      {"run -m /nonexistent/model.gguf -p hi", "/nonexistent/model.gguf"},
      {"info /nonexistent.gguf", "/nonexistent.gguf"},
      {"info " + test::testdata("README.md"), "GGUF"},
      {"run -m " + model() + " --temp abc", "--temp"},
      {"logits -m " + model() + " --ids 1,x,3 --out /tmp/x.npy", "x"},
      {"logits -m " + model() + " --ids 1,99999 --out /tmp/x.npy", "99999"},
      {"frobnicate", "frobnicate"},
  };
  for (const Case& c : cases) {
    int rc;
    const std::string out = moe(c.args, &rc, true);
    EXPECT_NE(rc, 0) << c.args;
    EXPECT_EQ(count_lines(out), 1) << c.args << "\n" << out;
    EXPECT_NE(out.find(c.must_mention), std::string::npos) << c.args << "\n" << out;
    EXPECT_EQ(out.find("internal error"), std::string::npos) << c.args << "\n" << out;
  }
}

}  // namespace
}  // namespace moe

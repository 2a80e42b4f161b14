// moe serve end to end: the node scripts under tests/ start `moe serve` on models with known
// output (tests/serve_fixtures.h) and talk to it as clients do — the official OpenAI client,
// raw sockets for hostile input, JWTs minted by Node's own crypto, a headless browser.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "formats/gguf.h"
#include "model/presets.h"
#include "serve_fixtures.h"
#include "testdata.h"

namespace moe::test {
namespace {

class ServeE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(temp_dir("serve-e2e"));
    const std::string r1 = read_file(testdata("templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"));
    write_script_model(*dir_ + "/r1.gguf", "Sure</think>Yes", /*loop=*/false, r1);
    write_script_model(*dir_ + "/loop.gguf", "Cat</think>Dog", /*loop=*/true);
    std::filesystem::copy_file(testdata("models/stories260K.gguf"), *dir_ + "/stories.gguf");
    // A small DeepSeek MoE (MLA, shared experts, 2 of 8 routed experts per token) on the same vocabulary.
    ModelConfig c = reduced(find_preset("deepseek-r1").config);
    const auto vocab = GgufFile::open(testdata("models/stories260K.gguf"));
    c.n_vocab = static_cast<int64_t>(vocab->get("tokenizer.ggml.tokens").elems().size());
    RandomModelOptions opt;
    opt.tokenizer_source = vocab.get();
    write_random_model(c, opt, *dir_ + "/moe.gguf");
  }
  static void TearDownTestSuite() {
    if (!std::getenv("MOE_KEEP_FIXTURES")) std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  // Runs tests/<script> with the moe binary and the fixture folder; returns its exit code.
  static int run_node(const std::string& script, const std::string& extra, std::string* out) {
    const std::string cmd = "node " + std::string(MOE_SOURCE_DIR) + "/tests/" + script + " " + moe_binary() +
                            " " + *dir_ + " " + extra + " 2>&1";
    return run_command(cmd, out);
  }
  static std::string peer_missing(const std::string& pkg) {
    const std::string p = std::string(MOE_SOURCE_DIR) + "/.cache/peers/node_modules/" + pkg + "/package.json";
    return std::filesystem::exists(p) ? "" : pkg + " not installed (scripts/install-peers.sh)";
  }
  static std::string* dir_;
};
std::string* ServeE2E::dir_ = nullptr;

TEST_F(ServeE2E, OpenAiClientChatCompletionsStreamingReasoningUsage) {
  if (const std::string why = peer_missing("openai"); !why.empty()) GTEST_SKIP() << why;
  std::string out;
  EXPECT_EQ(run_node("serve_openai.mjs", "", &out), 0) << out;
  std::cout << out;
}

TEST_F(ServeE2E, HostileInputsGetTheRightErrorsAndLeakNothing) {
  std::string out;
  EXPECT_EQ(run_node("serve_hostile.mjs", "", &out), 0) << out;
  std::cout << out;
}

TEST_F(ServeE2E, AuthOnEveryRoute) {
  std::string out;
  EXPECT_EQ(run_node("serve_auth.mjs", "", &out), 0) << out;
  std::cout << out;
}

TEST_F(ServeE2E, ModelsDirTlsAndExpertMetrics) {
  std::string out;
  EXPECT_EQ(run_node("serve_misc.mjs", "", &out), 0) << out;
  std::cout << out;
}

TEST_F(ServeE2E, ChatPageStreamsInHeadlessChromium) {
  if (const std::string why = peer_missing("playwright-core"); !why.empty()) GTEST_SKIP() << why;
  if (!std::filesystem::exists("/usr/bin/chromium")) GTEST_SKIP() << "chromium not installed";
  std::string out;
  const std::string shot = std::filesystem::temp_directory_path().string() + "/moe-chat-page.png";
  EXPECT_EQ(run_node("serve_chat_page.mjs", shot, &out), 0) << out;
  std::cout << out << "screenshot: " << shot << "\n";
}

}  // namespace
}  // namespace moe::test

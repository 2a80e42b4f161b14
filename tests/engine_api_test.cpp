// The public API, used as an embedding program would.
#include <gtest/gtest.h>
#include <moe/moe.h>

#include <nlohmann/json.hpp>

#include "testdata.h"

namespace {

TEST(EngineApiTest, GreedyGenerationMatchesPublishedText) {
  auto engine = moe::Engine::open(moe::test::testdata("models/stories260K.gguf"), 2);
  moe::GenerationParams p;
  p.temperature = 0.0f;
  p.max_tokens = 200;
  std::string streamed;
  const std::string text = engine->generate("", p, [&](const std::string& s) {
    streamed += s;
    return true;
  });
  EXPECT_EQ(text, streamed);
  std::string ref = moe::test::read_file(moe::test::testdata("models/stories260K.greedy-200.txt"));
  while (!ref.empty() && ref.back() == '\n' && (text.empty() || text.back() != '\n')) ref.pop_back();
  EXPECT_EQ(text, ref);
  const auto ids = nlohmann::json::parse(moe::test::read_file(moe::test::testdata("models/stories260K.greedy-200.ids.txt")))
                       .get<std::vector<int32_t>>();
  EXPECT_EQ(engine->detokenize(ids), text);
}

TEST(EngineApiTest, OpenMissingFileThrowsRuntimeError) {
  EXPECT_THROW(moe::Engine::open("/nonexistent/x.gguf"), std::runtime_error);
}

}  // namespace

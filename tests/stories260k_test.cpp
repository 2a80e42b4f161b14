// End to end on a real pretrained model nobody here wrote: karpathy's stories260K must reproduce
// its published greedy output exactly.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "kernels/kernels.h"
#include "model/model.h"
#include "runtime/generator.h"
#include "testdata.h"

namespace moe {
namespace {

std::vector<int32_t> expected_ids() {
  const auto j = nlohmann::json::parse(test::read_file(test::testdata("models/stories260K.greedy-200.ids.txt")));
  return j.get<std::vector<int32_t>>();
}

std::vector<int32_t> greedy(const LoadedModel& m, int threads, int64_t n) {
  GenerateOptions opts;
  opts.n_predict = n;
  opts.sampling.temperature = 0.0f;
  ThreadPool pool(threads);
  std::vector<int32_t> out;
  generate(m, tokenize_prompt(*m.tokenizer, "", false), opts, pool, [&](int32_t id) {
    out.push_back(id);
    return true;
  });
  return out;
}

class Stories260KTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = new LoadedModel(load_model(test::testdata("models/stories260K.gguf"))); }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  static LoadedModel* model_;
};
LoadedModel* Stories260KTest::model_ = nullptr;

TEST_F(Stories260KTest, ConfigMatchesFile) {
  const ModelConfig& c = model_->model->config();
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.n_embd, 64);
  EXPECT_EQ(c.n_layer, 5);
  EXPECT_EQ(c.n_head, 8);
  EXPECT_EQ(c.n_head_kv, 4);
  EXPECT_EQ(c.n_vocab, 512);
  EXPECT_EQ(c.n_ff, 172);
}

TEST_F(Stories260KTest, GreedyMatchesPublishedOutput) {
  const std::vector<int32_t> want = expected_ids();
  const std::vector<int32_t> got = greedy(*model_, 1, static_cast<int64_t>(want.size()));
  EXPECT_EQ(got, want);
  std::string text;
  StreamDecoder dec(*model_->tokenizer);
  for (int32_t id : got) text += dec.push(id);
  text += dec.flush();
  std::string ref = test::read_file(test::testdata("models/stories260K.greedy-200.txt"));
  while (!ref.empty() && ref.back() == '\n' && (text.empty() || text.back() != '\n')) ref.pop_back();
  EXPECT_EQ(text, ref);
}

TEST_F(Stories260KTest, ThreadCountDoesNotChangeOutput) {
  EXPECT_EQ(greedy(*model_, 1, 200), greedy(*model_, 2, 200));
  EXPECT_EQ(greedy(*model_, 1, 50), greedy(*model_, 3, 50));
}

TEST_F(Stories260KTest, EveryIsaGivesTheSameGreedyOutput) {
  const kernels::Isa saved = kernels::active_isa();
  const std::vector<int32_t> want = expected_ids();
  for (int isa = 0; isa <= static_cast<int>(kernels::detected_isa()); ++isa) {
    kernels::force_isa(static_cast<kernels::Isa>(isa));
    EXPECT_EQ(greedy(*model_, 2, static_cast<int64_t>(want.size())), want)
        << "isa " << kernels::isa_name(static_cast<kernels::Isa>(isa));
  }
  kernels::force_isa(saved);
}

// A prompt processed in one batch must give the same logits as the same tokens fed one by one.
TEST_F(Stories260KTest, BatchedPromptEqualsIncremental) {
  const Model& model = *model_->model;
  const int64_t n_vocab = model.config().n_vocab;
  const std::vector<int32_t> ids = tokenize_prompt(*model_->tokenizer, "Once upon a time, a little dog", false);
  const int64_t n = static_cast<int64_t>(ids.size());
  ThreadPool pool(2);
  KvCache batch_cache = model.new_cache(64);
  std::vector<float> all(static_cast<size_t>(n * n_vocab));
  model.forward(ids, 0, batch_cache, true, all.data(), pool);
  KvCache step_cache = model.new_cache(64);
  std::vector<float> one(static_cast<size_t>(n_vocab));
  for (int64_t i = 0; i < n; ++i) {
    model.forward(std::span<const int32_t>(&ids[i], 1), i, step_cache, false, one.data(), pool);
    for (int64_t v = 0; v < n_vocab; ++v) ASSERT_NEAR(one[v], all[i * n_vocab + v], 1e-4f) << "pos " << i;
  }
}

TEST_F(Stories260KTest, ContextOverflowIsAnError) {
  const Model& model = *model_->model;
  ThreadPool pool(1);
  KvCache cache = model.new_cache(4);
  std::vector<int32_t> ids(5, 1);
  std::vector<float> logits(static_cast<size_t>(model.config().n_vocab));
  EXPECT_THROW(model.forward(ids, 0, cache, false, logits.data(), pool), Error);
  const int32_t bad[1] = {100000};
  EXPECT_THROW(model.forward(bad, 0, cache, false, logits.data(), pool), Error);
}

}  // namespace
}  // namespace moe

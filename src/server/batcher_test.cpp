// Continuous batching must not change what a greedy request produces: 32 sequences decoded
// together (with prompts prefilled in small chunks beside running streams) give exactly the
// tokens each gives alone, and alone equals the single-sequence generator.
#include "server/batcher.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "core/error.h"
#include "model/presets.h"
#include "runtime/generator.h"
#include "testdata.h"

namespace moe::server {
namespace {

std::vector<int32_t> collect(Sequence& s, Finish* finish = nullptr) {
  std::vector<int32_t> ids;
  std::vector<TokenOut> got;
  while (s.wait(&got, std::chrono::milliseconds(50))) {
  }
  s.wait(&got, std::chrono::milliseconds(0));
  for (const TokenOut& t : got) ids.push_back(t.id);
  if (finish) *finish = s.finish();
  return ids;
}

// Stats once the batcher has retired what finished (it signals the end before bookkeeping).
BatcherStats idle_stats(const Batcher& b) {
  BatcherStats st = b.stats();
  for (int i = 0; i < 200 && (st.active != 0 || st.kv_bytes != 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    st = b.stats();
  }
  return st;
}

GenParams greedy(std::vector<int32_t> prompt, int64_t n) {
  GenParams p;
  p.prompt = std::move(prompt);
  p.max_tokens = n;
  p.sampling.temperature = 0.0f;
  p.ignore_eog = true;
  return p;
}

// 32 prompts of 1..40 tokens drawn from the vocabulary.
std::vector<std::vector<int32_t>> prompts(int64_t n_vocab) {
  std::vector<std::vector<int32_t>> out;
  uint64_t x = 12345;
  for (int i = 0; i < 32; ++i) {
    std::vector<int32_t> p;
    const int len = 1 + (i * 7) % 40;
    for (int j = 0; j < len; ++j) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      p.push_back(static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(n_vocab - 3)) + 3);
    }
    out.push_back(p);
  }
  return out;
}

void check_batch_invariance(const std::string& path) {
  const LoadedModel m = load_model(path);
  const int64_t n_gen = 12;
  const auto ps = prompts(m.model->config().n_vocab);

  // Alone: the plain generator, one request at a time.
  std::vector<std::vector<int32_t>> alone;
  ThreadPool pool(2);
  for (const auto& p : ps) {
    GenerateOptions o;
    o.n_predict = n_gen;
    o.n_ctx = 64;
    o.sampling.temperature = 0.0f;
    o.stop_at_eog = false;
    std::vector<int32_t> ids;
    generate(m, p, o, pool, [&](int32_t id) {
      ids.push_back(id);
      return true;
    });
    alone.push_back(ids);
  }

  BatcherOptions bo;
  bo.max_seqs = 32;
  bo.prefill_chunk = 16;  // long prompts are split over several steps beside decoding sequences
  bo.n_ctx = 64;
  bo.threads = 2;
  Batcher b(m, bo);
  std::vector<std::shared_ptr<Sequence>> seqs;
  for (const auto& p : ps) seqs.push_back(b.submit(greedy(p, n_gen)));
  for (size_t i = 0; i < seqs.size(); ++i) {
    ASSERT_NE(seqs[i], nullptr);
    Finish f;
    EXPECT_EQ(collect(*seqs[i], &f), alone[i]) << "sequence " << i << " of " << path;
    EXPECT_EQ(f, Finish::kLength);
  }
  const BatcherStats st = idle_stats(b);
  EXPECT_LT(st.steps, 32 * n_gen) << "the sequences were not batched";
  EXPECT_EQ(st.active, 0);
  EXPECT_EQ(st.kv_bytes, 0);
}

TEST(ServerBatcher, ThirtyTwoStreamsEqualEachAloneStories260K) {
  check_batch_invariance(test::testdata("models/stories260K.gguf"));
}

TEST(ServerBatcher, ThirtyTwoStreamsEqualEachAloneDeepseekMoeQ8) {
  ModelConfig c = reduced(find_preset("deepseek-r1").config);
  c.n_vocab = 512;
  c.qk_nope_dim = 32;  // every quantized row a whole number of 32-wide blocks
  c.head_dim_k = 40;
  c.head_dim_v = 32;
  const std::string dir = test::temp_dir("batcher");
  const auto tok = GgufFile::open(test::testdata("models/stories260K.gguf"));
  RandomModelOptions opt;
  opt.seed = 7;
  opt.type = DType::Q8_0;
  opt.tokenizer_source = tok.get();
  write_random_model(c, opt, dir + "/ds.gguf");
  check_batch_invariance(dir + "/ds.gguf");
  std::filesystem::remove_all(dir);
}

TEST(ServerBatcher, QueueLimitCancelAndBudget) {
  const LoadedModel m = load_model(test::testdata("models/stories260K.gguf"));
  BatcherOptions bo;
  bo.max_seqs = 1;
  bo.max_queue = 2;
  bo.n_ctx = 256;
  bo.threads = 1;
  Batcher b(m, bo);
  EXPECT_THROW(b.submit(greedy(std::vector<int32_t>(256, 5), 4)), Error);  // prompt fills the context
  EXPECT_THROW(b.submit(greedy({}, 4)), Error);
  EXPECT_THROW(b.submit(greedy({1, 100000}, 4)), Error);
  auto s1 = b.submit(greedy({1, 5, 6}, 200));
  ASSERT_NE(s1, nullptr);
  std::vector<TokenOut> got;
  s1->wait(&got, std::chrono::seconds(10));  // running now: the queue is empty again
  auto s2 = b.submit(greedy({1, 7}, 200));
  auto s3 = b.submit(greedy({1, 8}, 200));
  auto s4 = b.submit(greedy({1, 9}, 200));
  ASSERT_NE(s2, nullptr);
  ASSERT_NE(s3, nullptr);
  EXPECT_EQ(s4, nullptr) << "a full queue must refuse";
  s1->cancel();
  s2->cancel();
  Finish f1, f2, f3;
  collect(*s1, &f1);
  collect(*s2, &f2);
  const auto ids3 = collect(*s3, &f3);
  EXPECT_EQ(f1, Finish::kCancelled);
  EXPECT_EQ(f2, Finish::kCancelled);
  EXPECT_EQ(f3, Finish::kLength);
  EXPECT_EQ(ids3.size(), 200u);
  EXPECT_EQ(idle_stats(b).kv_bytes, 0);

  BatcherOptions tiny = bo;
  tiny.kv_budget_bytes = b.cache_bytes(16);
  Batcher small(m, tiny);
  EXPECT_THROW(small.submit(greedy({1, 5}, 100)), Error);  // could never fit the budget
  auto ok = small.submit(greedy({1, 5}, 10));
  ASSERT_NE(ok, nullptr);
  EXPECT_EQ(collect(*ok).size(), 10u);
}

}  // namespace
}  // namespace moe::server

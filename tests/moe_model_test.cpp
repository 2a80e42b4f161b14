// The MoE/MLA model family without peers: router semantics, both MLA layouts, presets, and
// malformed model files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <numeric>

#include "core/error.h"
#include "model/decoder.h"
#include "model/model.h"
#include "model/moe_ffn.h"
#include "model/presets.h"
#include "testdata.h"

namespace moe {
namespace {

std::vector<float> softmax(std::vector<float> v) {
  const float m = *std::max_element(v.begin(), v.end());
  float s = 0.0f;
  for (float& x : v) s += x = std::exp(x - m);
  for (float& x : v) x /= s;
  return v;
}

TEST(MoeRouter, SeedMoePicksTwoWithUnnormalisedSoftmaxWeights) {
  const ModelConfig c = find_preset("seed-moe").config;
  ASSERT_EQ(c.n_expert, 16);
  ASSERT_EQ(c.n_expert_used, 2);
  std::vector<float> logits(16);
  for (int e = 0; e < 16; ++e) logits[e] = std::sin(1.7f * e) * 3.0f;
  const std::vector<float> probs = softmax(logits);
  int32_t ids[2];
  float w[2];
  route_token(c, logits.data(), nullptr, ids, w);
  std::vector<int32_t> order(16);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return probs[a] > probs[b]; });
  EXPECT_EQ(ids[0], order[0]);
  EXPECT_EQ(ids[1], order[1]);
  EXPECT_NEAR(w[0], probs[order[0]], 1e-6);  // probabilities as they are: no renormalisation
  EXPECT_NEAR(w[1], probs[order[1]], 1e-6);
  EXPECT_LT(w[0] + w[1], 1.0f - 1e-3f);
}

TEST(MoeRouter, MixtralRenormalises) {
  ModelConfig c = find_preset("seed-moe").config;
  c.expert_weights_norm = true;
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.5f, 0.0f, 0.3f, -2.0f, 1.0f};
  c.n_expert = 8;
  int32_t ids[2];
  float w[2];
  route_token(c, logits.data(), nullptr, ids, w);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);
  EXPECT_NEAR(w[0] + w[1], 1.0f, 1e-6);
  EXPECT_NEAR(w[0] / w[1], std::exp(0.5f), 1e-5);
}

// DeepSeek-V3: sigmoid scores, bias for selection only, groups scored by their top-2 sum.
TEST(MoeRouter, DeepSeekV3GroupLimitedWithBias) {
  ModelConfig c;
  c.n_expert = 8;
  c.n_expert_used = 2;
  c.gating_sigmoid = true;
  c.expert_weights_norm = true;
  c.expert_weights_scale = 2.5f;
  c.n_expert_groups = 4;  // groups {0,1} {2,3} {4,5} {6,7}
  c.n_group_used = 2;
  const std::vector<float> logits = {3.0f, -3.0f, 0.5f, 0.4f, 0.6f, 0.2f, -1.0f, -1.0f};
  const std::vector<float> bias = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 2.0f, 0.0f};
  // sigmoid+bias: g0 = .953+.047=1.0, g1 = .622+.599=1.22, g2 = .646+.550=1.20, g3 = 2.269+.269=2.54
  // keep g3 and g1; best two eligible: expert 6 (2.269) and expert 2 (0.622). Expert 0 (0.953,
  // the best single score) is excluded with its group.
  int32_t ids[2];
  float w[2];
  route_token(c, logits.data(), bias.data(), ids, w);
  EXPECT_EQ(ids[0], 6);
  EXPECT_EQ(ids[1], 2);
  const float s6 = 1.0f / (1.0f + std::exp(1.0f)), s2 = 1.0f / (1.0f + std::exp(-0.5f));
  EXPECT_NEAR(w[0], 2.5f * s6 / (s6 + s2), 1e-6);  // weights from unbiased scores
  EXPECT_NEAR(w[1], 2.5f * s2 / (s6 + s2), 1e-6);
}

std::string stories() { return test::testdata("models/stories260K.gguf"); }

std::string write_model(const std::string& dir, const std::string& name, const ModelConfig& c,
                        bool split = true) {
  const auto tok = GgufFile::open(stories());
  RandomModelOptions opt;
  opt.seed = 99;
  opt.mla_split = split;
  opt.tokenizer_source = tok.get();
  const std::string path = dir + "/" + name + ".gguf";
  write_random_model(c, opt, path);
  return path;
}

ModelConfig small(const std::string& preset) {
  ModelConfig c = reduced(find_preset(preset).config);
  c.n_vocab = 512;
  return c;
}

std::vector<float> all_logits(const std::string& path, const std::vector<int32_t>& ids) {
  const LoadedModel m = load_model(path);
  ThreadPool pool(2);
  KvCache cache = m.model->new_cache(32);
  std::vector<float> out(ids.size() * static_cast<size_t>(m.model->config().n_vocab));
  m.model->forward(ids, 0, cache, true, out.data(), pool);
  return out;
}

TEST(MoeModel, OldAndNewMlaLayoutsGiveTheSameLogits) {
  const std::string dir = test::temp_dir("moe");
  const ModelConfig c = small("deepseek-r1");
  const std::vector<int32_t> ids = {1, 5, 300, 42, 17, 480};
  const auto a = all_logits(write_model(dir, "new", c, true), ids);
  const auto b = all_logits(write_model(dir, "old", c, false), ids);
  ASSERT_EQ(a.size(), b.size());
  float max_diff = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, std::abs(a[i] - b[i]));
  EXPECT_LT(max_diff, 1e-5f);
  std::filesystem::remove_all(dir);
}

TEST(MoeModel, IncrementalDecodeEqualsBatchedPrompt) {
  const std::string dir = test::temp_dir("moe");
  const std::string path = write_model(dir, "r1", small("deepseek-r1"));
  const std::vector<int32_t> ids = {1, 5, 300, 42, 17};
  const auto batched = all_logits(path, ids);
  const LoadedModel m = load_model(path);
  ThreadPool pool(1);
  KvCache cache = m.model->new_cache(32);
  const int64_t V = m.model->config().n_vocab;
  std::vector<float> row(static_cast<size_t>(V));
  for (size_t i = 0; i < ids.size(); ++i) {
    m.model->forward(std::span(ids).subspan(i, 1), static_cast<int64_t>(i), cache, false, row.data(), pool);
    for (int64_t v = 0; v < V; ++v) ASSERT_NEAR(row[v], batched[i * V + v], 1e-4) << "position " << i;
  }
  std::filesystem::remove_all(dir);
}

TEST(MoeModel, SeedMoeRoutesEveryTokenToExactlyTwoExperts) {
  ModelConfig c = small("seed-moe");
  ASSERT_EQ(c.n_expert, 8);  // reduced from 16
  // The real router unit: every token of a batch lands on exactly n_expert_used experts.
  const std::string dir = test::temp_dir("moe");
  const std::string path = write_model(dir, "seed", c);
  const LoadedModel m = load_model(path);
  const GgufFile& f = *m.file;
  MoeWeights w;
  w.gate_inp = f.tensor(*f.find_tensor("blk.0.ffn_gate_inp.weight"));
  auto stacked = [&](const char* part) {
    return f.tensor(*f.find_tensor(std::string("blk.0.ffn_") + part + "_exps.weight"));
  };
  const Tensor gate = stacked("gate"), up = stacked("up"), down = stacked("down");
  for (int64_t e = 0; e < c.n_expert; ++e)
    w.experts.push_back(FfnWeights{expert_slice(gate, e), expert_slice(up, e), expert_slice(down, e)});
  const int64_t n_tokens = 37;
  std::vector<float> h(static_cast<size_t>(n_tokens * c.n_embd));
  for (size_t i = 0; i < h.size(); ++i) h[i] = std::sin(0.37f * static_cast<float>(i));
  std::vector<float> out(h.size());
  std::vector<int64_t> counts(static_cast<size_t>(c.n_expert), 0);
  ThreadPool pool(2);
  ffn_moe(m.model->config(), w, h.data(), n_tokens, out.data(), pool, &counts);
  EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), int64_t{0}), 2 * n_tokens);
  EXPECT_FALSE(m.model->config().expert_weights_norm);
  std::filesystem::remove_all(dir);
}

TEST(MoeModel, KvCacheBytesPerTokenForR1) {
  const KvBytesPerToken kv = kv_bytes_per_token(find_preset("deepseek-r1").config);
  EXPECT_EQ(kv.stored, 61 * 576 * 4);               // latent 512 + rope key 64 per layer
  EXPECT_EQ(kv.naive, 61 * 128 * (192 + 128) * 4);  // every head's k and v
}

// Copies a GGUF, letting edit() drop tensors or change keys.
void rewrite(const std::string& src, const std::string& dst,
             const std::function<bool(GgufWriter&, const std::string& key, const GgufValue* v)>& edit_key,
             const std::function<bool(const GgufTensorInfo&)>& keep_tensor) {
  const auto f = GgufFile::open(src);
  GgufWriter w;
  for (const auto& [k, v] : f->metadata())
    if (!edit_key(w, k, &v)) w.set(k, v);
  for (const GgufTensorInfo& t : f->tensors()) {
    if (!keep_tensor(t)) continue;
    std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
    w.add_tensor(t.name, t.type, ne, f->tensor_data(t), t.n_bytes);
  }
  w.write(dst);
}

std::string load_error(const std::string& path) {
  try {
    load_model(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(MoeModel, MalformedModelsNameTheProblem) {
  const std::string dir = test::temp_dir("moe");
  const std::string good = write_model(dir, "good", small("deepseek-r1"));
  const auto no_key_edit = [](GgufWriter&, const std::string&, const GgufValue*) { return false; };
  const auto keep_all = [](const GgufTensorInfo&) { return true; };

  rewrite(good, dir + "/a.gguf", no_key_edit,
          [](const GgufTensorInfo& t) { return t.name != "blk.1.attn_k_b.weight"; });
  EXPECT_NE(load_error(dir + "/a.gguf").find("blk.1.attn_k_b.weight"), std::string::npos)
      << load_error(dir + "/a.gguf");

  rewrite(
      good, dir + "/b.gguf",
      [](GgufWriter& w, const std::string& k, const GgufValue*) {
        if (k != "general.architecture") return false;
        w.set(k, GgufValue::str("gpt-j"));
        return true;
      },
      keep_all);
  EXPECT_NE(load_error(dir + "/b.gguf").find("gpt-j"), std::string::npos);

  rewrite(
      good, dir + "/c.gguf",
      [](GgufWriter& w, const std::string& k, const GgufValue*) {
        if (k != "deepseek2.expert_count") return false;
        w.set(k, GgufValue::u32(6));  // the tensors hold 8
        return true;
      },
      keep_all);
  EXPECT_NE(load_error(dir + "/c.gguf").find("expert_group_count"), std::string::npos)
      << load_error(dir + "/c.gguf");

  rewrite(
      good, dir + "/d.gguf",
      [](GgufWriter& w, const std::string& k, const GgufValue*) {
        if (k != "deepseek2.expert_used_count") return false;
        w.set(k, GgufValue::u32(9));
        return true;
      },
      keep_all);
  EXPECT_NE(load_error(dir + "/d.gguf").find("expert_used_count"), std::string::npos);

  // A tensor of the wrong shape: experts stacked 7 deep where the metadata says 8.
  const std::string e_path = dir + "/e.gguf";
  {
    const auto f = GgufFile::open(good);
    GgufWriter w;
    for (const auto& [k, v] : f->metadata()) w.set(k, v);
    for (const GgufTensorInfo& t : f->tensors()) {
      std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
      size_t bytes = t.n_bytes;
      if (t.name == "blk.1.ffn_up_exps.weight") {
        ne[2] = 7;
        bytes = bytes / 8 * 7;
      }
      w.add_tensor(t.name, t.type, ne, f->tensor_data(t), bytes);
    }
    w.write(e_path);
  }
  const std::string err = load_error(e_path);
  EXPECT_NE(err.find("blk.1.ffn_up_exps.weight"), std::string::npos) << err;
  EXPECT_NE(err.find("shape"), std::string::npos) << err;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace moe

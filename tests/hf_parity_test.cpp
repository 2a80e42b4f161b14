// A DeepSeek-V3-shaped model saved as a Hugging Face directory (config.json, safetensors,
// tokenizer.json; random f32 weights written here) gives the same logits loaded directly, after
// `moe convert` to GGUF, and in llama.cpp on that converted file.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "formats/npy.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "runtime/generator.h"
#include "testdata.h"

namespace moe {
namespace {

using json = nlohmann::json;

constexpr int64_t kE = 64, kH = 4, kQ = 32, kR = 32, kNope = 16, kRope = 8, kV = 16, kF = 96, kFe = 32, kX = 8,
                  kVocab = 260, kLayers = 3;

void write_tokenizer(const std::string& dir) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) {
    int cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
      int k = 0;
      for (int x = 0; x < b; ++x)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) ++k;
      cp = 256 + k;
    }
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    vocab[s] = b;
  }
  vocab["hi"] = 256;
  vocab["th"] = 257;
  vocab["the"] = 258;
  const json tj = {
      {"added_tokens",
       {{{"id", 259}, {"content", "<|end_of_text|>"}, {"special", true}, {"normalized", false}}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern",
            {{"Regex",
              "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
              "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
              "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"},
           {"add_prefix_space", false},
           {"trim_offsets", true},
           {"use_regex", false}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"h i", "t h", "th e"}}}}};
  std::ofstream(dir + "/tokenizer.json") << tj.dump();
  std::ofstream(dir + "/tokenizer_config.json") << json{{"eos_token", "<|end_of_text|>"}}.dump();
}

void write_deepseek_v3(const std::string& dir) {
  const json config = {{"architectures", {"DeepseekV3ForCausalLM"}},
                       {"hidden_size", kE},
                       {"num_hidden_layers", kLayers},
                       {"num_attention_heads", kH},
                       {"num_key_value_heads", kH},
                       {"intermediate_size", kF},
                       {"moe_intermediate_size", kFe},
                       {"vocab_size", kVocab},
                       {"max_position_embeddings", 256},
                       {"q_lora_rank", kQ},
                       {"kv_lora_rank", kR},
                       {"qk_nope_head_dim", kNope},
                       {"qk_rope_head_dim", kRope},
                       {"v_head_dim", kV},
                       {"n_routed_experts", kX},
                       {"num_experts_per_tok", 2},
                       {"n_shared_experts", 1},
                       {"first_k_dense_replace", 1},
                       {"moe_layer_freq", 1},
                       {"n_group", 4},
                       {"topk_group", 2},
                       {"scoring_func", "sigmoid"},
                       {"norm_topk_prob", true},
                       {"routed_scaling_factor", 2.5},
                       {"topk_method", "noaux_tc"},
                       {"rms_norm_eps", 1e-6},
                       {"rope_theta", 10000},
                       {"tie_word_embeddings", false},
                       {"rope_scaling",
                        {{"type", "yarn"},
                         {"factor", 4},
                         {"original_max_position_embeddings", 64},
                         {"beta_fast", 32},
                         {"beta_slow", 1},
                         {"mscale", 1.0},
                         {"mscale_all_dim", 1.0}}}};
  std::ofstream(dir + "/config.json") << config.dump();
  std::mt19937 rng(11);
  SafetensorsWriter w;
  // Weights ~ U(+-gain/sqrt(n_in)); norms ~ 1 + noise.
  const auto add = [&](const std::string& name, std::vector<int64_t> shape, float gain = 1.0f, float center = 0.0f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    const float a = gain / std::sqrt(static_cast<float>(shape.back()));
    std::uniform_real_distribution<float> ud(-a, a);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = center + ud(rng);
    w.add(name, StDtype::kF32, shape, v.data(), v.size() * 4);
  };
  const auto norm = [&](const std::string& name, int64_t n) { add(name, {n}, 0.25f * 4.0f, 1.0f); };
  add("model.embed_tokens.weight", {kVocab, kE});
  for (int il = 0; il < kLayers; ++il) {
    const std::string L = "model.layers." + std::to_string(il) + ".";
    norm(L + "input_layernorm.weight", kE);
    add(L + "self_attn.q_a_proj.weight", {kQ, kE});
    norm(L + "self_attn.q_a_layernorm.weight", kQ);
    add(L + "self_attn.q_b_proj.weight", {kH * (kNope + kRope), kQ});
    add(L + "self_attn.kv_a_proj_with_mqa.weight", {kR + kRope, kE});
    norm(L + "self_attn.kv_a_layernorm.weight", kR);
    add(L + "self_attn.kv_b_proj.weight", {kH * (kNope + kV), kR});
    add(L + "self_attn.o_proj.weight", {kE, kH * kV});
    norm(L + "post_attention_layernorm.weight", kE);
    if (il == 0) {
      add(L + "mlp.gate_proj.weight", {kF, kE});
      add(L + "mlp.up_proj.weight", {kF, kE});
      add(L + "mlp.down_proj.weight", {kE, kF});
      continue;
    }
    add(L + "mlp.gate.weight", {kX, kE});
    add(L + "mlp.gate.e_score_correction_bias", {kX}, 0.1f * 2.83f);
    for (int x = 0; x < kX; ++x) {
      const std::string P = L + "mlp.experts." + std::to_string(x) + ".";
      add(P + "gate_proj.weight", {kFe, kE});
      add(P + "up_proj.weight", {kFe, kE});
      add(P + "down_proj.weight", {kE, kFe});
    }
    add(L + "mlp.shared_experts.gate_proj.weight", {kFe, kE});
    add(L + "mlp.shared_experts.up_proj.weight", {kFe, kE});
    add(L + "mlp.shared_experts.down_proj.weight", {kE, kFe});
  }
  norm("model.norm.weight", kE);
  add("lm_head.weight", {kVocab, kE}, 4.0f);
  w.write(dir + "/model.safetensors");
  write_tokenizer(dir);
}

const std::vector<int32_t> kPrompt = {104, 105, 32, 116, 104, 101, 256, 257, 258, 33, 10, 65, 66, 67, 200, 150};

std::vector<float> logits_of(const LoadedModel& m) {
  ThreadPool pool(2);
  KvCache cache = m.model->new_cache(64);
  std::vector<float> out(kPrompt.size() * static_cast<size_t>(m.model->config().n_vocab));
  m.model->forward(kPrompt, 0, cache, true, out.data(), pool);
  return out;
}

TEST(HfParity, DirectoryConvertedGgufAndLlamaCppAgree) {
  const std::string dir = test::temp_dir("hfpar");
  const std::string hf = dir + "/hf";
  std::filesystem::create_directories(hf);
  write_deepseek_v3(hf);

  const LoadedModel direct = load_model(hf);
  EXPECT_EQ(direct.model->config().arch, "deepseek2");
  const std::vector<float> a = logits_of(direct);

  std::string out;
  ASSERT_EQ(test::run_command(test::moe_binary() + " convert " + hf + " " + dir + "/m.gguf --type f32 2>&1", &out), 0)
      << out;
  const LoadedModel converted = load_model(dir + "/m.gguf");
  const std::vector<float> b = logits_of(converted);
  ASSERT_EQ(a.size(), b.size());
  float max_diff = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, std::abs(a[i] - b[i]));
  EXPECT_LT(max_diff, 1e-5f);  // the same f32 numbers, only moved

  const std::string src = MOE_SOURCE_DIR;
  if (!std::filesystem::exists(src + "/.cache/peers/node_modules/node-llama-cpp/package.json"))
    GTEST_SKIP() << "node-llama-cpp not installed (scripts/install-peers.sh)";
  const int64_t n = static_cast<int64_t>(kPrompt.size());
  write_npy_f32(dir + "/ours.npy", {n, kVocab}, a.data());
  std::ofstream(dir + "/ids.json") << json(kPrompt).dump();
  ASSERT_EQ(test::run_command("node " + src + "/scripts/llama-cpp-eval.mjs " + dir + "/m.gguf " + dir + "/ids.json " +
                                  dir + "/theirs.json 2>&1",
                              &out),
            0)
      << out;
  ASSERT_EQ(test::run_command("node " + src + "/scripts/compare-llama-cpp.mjs " + dir + "/ours.npy " + dir +
                                  "/theirs.json",
                              &out),
            0)
      << out;
  const auto r = json::parse(out);
  const double dp = r["max_dp_all"], dlogit = r["max_dlogit_all"];
  std::printf("[   INFO   ] HF DeepSeek-V3 dir vs llama.cpp on its moe-converted GGUF: max |dp| %.2e, max |dlogit| %.2e\n",
              dp, dlogit);
  EXPECT_LT(dp, 1e-5);
  EXPECT_LT(dlogit, 1e-3);
  EXPECT_TRUE(r["all_argmax_match"].get<bool>());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace moe

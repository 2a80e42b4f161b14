// `moe convert`: Hugging Face directories and GGUF files to GGUF.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/kernels.h"
#include "model/hf_model.h"
#include "testdata.h"

namespace moe {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string moe_cmd(const std::string& args, int* rc, bool merge_stderr = false) {
  std::string out;
  *rc = test::run_command(test::moe_binary() + " " + args + (merge_stderr ? " 2>&1" : " 2>/dev/null"), &out);
  return out;
}

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

// A one-layer Llama with n_embd 64 (rows of whole Q8_0 blocks) and n_ff 48 (not: f16 fallback),
// bf16 weights, and a byte-level BPE tokenizer of 256 byte tokens and a few merges.
void write_tiny_llama(const std::string& dir) {
  const json config = {{"architectures", {"LlamaForCausalLM"}},
                       {"hidden_size", 64},
                       {"num_hidden_layers", 1},
                       {"num_attention_heads", 4},
                       {"num_key_value_heads", 2},
                       {"intermediate_size", 48},
                       {"vocab_size", 260},
                       {"max_position_embeddings", 64},
                       {"rms_norm_eps", 1e-5},
                       {"rope_theta", 10000.0},
                       {"tie_word_embeddings", false}};
  std::ofstream(dir + "/config.json") << config.dump();
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 0.5f);
  SafetensorsWriter w;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<uint16_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = fp32_to_bf16(nd(rng));
    w.add(name, StDtype::kBF16, shape, v.data(), v.size() * 2);
  };
  add("model.embed_tokens.weight", {260, 64});
  add("model.layers.0.input_layernorm.weight", {64});
  add("model.layers.0.self_attn.q_proj.weight", {64, 64});
  add("model.layers.0.self_attn.k_proj.weight", {32, 64});
  add("model.layers.0.self_attn.v_proj.weight", {32, 64});
  add("model.layers.0.self_attn.o_proj.weight", {64, 64});
  add("model.layers.0.post_attention_layernorm.weight", {64});
  add("model.layers.0.mlp.gate_proj.weight", {48, 64});
  add("model.layers.0.mlp.up_proj.weight", {48, 64});
  add("model.layers.0.mlp.down_proj.weight", {64, 48});
  add("model.norm.weight", {64});
  add("lm_head.weight", {260, 64});
  w.write(dir + "/model.safetensors");

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

std::vector<float> as_floats(const GgufFile& f, const std::string& name) {
  const GgufTensorInfo* t = f.find_tensor(name);
  if (t == nullptr) throw std::runtime_error("no tensor " + name);
  const int64_t n0 = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
  std::vector<float> out(static_cast<size_t>(n0 * rows));
  const size_t rb = row_bytes(t->type, n0);
  for (int64_t r = 0; r < rows; ++r)
    kernels::dequantize_row(t->type, f.tensor_data(*t) + r * rb, out.data() + r * n0, n0);
  return out;
}

TEST(ConvertCli, HfDirectoryToQ8_0) {
  const std::string dir = test::temp_dir("conv-hf");
  write_tiny_llama(dir);
  const std::string out = dir + "/out.gguf";
  int rc;
  const std::string text = moe_cmd("convert " + dir + " " + out + " --type q8_0", &rc, true);
  ASSERT_EQ(rc, 0) << text;
  EXPECT_TRUE(contains(text, "q8_0")) << text;
  const auto g = GgufFile::open(out);
  const auto hf = open_hf_model(dir);
  EXPECT_EQ(g->alignment(), 32u);
  EXPECT_EQ(g->get_int("general.file_type", -1), 7);
  // Metadata: exactly the Hugging Face view's, with the new file type.
  ASSERT_EQ(g->metadata().size(), hf->metadata().size());
  for (size_t i = 0; i < hf->metadata().size(); ++i) {
    const auto& [k, v] = hf->metadata()[i];
    EXPECT_EQ(g->metadata()[i].first, k);
    if (k != "general.file_type") {
      EXPECT_EQ(g->metadata()[i].second.to_display(SIZE_MAX), v.to_display(SIZE_MAX)) << k;
    }
  }
  // llama.cpp's type rules.
  const std::map<std::string, DType> want = {
      {"token_embd.weight", DType::Q8_0},     {"blk.0.attn_norm.weight", DType::F32},
      {"blk.0.attn_q.weight", DType::Q8_0},   {"blk.0.attn_k.weight", DType::Q8_0},
      {"blk.0.ffn_gate.weight", DType::Q8_0}, {"blk.0.ffn_down.weight", DType::F16},  // 48 % 32 != 0
      {"blk.0.ffn_norm.weight", DType::F32},  {"output_norm.weight", DType::F32},
      {"output.weight", DType::Q8_0}};
  for (const auto& [name, type] : want) {
    const GgufTensorInfo* t = g->find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->type, type) << name;
  }
  EXPECT_EQ(g->tensors().size(), hf->tensors().size());
  // Values: within Q8_0's error of the (permuted) source; f16 and f32 ones exact for bf16 input.
  for (const std::string name : {"blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.0.attn_norm.weight"}) {
    const std::vector<float> a = as_floats(*g, name), b = as_floats(*hf, name);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 0.02f) << name << "[" << i << "]";
  }
  EXPECT_EQ(as_floats(*g, "blk.0.ffn_down.weight"), as_floats(*hf, "blk.0.ffn_down.weight"));

  // The result runs.
  const std::string gen = moe_cmd("run -m " + out + " -p 'hi' -n 4 --temp 0", &rc, true);
  EXPECT_EQ(rc, 0) << gen;
  fs::remove_all(dir);
}

TEST(ConvertCli, HfAutoTypeIsBf16AndF32Works) {
  const std::string dir = test::temp_dir("conv-auto");
  write_tiny_llama(dir);
  int rc;
  moe_cmd("convert " + dir + " " + dir + "/a.gguf", &rc);
  ASSERT_EQ(rc, 0);
  const auto a = GgufFile::open(dir + "/a.gguf");
  EXPECT_EQ(a->get_int("general.file_type", -1), 32);
  EXPECT_EQ(a->find_tensor("blk.0.attn_v.weight")->type, DType::BF16);
  EXPECT_EQ(a->find_tensor("blk.0.attn_norm.weight")->type, DType::F32);  // norms as f32
  moe_cmd("convert " + dir + " " + dir + "/f.gguf --type f32", &rc);
  ASSERT_EQ(rc, 0);
  const auto f = GgufFile::open(dir + "/f.gguf");
  EXPECT_EQ(f->get_int("general.file_type", -1), 0);
  for (const GgufTensorInfo& t : f->tensors()) EXPECT_EQ(t.type, DType::F32) << t.name;
  EXPECT_EQ(as_floats(*f, "blk.0.attn_v.weight"), as_floats(*a, "blk.0.attn_v.weight"));
  fs::remove_all(dir);
}

TEST(ConvertCli, RetypesGgufFiles) {
  const std::string dir = test::temp_dir("conv-gguf");
  const std::string model = test::testdata("models/stories260K.gguf");
  int rc;
  moe_cmd("convert " + model + " " + dir + "/q.gguf --type q8_0", &rc);
  ASSERT_EQ(rc, 0);
  moe_cmd("convert " + dir + "/q.gguf " + dir + "/q2.gguf", &rc);  // auto: keeps q8_0
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(test::read_file(dir + "/q.gguf"), test::read_file(dir + "/q2.gguf"));
  const auto src = GgufFile::open(model), q = GgufFile::open(dir + "/q.gguf");
  EXPECT_EQ(q->get_int("general.file_type", -1), 7);
  EXPECT_EQ(q->tensors().size(), src->tensors().size());
  for (const GgufTensorInfo& t : q->tensors()) {
    const DType want = t.n_dims <= 1 ? DType::F32 : t.ne[0] % 32 == 0 ? DType::Q8_0 : DType::F16;
    EXPECT_EQ(t.type, want) << t.name;
  }
  const std::string gen = moe_cmd("run -m " + dir + "/q.gguf -p '' -n 8 --temp 0", &rc, true);
  EXPECT_EQ(rc, 0) << gen;
  moe_cmd("convert " + dir + "/q.gguf " + dir + "/f.gguf --type f32", &rc);
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(GgufFile::open(dir + "/f.gguf")->get_int("general.file_type", -1), 0);
  fs::remove_all(dir);
}

TEST(ConvertCli, ErrorsAreOneLine) {
  const std::string dir = test::temp_dir("conv-err");
  int rc;
  std::string err = moe_cmd("convert /nonexistent/model " + dir + "/o.gguf", &rc, true);
  EXPECT_EQ(rc, 1);
  EXPECT_TRUE(contains(err, "/nonexistent/model")) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  err = moe_cmd("convert " + dir + " " + dir + "/o.gguf", &rc, true);
  EXPECT_EQ(rc, 1);
  EXPECT_TRUE(contains(err, "config.json")) << err;
  err = moe_cmd("convert " + dir + " " + dir + "/o.gguf --type q4_k", &rc, true);
  EXPECT_EQ(rc, 2);
  EXPECT_TRUE(contains(err, "q4_k")) << err;
  write_tiny_llama(dir);
  std::ofstream(dir + "/config.json") << R"({"architectures": ["BertModel"]})";
  err = moe_cmd("convert " + dir + " " + dir + "/o.gguf", &rc, true);
  EXPECT_EQ(rc, 1);
  EXPECT_TRUE(contains(err, "BertModel")) << err;
  EXPECT_FALSE(fs::exists(dir + "/o.gguf"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace moe

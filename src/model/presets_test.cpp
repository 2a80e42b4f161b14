#include "model/presets.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "model/hf_vocab.h"
#include "testdata.h"
#include "tokenizer/load.h"

namespace moe {
namespace {

namespace fs = std::filesystem;

std::string sha256_hex(const std::string& bytes) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EXPECT_EQ(EVP_Digest(bytes.data(), bytes.size(), d, &len, EVP_sha256(), nullptr), 1);
  std::string hex;
  char buf[3];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", d[i]);
    hex += buf;
  }
  return hex;
}

// The options `moe init --preset P --reduced --seed 3 [--type T] [--old-mla-layout]` passes.
RandomModelOptions init_options(const Preset& p, const ModelConfig& c, DType type, bool old_mla) {
  RandomModelOptions opt;
  opt.seed = 3;
  opt.mla_split = !old_mla;
  opt.yarn_log_multiplier = p.yarn_log_multiplier;
  opt.type = type;
  opt.synthetic_vocab = c.n_vocab >= 260;
  return opt;
}

// write_random_model's files are pinned: these hashes are of the files `moe init` wrote before
// write_model existed (commit f5a34d0), so any change to the values, their order or the layout shows.
// One deliberate change since: bf16 files say general.file_type = 32 (llama.cpp's MOSTLY_BF16), not 7.
TEST(Presets, RandomModelBytesUnchanged) {
  struct Case {
    const char* preset;
    DType type;
    bool old_mla;
    const char* sha256;
  };
  const Case cases[] = {
      {"deepseek-r1", DType::F32, false, "b6a7894d2428aa22bc19dab177859096c23f1415769b298c723faa0b1ae0d943"},
      {"deepseek-r1", DType::F32, true, "dd4eeb466ca214cb1f36d3f9a788dc4def2771c2657143206f7e0aaae8565544"},
      {"seed-moe", DType::F32, false, "abf9a768aebe9c0f28154e89e10177932fec213b246dd3d5182741b5d701ddfb"},
      {"seed-moe", DType::BF16, false, "cb23bae1fd6e2ab4a63d95b5c6b3bcb0b8dde90dca74d879327005c9bc599df9"},
  };
  const std::string dir = test::temp_dir("presets-bytes");
  for (const Case& k : cases) {
    const Preset& p = find_preset(k.preset);
    const ModelConfig c = reduced(p.config);
    const std::string path = dir + "/m.gguf";
    write_random_model(c, init_options(p, c, k.type, k.old_mla), path);
    EXPECT_EQ(sha256_hex(test::read_file(path)), k.sha256)
        << k.preset << " type " << int(k.type) << (k.old_mla ? " old MLA layout" : "");
  }
  fs::remove_all(dir);
}

// A value source that makes every element tell where it came from: tensor index * 1000 + element index
// (small tensors only), recording what it was asked for.
struct TaggedValues {
  std::map<std::string, std::vector<int64_t>> asked;
  std::vector<float> operator()(const std::string& name, const std::vector<int64_t>& ne) {
    asked[name] = ne;
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(i % 4096) + 0.5f;
    return v;
  }
};

std::vector<float> tensor_f32(const GgufFile& f, const std::string& name) {
  const GgufTensorInfo* t = f.find_tensor(name);
  EXPECT_NE(t, nullptr) << name;
  if (!t) return {};
  EXPECT_EQ(t->type, DType::F32) << name;
  int64_t n = 1;
  for (int64_t d : t->ne) n *= d;
  std::vector<float> v(static_cast<size_t>(n));
  std::memcpy(v.data(), f.tensor_data(*t), v.size() * sizeof(float));
  return v;
}

TEST(Presets, WriteModelTakesValuesByName) {
  const ModelConfig c = reduced(find_preset("deepseek-r1").config);
  const int64_t H = c.n_head, rank = c.kv_lora_rank, nope = c.qk_nope_dim, dv = c.head_dim_v;
  const std::string dir = test::temp_dir("presets-values");
  for (bool split : {false, true}) {
    RandomModelOptions opt;
    opt.mla_split = split;
    TaggedValues src;
    const std::string path = dir + "/m.gguf";
    write_model(c, opt, std::ref(src), path);
    // Asked for the combined kv_b in either layout, never for the split halves.
    ASSERT_EQ(src.asked.count("blk.0.attn_kv_b.weight"), 1u);
    EXPECT_EQ(src.asked["blk.0.attn_kv_b.weight"], (std::vector<int64_t>{rank, H * (nope + dv)}));
    EXPECT_EQ(src.asked.count("blk.0.attn_k_b.weight"), 0u);
    EXPECT_EQ(src.asked["token_embd.weight"], (std::vector<int64_t>{c.n_embd, c.n_vocab}));
    const auto f = GgufFile::open(path);
    // Every tensor but the split halves holds the source's values as given.
    for (const auto& [name, ne] : src.asked) {
      if (split && name.find("attn_kv_b") != std::string::npos) continue;
      EXPECT_EQ(tensor_f32(*f, name), src(name, ne)) << name;
    }
    TaggedValues fresh;
    const std::vector<float> kv_b = fresh("", {rank, H * (nope + dv)});
    if (split) {
      EXPECT_EQ(f->find_tensor("blk.0.attn_kv_b.weight"), nullptr);
      const std::vector<float> k_b = tensor_f32(*f, "blk.1.attn_k_b.weight");
      const std::vector<float> v_b = tensor_f32(*f, "blk.1.attn_v_b.weight");
      ASSERT_EQ(k_b.size(), static_cast<size_t>(H * rank * nope));
      ASSERT_EQ(v_b.size(), static_cast<size_t>(H * dv * rank));
      for (int64_t h = 0; h < H; ++h)
        for (int64_t k = 0; k < rank; ++k) {
          for (int64_t i = 0; i < nope; ++i)
            ASSERT_EQ(k_b[(h * rank + k) * nope + i], kv_b[(h * (nope + dv) + i) * rank + k]);
          for (int64_t i = 0; i < dv; ++i)
            ASSERT_EQ(v_b[(h * dv + i) * rank + k], kv_b[(h * (nope + dv) + nope + i) * rank + k]);
        }
    } else {
      EXPECT_EQ(tensor_f32(*f, "blk.1.attn_kv_b.weight"), kv_b);
    }
  }
  // A source giving the wrong number of values is named.
  const std::string e = test::error_of([&] {
    write_model(
        c, RandomModelOptions{},
        [](const std::string& name, const std::vector<int64_t>& ne) {
          return std::vector<float>(name == "output_norm.weight" ? 3 : static_cast<size_t>(ne[0]) * ne[1],
                                    0.0f);
        },
        dir + "/bad.gguf");
  });
  EXPECT_NE(e.find("output_norm.weight"), std::string::npos) << e;
  fs::remove_all(dir);
}

// An exporter's path: the tokenizer of a Hugging Face tokenizer.json added through extra_kv.
TEST(Presets, ExtraKvCarriesAnHfTokenizer) {
  const std::string src = fs::path(test::testdata("tokenizers/qwen3/tokenizer.json")).parent_path().string();
  const std::string dir = test::temp_dir("presets-hf-vocab");
  fs::copy_file(src + "/tokenizer.json", dir + "/tokenizer.json");
  fs::copy_file(src + "/tokenizer_config.json", dir + "/tokenizer_config.json");
  // add_hf_bpe_vocab also reads config.json (for *_token_id fallbacks); an empty object is enough.
  std::ofstream(dir + "/config.json") << "{}";
  const Preset& p = find_preset("seed-moe");
  ModelConfig c = reduced(p.config);
  c.n_vocab = 151936;  // Qwen3's vocab_size (the tokenizer has fewer tokens; the rest are padding)
  RandomModelOptions opt;
  opt.type = DType::BF16;
  opt.tied_output = true;
  add_hf_bpe_vocab(dir, c.n_vocab, c.arch == "llama", &opt.extra_kv);
  opt.extra_kv.emplace_back("general.source", GgufValue::str("test"));
  const std::string path = dir + "/m.gguf";
  write_model(
      c, opt,
      [](const std::string&, const std::vector<int64_t>& ne) {
        int64_t n = 1;
        for (int64_t d : ne) n *= d;
        return std::vector<float>(static_cast<size_t>(n), 0.01f);
      },
      path);
  const auto f = GgufFile::open(path);
  EXPECT_EQ(f->get_string("tokenizer.ggml.model", ""), "gpt2");
  EXPECT_EQ(f->get_string("general.source", ""), "test");
  // The extra keys come after the model's own keys.
  const auto& md = f->metadata();
  size_t arch_at = md.size(), tok_at = md.size();
  for (size_t i = 0; i < md.size(); ++i) {
    if (md[i].first == "general.architecture") arch_at = i;
    if (md[i].first == "tokenizer.ggml.model") tok_at = i;
  }
  EXPECT_LT(arch_at, tok_at);
  const LoadedTokenizer t = load_tokenizer(path);
  EXPECT_EQ(t.tokenizer->encode("Hello world", false), (std::vector<int32_t>{9707, 1879}));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace moe

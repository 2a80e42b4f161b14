#include "model/hf_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/safetensors.h"
#include "testdata.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace moe {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Shape = std::vector<int64_t>;

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

// GPT-2's byte -> character map (as UTF-8).
std::string byte_char(int b) {
  int cp = b;
  if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
    int n = 0;
    for (int x = 0; x < b; ++x)
      if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

const char* const kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// A small byte-level BPE (258 model tokens + 3 added) with Qwen2's pre-tokenizer.
void write_tiny_tokenizer(const std::string& dir, const json& pre_tokenizer = json()) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  vocab["\xc4\xa0t"] = 256;  // "Ġt"
  vocab["he"] = 257;
  json added = json::array();
  int id = 258;
  for (const auto& [content, special] :
       {std::pair{"<|endoftext|>", true}, {"<think>", false}, {"<|im_end|>", true}})
    added.push_back({{"id", id++},
                     {"content", content},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", special}});
  json pre = pre_tokenizer.is_null() ? json{{"type", "Sequence"},
                                            {"pretokenizers",
                                             {{{"type", "Split"},
                                               {"pattern", {{"Regex", kQwen2Regex}}},
                                               {"behavior", "Isolated"},
                                               {"invert", false}},
                                              {{"type", "ByteLevel"},
                                               {"add_prefix_space", false},
                                               {"trim_offsets", false},
                                               {"use_regex", false}}}}}
                                     : pre_tokenizer;
  const json tj = {{"version", "1.0"},
                   {"added_tokens", added},
                   {"normalizer", nullptr},
                   {"pre_tokenizer", pre},
                   {"post_processor", nullptr},
                   {"decoder", {{"type", "ByteLevel"}}},
                   {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"\xc4\xa0 t", "h e"}}}}};
  std::ofstream(dir + "/tokenizer.json") << tj.dump();
  const json tc = {{"bos_token", nullptr},
                   {"eos_token", "<|im_end|>"},
                   {"add_bos_token", false},
                   {"chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}"}};
  std::ofstream(dir + "/tokenizer_config.json") << tc.dump();
}

// A Hugging Face directory being written: config, tensors (remembered as floats) and tokenizer.
struct HfDir {
  std::string dir;
  json config;
  SafetensorsWriter st;
  std::map<std::string, std::vector<float>> values;  // what each tensor holds, after rounding
  std::mt19937 rng{42};

  explicit HfDir(const std::string& tag) : dir(test::temp_dir(tag)) {}
  ~HfDir() { fs::remove_all(dir); }

  std::vector<float> random(int64_t n) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = u(rng);
    return v;
  }
  static int64_t numel(const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    return n;
  }
  void f32(const std::string& name, const Shape& shape) {
    values[name] = random(numel(shape));
    st.add_f32(name, shape, values[name]);
  }
  void bf16(const std::string& name, const Shape& shape) {
    std::vector<float> v = random(numel(shape));
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      h[i] = fp32_to_bf16(v[i]);
      v[i] = bf16_to_fp32(h[i]);
    }
    st.add(name, StDtype::kBF16, shape, h.data(), h.size() * 2);
    values[name] = v;
  }
  // FP8 weight [rows, cols] with an f32 weight_scale_inv in blocks of block x block; values holds
  // the dequantized weight rounded to bf16 (what open_hf_model gives).
  void fp8(const std::string& name, const Shape& shape, int64_t block) {
    const int64_t rows = shape[0], cols = shape[1];
    const int64_t sr = (rows + block - 1) / block, sc = (cols + block - 1) / block;
    std::vector<uint8_t> q(static_cast<size_t>(rows * cols));
    for (auto& x : q) x = fp32_to_fp8_e4m3(std::uniform_real_distribution<float>(-8.0f, 8.0f)(rng));
    std::vector<float> s(static_cast<size_t>(sr * sc));
    for (float& x : s) x = std::uniform_real_distribution<float>(0.01f, 0.5f)(rng);
    st.add(name, StDtype::kF8E4M3, shape, q.data(), q.size());
    st.add_f32(name + "_scale_inv", {sr, sc}, s);
    std::vector<float> v(q.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        v[r * cols + c] =
            bf16_to_fp32(fp32_to_bf16(fp8_e4m3_to_fp32(q[r * cols + c]) * s[(r / block) * sc + c / block]));
    values[name] = v;
  }
  void write(bool tokenizer = true) {
    std::ofstream(dir + "/config.json") << config.dump(2);
    st.write(dir + "/model.safetensors");
    if (tokenizer) write_tiny_tokenizer(dir);
  }
};

// A GGUF tensor's values as floats.
std::vector<float> floats(const GgufFile& f, const std::string& name) {
  const GgufTensorInfo* t = f.find_tensor(name);
  if (t == nullptr) throw std::runtime_error("no tensor " + name);
  const uint8_t* p = f.tensor_data(*t);
  const int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    switch (t->type) {
      case DType::F32:
        std::memcpy(&out[i], p + 4 * i, 4);
        break;
      case DType::BF16:
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = bf16_to_fp32(h);
        break;
      case DType::F16:
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = fp16_to_fp32(h);
        break;
      default:
        throw std::runtime_error("unexpected type");
    }
  }
  return out;
}

std::vector<int64_t> ne(const GgufFile& f, const std::string& name) {
  const GgufTensorInfo* t = f.find_tensor(name);
  if (t == nullptr) return {};
  return std::vector<int64_t>(t->ne, t->ne + t->n_dims);
}

std::string open_error(const std::string& dir) {
  try {
    open_hf_model(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// ---- llama ----

json llama_config() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"hidden_size", 16},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"intermediate_size", 24},
          {"vocab_size", 300},
          {"max_position_embeddings", 128},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 500000.0},
          {"tie_word_embeddings", false},
          {"rope_scaling",
           {{"rope_type", "llama3"},
            {"factor", 8.0},
            {"low_freq_factor", 1.0},
            {"high_freq_factor", 4.0},
            {"original_max_position_embeddings", 64}}}};
}

void add_llama_layers(HfDir& h, int n_layer, bool biases, bool dense = true) {
  for (int il = 0; il < n_layer; ++il) {
    const std::string L = "model.layers." + std::to_string(il) + ".";
    h.bf16(L + "input_layernorm.weight", {16});
    h.bf16(L + "self_attn.q_proj.weight", {16, 16});
    h.bf16(L + "self_attn.k_proj.weight", {8, 16});
    h.bf16(L + "self_attn.v_proj.weight", {8, 16});
    h.bf16(L + "self_attn.o_proj.weight", {16, 16});
    if (biases) {
      h.f32(L + "self_attn.q_proj.bias", {16});
      h.f32(L + "self_attn.k_proj.bias", {8});
      h.f32(L + "self_attn.v_proj.bias", {8});
    }
    h.bf16(L + "post_attention_layernorm.weight", {16});
    if (dense) {
      h.bf16(L + "mlp.gate_proj.weight", {24, 16});
      h.bf16(L + "mlp.up_proj.weight", {24, 16});
      h.bf16(L + "mlp.down_proj.weight", {16, 24});
    }
  }
}

TEST(HfModelLlama, MetadataPermuteRopeFreqsAndZeroCopy) {
  HfDir h("hf-llama");
  h.config = llama_config();
  h.bf16("model.embed_tokens.weight", {300, 16});
  add_llama_layers(h, 2, false);
  h.bf16("model.norm.weight", {16});
  h.bf16("lm_head.weight", {300, 16});
  h.f32("model.layers.0.self_attn.rotary_emb.inv_freq", {2});  // ignored, as the converter does
  h.write();
  const auto f = open_hf_model(h.dir);
  EXPECT_EQ(f->get_string("general.architecture", ""), "llama");
  EXPECT_EQ(f->get_string("general.name", ""), fs::path(h.dir).filename().string());
  EXPECT_EQ(f->get_int("llama.block_count", 0), 2);
  EXPECT_EQ(f->get_int("llama.context_length", 0), 128);
  EXPECT_EQ(f->get_int("llama.embedding_length", 0), 16);
  EXPECT_EQ(f->get_int("llama.feed_forward_length", 0), 24);
  EXPECT_EQ(f->get_int("llama.attention.head_count", 0), 4);
  EXPECT_EQ(f->get_int("llama.attention.head_count_kv", 0), 2);
  EXPECT_EQ(f->get("llama.attention.head_count_kv").type(), GgufType::UINT32);
  EXPECT_FLOAT_EQ(f->get_float("llama.rope.freq_base", 0), 500000.0f);
  EXPECT_EQ(f->get("llama.rope.freq_base").type(), GgufType::FLOAT32);
  EXPECT_FLOAT_EQ(f->get_float("llama.attention.layer_norm_rms_epsilon", 0), 1e-5f);
  EXPECT_EQ(f->get_int("llama.vocab_size", 0), 300);
  EXPECT_EQ(f->get_int("llama.rope.dimension_count", 0), 4);
  EXPECT_EQ(f->find("llama.rope.scaling.type"), nullptr);  // llama3 scaling is the rope_freqs tensor
  EXPECT_EQ(f->get_int("general.file_type", -1), 32);      // bf16
  EXPECT_EQ(f->get_int("general.quantization_version", 0), 2);

  // Q and K rows: within each head, row 2i + j of the result is row j * half + i of HF's.
  for (const auto& [hf, gg, heads] : {std::tuple{"q_proj", "attn_q", 4}, std::tuple{"k_proj", "attn_k", 2}}) {
    const std::vector<float>& src = h.values[std::string("model.layers.1.self_attn.") + hf + ".weight"];
    const std::vector<float> got = floats(*f, std::string("blk.1.") + gg + ".weight");
    ASSERT_EQ(got.size(), src.size());
    const int hd = 4, half = 2, cols = 16;
    for (int hh = 0; hh < heads; ++hh)
      for (int i = 0; i < half; ++i)
        for (int j = 0; j < 2; ++j)
          for (int c = 0; c < cols; ++c)
            ASSERT_EQ(got[(hh * hd + 2 * i + j) * cols + c], src[(hh * hd + j * half + i) * cols + c]) << gg;
  }
  EXPECT_EQ(floats(*f, "blk.1.attn_v.weight"), h.values["model.layers.1.self_attn.v_proj.weight"]);
  EXPECT_EQ(ne(*f, "blk.0.ffn_down.weight"), (std::vector<int64_t>{24, 16}));
  EXPECT_EQ(ne(*f, "token_embd.weight"), (std::vector<int64_t>{16, 300}));
  EXPECT_NE(f->find_tensor("output.weight"), nullptr);

  // rope_freqs: 1 for short wavelengths, factor for long ones, smooth in between.
  const std::vector<float> rf = floats(*f, "rope_freqs.weight");
  ASSERT_EQ(rf.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const double freq = 1.0 / std::pow(500000.0, 2.0 * i / 4.0), wavelen = 2 * M_PI / freq;
    double want = 1.0;
    if (wavelen > 64.0) {
      want = 8.0;
    } else if (wavelen >= 16.0) {
      const double smooth = (64.0 / wavelen - 1.0) / 3.0;
      want = 1.0 / ((1 - smooth) / 8.0 + smooth);
    }
    EXPECT_NEAR(rf[i], want, 1e-5) << i;
  }

  // Untransformed tensors are views into the one mapping of model.safetensors (no copy): their
  // addresses differ by exactly their offsets in the file.
  const auto st = SafetensorsFile::open(h.dir + "/model.safetensors");
  const auto addr = [&](const std::string& g) { return f->tensor_data(*f->find_tensor(g)); };
  const auto off = [&](const std::string& n) { return st->find(n)->data; };
  EXPECT_EQ(addr("blk.1.attn_v.weight") - addr("token_embd.weight"),
            off("model.layers.1.self_attn.v_proj.weight") - off("model.embed_tokens.weight"));
  EXPECT_EQ(addr("output_norm.weight") - addr("token_embd.weight"),
            off("model.norm.weight") - off("model.embed_tokens.weight"));

  // Tokenizer metadata from the tiny tokenizer: tokens padded to vocab_size with [PAD{i}].
  EXPECT_EQ(f->get_string("tokenizer.ggml.model", ""), "gpt2");
  EXPECT_EQ(f->get_string("tokenizer.ggml.pre", ""), "qwen2");
  const std::vector<std::string> toks = f->get("tokenizer.ggml.tokens").as_string_array();
  const std::vector<int64_t> types = f->get("tokenizer.ggml.token_type").as_int_array();
  ASSERT_EQ(toks.size(), 300u);
  EXPECT_EQ(toks[256], "\xc4\xa0t");
  EXPECT_EQ(toks[258], "<|endoftext|>");
  EXPECT_EQ(toks[261], "[PAD261]");
  EXPECT_EQ(toks[299], "[PAD299]");
  EXPECT_EQ(types[0], 1);
  EXPECT_EQ(types[258], 3);  // special
  EXPECT_EQ(types[259], 4);  // <think>: not special -> user-defined
  EXPECT_EQ(types[299], 5);
  EXPECT_EQ(f->get("tokenizer.ggml.merges").as_string_array(),
            (std::vector<std::string>{"\xc4\xa0 t", "h e"}));
  EXPECT_EQ(f->get_int("tokenizer.ggml.eos_token_id", -1), 260);
  EXPECT_EQ(f->find("tokenizer.ggml.bos_token_id"), nullptr);
  EXPECT_FALSE(f->get_bool("tokenizer.ggml.add_bos_token", true));
  EXPECT_EQ(f->get_string("tokenizer.chat_template", ""),
            "{% for m in messages %}{{ m.content }}{% endfor %}");
  const auto tok = tokenizer_from_gguf(*f);
  EXPECT_EQ(tok->encode(" the<think>", true), (std::vector<int32_t>{256, 257, 259}));
}

TEST(HfModelLlama, TiedEmbeddingsAndBiases) {
  HfDir h("hf-llama-tied");
  h.config = llama_config();
  h.config["tie_word_embeddings"] = true;
  h.config["attention_bias"] = true;
  h.config.erase("rope_scaling");
  h.bf16("model.embed_tokens.weight", {300, 16});
  add_llama_layers(h, 2, true);
  h.bf16("model.norm.weight", {16});
  h.write();
  const auto f = open_hf_model(h.dir);
  EXPECT_EQ(f->find_tensor("output.weight"), nullptr);
  EXPECT_EQ(f->find_tensor("rope_freqs.weight"), nullptr);
  // The q bias is permuted like the q rows; v is not.
  const std::vector<float>& qb = h.values["model.layers.0.self_attn.q_proj.bias"];
  const std::vector<float> got = floats(*f, "blk.0.attn_q.bias");
  EXPECT_EQ(got[1], qb[2]);  // head 0: row 2i + j <- row j * 2 + i, so 1 <- 2
  EXPECT_EQ(got[2], qb[1]);
  EXPECT_EQ(floats(*f, "blk.0.attn_v.bias"), h.values["model.layers.0.self_attn.v_proj.bias"]);
}

TEST(HfModelMixtral, ExpertsAreStacked) {
  HfDir h("hf-mixtral");
  h.config = llama_config();
  h.config["architectures"] = {"MixtralForCausalLM"};
  h.config["num_local_experts"] = 3;
  h.config["num_experts_per_tok"] = 2;
  h.config.erase("rope_scaling");
  h.f32("model.embed_tokens.weight", {300, 16});
  add_llama_layers(h, 2, false, false);
  for (int il = 0; il < 2; ++il) {
    const std::string L = "model.layers." + std::to_string(il) + ".block_sparse_moe.";
    h.f32(L + "gate.weight", {3, 16});
    for (int x = 0; x < 3; ++x) {
      const std::string E = L + "experts." + std::to_string(x) + ".";
      h.f32(E + "w1.weight", {24, 16});
      h.f32(E + "w2.weight", {16, 24});
      h.f32(E + "w3.weight", {24, 16});
    }
  }
  h.f32("model.norm.weight", {16});
  h.f32("lm_head.weight", {300, 16});
  h.write();
  const auto f = open_hf_model(h.dir);
  EXPECT_EQ(f->get_string("general.architecture", ""), "llama");
  EXPECT_EQ(f->get_int("llama.expert_count", 0), 3);
  EXPECT_EQ(f->get_int("llama.expert_used_count", 0), 2);
  EXPECT_EQ(f->get_int("general.file_type", -1), 32);  // the attention weights are bf16
  EXPECT_EQ(ne(*f, "blk.1.ffn_gate_inp.weight"), (std::vector<int64_t>{16, 3}));
  EXPECT_EQ(ne(*f, "blk.1.ffn_gate_exps.weight"), (std::vector<int64_t>{16, 24, 3}));
  EXPECT_EQ(ne(*f, "blk.1.ffn_up_exps.weight"), (std::vector<int64_t>{16, 24, 3}));
  EXPECT_EQ(ne(*f, "blk.1.ffn_down_exps.weight"), (std::vector<int64_t>{24, 16, 3}));
  for (const auto& [w, gg] : {std::pair{"w1", "gate"}, std::pair{"w3", "up"}, std::pair{"w2", "down"}}) {
    const std::vector<float> got = floats(*f, std::string("blk.1.ffn_") + gg + "_exps.weight");
    for (int x = 0; x < 3; ++x) {
      const std::vector<float>& src =
          h.values["model.layers.1.block_sparse_moe.experts." + std::to_string(x) + "." + w + ".weight"];
      ASSERT_TRUE(std::equal(src.begin(), src.end(), got.begin() + x * 384)) << gg << " expert " << x;
    }
  }
  EXPECT_EQ(f->find_tensor("blk.0.ffn_gate.weight"), nullptr);
}

// ---- qwen2 ----

TEST(HfModelQwen2, BiasesNoPermuteTied) {
  HfDir h("hf-qwen2");
  h.config = {{"architectures", {"Qwen2ForCausalLM"}},
              {"hidden_size", 16},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 4},
              {"num_key_value_heads", 2},
              {"intermediate_size", 24},
              {"vocab_size", 300},
              {"max_position_embeddings", 256},
              {"rms_norm_eps", 1e-6},
              {"rope_theta", 10000.0},
              {"tie_word_embeddings", true},
              {"bos_token_id", 258}};
  h.bf16("model.embed_tokens.weight", {300, 16});
  add_llama_layers(h, 2, true);
  h.bf16("model.norm.weight", {16});
  h.write();
  const auto f = open_hf_model(h.dir);
  EXPECT_EQ(f->get_string("general.architecture", ""), "qwen2");
  EXPECT_EQ(f->get_int("qwen2.context_length", 0), 256);
  EXPECT_EQ(f->get_int("qwen2.attention.head_count_kv", 0), 2);
  EXPECT_EQ(f->find("qwen2.vocab_size"), nullptr);  // Qwen2Model does not write it
  EXPECT_EQ(f->find("qwen2.rope.dimension_count"), nullptr);
  EXPECT_EQ(floats(*f, "blk.1.attn_q.weight"), h.values["model.layers.1.self_attn.q_proj.weight"]);
  EXPECT_EQ(floats(*f, "blk.1.attn_k.bias"), h.values["model.layers.1.self_attn.k_proj.bias"]);
  EXPECT_EQ(ne(*f, "blk.0.attn_q.bias"), (std::vector<int64_t>{16}));
  EXPECT_EQ(f->find_tensor("output.weight"), nullptr);
  EXPECT_EQ(f->get_int("tokenizer.ggml.bos_token_id", -1), 258);  // from config.json
  EXPECT_EQ(f->get_int("tokenizer.ggml.eos_token_id", -1), 260);  // from tokenizer_config.json
}

// ---- deepseek2 ----

// n_head 2, q_lora 8, kv_lora 8, nope 4, rope 2, v 3; layer 0 dense, layer 1 MoE (4 experts, 1
// shared), layer 2 multi-token prediction (skipped). FP8 linear weights in blocks of 4x4.
json deepseek_config() {
  return {{"architectures", {"DeepseekV3ForCausalLM"}},
          {"hidden_size", 16},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 2},
          {"num_key_value_heads", 2},
          {"intermediate_size", 20},
          {"moe_intermediate_size", 6},
          {"vocab_size", 300},
          {"max_position_embeddings", 4096},
          {"q_lora_rank", 8},
          {"kv_lora_rank", 8},
          {"qk_nope_head_dim", 4},
          {"qk_rope_head_dim", 2},
          {"v_head_dim", 3},
          {"n_routed_experts", 4},
          {"num_experts_per_tok", 2},
          {"n_shared_experts", 1},
          {"first_k_dense_replace", 1},
          {"moe_layer_freq", 1},
          {"n_group", 2},
          {"topk_group", 1},
          {"scoring_func", "sigmoid"},
          {"norm_topk_prob", true},
          {"routed_scaling_factor", 2.5},
          {"topk_method", "noaux_tc"},
          {"rms_norm_eps", 1e-6},
          {"rope_theta", 10000},
          {"num_nextn_predict_layers", 1},
          {"tie_word_embeddings", false},
          {"rope_scaling",
           {{"type", "yarn"},
            {"factor", 40},
            {"original_max_position_embeddings", 16},
            {"beta_fast", 32},
            {"beta_slow", 1},
            {"mscale", 1.0},
            {"mscale_all_dim", 1.0}}},
          {"quantization_config",
           {{"quant_method", "fp8"},
            {"fmt", "e4m3"},
            {"activation_scheme", "dynamic"},
            {"weight_block_size", {4, 4}}}}};
}

void add_deepseek_tensors(HfDir& h, bool fp8, bool q_lora, int n_layer_files, int64_t vocab = 300,
                          int n_expert = 4) {
  auto lin = [&](const std::string& n, const Shape& s) { fp8 ? h.fp8(n, s, 4) : h.bf16(n, s); };
  h.bf16("model.embed_tokens.weight", {vocab, 16});
  for (int il = 0; il < n_layer_files; ++il) {
    const std::string L = "model.layers." + std::to_string(il) + ".";
    h.bf16(L + "input_layernorm.weight", {16});
    if (q_lora) {
      lin(L + "self_attn.q_a_proj.weight", {8, 16});
      h.bf16(L + "self_attn.q_a_layernorm.weight", {8});
      lin(L + "self_attn.q_b_proj.weight", {12, 8});
    } else {
      lin(L + "self_attn.q_proj.weight", {12, 16});
    }
    lin(L + "self_attn.kv_a_proj_with_mqa.weight", {10, 16});
    h.bf16(L + "self_attn.kv_a_layernorm.weight", {8});
    lin(L + "self_attn.kv_b_proj.weight", {14, 8});
    lin(L + "self_attn.o_proj.weight", {16, 6});
    h.bf16(L + "post_attention_layernorm.weight", {16});
    if (il == 0) {
      lin(L + "mlp.gate_proj.weight", {20, 16});
      lin(L + "mlp.up_proj.weight", {20, 16});
      lin(L + "mlp.down_proj.weight", {16, 20});
      continue;
    }
    h.bf16(L + "mlp.gate.weight", {4, 16});
    if (fp8) h.f32(L + "mlp.gate.e_score_correction_bias", {4});
    for (int x = 0; x < n_expert; ++x) {
      const std::string E = L + "mlp.experts." + std::to_string(x) + ".";
      lin(E + "gate_proj.weight", {6, 16});
      lin(E + "up_proj.weight", {6, 16});
      lin(E + "down_proj.weight", {16, 6});
    }
    lin(L + "mlp.shared_experts.gate_proj.weight", {6, 16});
    lin(L + "mlp.shared_experts.up_proj.weight", {6, 16});
    lin(L + "mlp.shared_experts.down_proj.weight", {16, 6});
  }
  h.bf16("model.norm.weight", {16});
  h.bf16("lm_head.weight", {vocab, 16});
}

TEST(HfModelDeepseek2, V3Fp8MetadataSplitAndExperts) {
  HfDir h("hf-ds3");
  h.config = deepseek_config();
  add_deepseek_tensors(h, true, true, 3);  // layer 2: the MTP layer
  h.write();
  const auto f = open_hf_model(h.dir);
  const std::string a = "deepseek2.";
  EXPECT_EQ(f->get_string("general.architecture", ""), "deepseek2");
  const std::map<std::string, int64_t> ints = {{"block_count", 2},
                                               {"context_length", 4096},
                                               {"embedding_length", 16},
                                               {"feed_forward_length", 20},
                                               {"attention.head_count", 2},
                                               {"attention.head_count_kv", 1},
                                               {"expert_count", 4},
                                               {"expert_used_count", 2},
                                               {"expert_group_count", 2},
                                               {"expert_group_used_count", 1},
                                               {"expert_gating_func", 2},
                                               {"leading_dense_block_count", 1},
                                               {"vocab_size", 300},
                                               {"attention.q_lora_rank", 8},
                                               {"attention.kv_lora_rank", 8},
                                               {"attention.key_length", 10},
                                               {"attention.value_length", 8},
                                               {"attention.key_length_mla", 6},
                                               {"attention.value_length_mla", 3},
                                               {"expert_feed_forward_length", 6},
                                               {"expert_shared_count", 1},
                                               {"rope.dimension_count", 2},
                                               {"rope.scaling.original_context_length", 16}};
  for (const auto& [k, v] : ints) {
    ASSERT_NE(f->find(a + k), nullptr) << k;
    EXPECT_EQ(f->get(a + k).type(), GgufType::UINT32) << k;
    EXPECT_EQ(f->get_int(a + k, -1), v) << k;
  }
  EXPECT_FLOAT_EQ(f->get_float(a + "expert_weights_scale", 0), 2.5f);
  EXPECT_TRUE(f->get_bool(a + "expert_weights_norm", false));
  EXPECT_FLOAT_EQ(f->get_float(a + "attention.layer_norm_rms_epsilon", 0), 1e-6f);
  EXPECT_FLOAT_EQ(f->get_float(a + "rope.freq_base", 0), 10000.0f);
  EXPECT_EQ(f->get_string(a + "rope.scaling.type", ""), "yarn");
  EXPECT_FLOAT_EQ(f->get_float(a + "rope.scaling.factor", 0), 40.0f);
  EXPECT_FLOAT_EQ(f->get_float(a + "rope.scaling.yarn_beta_fast", 0), 32.0f);
  EXPECT_FLOAT_EQ(f->get_float(a + "rope.scaling.yarn_beta_slow", 0), 1.0f);
  EXPECT_FLOAT_EQ(f->get_float(a + "rope.scaling.yarn_log_multiplier", 0), 0.1f);  // 0.1 * mscale_all_dim
  EXPECT_EQ(f->get_int("general.file_type", -1), 32);

  // FP8 weights come out as BF16 with the block scales applied.
  const GgufTensorInfo* qa = f->find_tensor("blk.0.attn_q_a.weight");
  ASSERT_NE(qa, nullptr);
  EXPECT_EQ(qa->type, DType::BF16);
  EXPECT_EQ(floats(*f, "blk.0.attn_q_a.weight"), h.values["model.layers.0.self_attn.q_a_proj.weight"]);
  EXPECT_EQ(floats(*f, "blk.1.attn_kv_a_mqa.weight"),
            h.values["model.layers.1.self_attn.kv_a_proj_with_mqa.weight"]);
  EXPECT_EQ(ne(*f, "blk.0.attn_q_b.weight"), (std::vector<int64_t>{8, 12}));
  EXPECT_EQ(ne(*f, "blk.0.attn_kv_a_mqa.weight"), (std::vector<int64_t>{16, 10}));
  EXPECT_EQ(ne(*f, "blk.0.attn_output.weight"), (std::vector<int64_t>{6, 16}));

  // kv_b_proj [n_head * (nope + v), kv_lora] = [14, 8] -> k_b ne {nope, kv_lora, n_head} with
  // k_b[h][c][i] = kv_b[h*7 + i][c], and v_b ne {kv_lora, v, n_head} with v_b[h][j][c] = kv_b[h*7 + 4 +
  // j][c].
  EXPECT_EQ(ne(*f, "blk.1.attn_k_b.weight"), (std::vector<int64_t>{4, 8, 2}));
  EXPECT_EQ(ne(*f, "blk.1.attn_v_b.weight"), (std::vector<int64_t>{8, 3, 2}));
  EXPECT_EQ(f->find_tensor("blk.1.attn_kv_b.weight"), nullptr);
  const std::vector<float>& kv = h.values["model.layers.1.self_attn.kv_b_proj.weight"];
  const std::vector<float> kb = floats(*f, "blk.1.attn_k_b.weight"), vb = floats(*f, "blk.1.attn_v_b.weight");
  for (int hh = 0; hh < 2; ++hh)
    for (int c = 0; c < 8; ++c) {
      for (int i = 0; i < 4; ++i) ASSERT_EQ(kb[(hh * 8 + c) * 4 + i], kv[(hh * 7 + i) * 8 + c]);
      for (int j = 0; j < 3; ++j) ASSERT_EQ(vb[(hh * 3 + j) * 8 + c], kv[(hh * 7 + 4 + j) * 8 + c]);
    }

  // Dense first layer, MoE second.
  EXPECT_EQ(ne(*f, "blk.0.ffn_gate.weight"), (std::vector<int64_t>{16, 20}));
  EXPECT_EQ(f->find_tensor("blk.0.ffn_gate_inp.weight"), nullptr);
  EXPECT_EQ(ne(*f, "blk.1.ffn_gate_inp.weight"), (std::vector<int64_t>{16, 4}));
  EXPECT_EQ(f->find_tensor("blk.1.ffn_gate_inp.weight")->type, DType::BF16);
  EXPECT_EQ(floats(*f, "blk.1.exp_probs_b.bias"),
            h.values["model.layers.1.mlp.gate.e_score_correction_bias"]);
  EXPECT_EQ(ne(*f, "blk.1.ffn_gate_exps.weight"), (std::vector<int64_t>{16, 6, 4}));
  EXPECT_EQ(ne(*f, "blk.1.ffn_up_exps.weight"), (std::vector<int64_t>{16, 6, 4}));
  EXPECT_EQ(ne(*f, "blk.1.ffn_down_exps.weight"), (std::vector<int64_t>{6, 16, 4}));
  const std::vector<float> down = floats(*f, "blk.1.ffn_down_exps.weight");
  for (int x = 0; x < 4; ++x) {
    const std::vector<float>& src =
        h.values["model.layers.1.mlp.experts." + std::to_string(x) + ".down_proj.weight"];
    ASSERT_TRUE(std::equal(src.begin(), src.end(), down.begin() + x * 96)) << x;
  }
  EXPECT_EQ(ne(*f, "blk.1.ffn_gate_shexp.weight"), (std::vector<int64_t>{16, 6}));
  EXPECT_EQ(ne(*f, "blk.1.ffn_down_shexp.weight"), (std::vector<int64_t>{6, 16}));
  EXPECT_EQ(f->find_tensor("blk.2.attn_norm.weight"), nullptr);  // MTP layer skipped
  EXPECT_NE(f->find_tensor("output.weight"), nullptr);
}

TEST(HfModelDeepseek2, V2LiteShape) {
  HfDir h("hf-ds2");
  h.config = deepseek_config();
  h.config["architectures"] = {"DeepseekV2ForCausalLM"};
  h.config["q_lora_rank"] = nullptr;
  h.config["scoring_func"] = "softmax";
  h.config["norm_topk_prob"] = false;
  h.config["routed_scaling_factor"] = 1.0;
  h.config["n_group"] = 1;
  h.config["topk_group"] = 1;
  h.config["rope_scaling"]["mscale_all_dim"] = 0.707;
  h.config.erase("quantization_config");
  h.config.erase("num_nextn_predict_layers");
  add_deepseek_tensors(h, false, false, 2);
  h.write();
  const auto f = open_hf_model(h.dir);
  EXPECT_EQ(f->find("deepseek2.attention.q_lora_rank"), nullptr);
  EXPECT_EQ(f->get_int("deepseek2.expert_gating_func", 0), 1);
  EXPECT_EQ(f->find("deepseek2.expert_weights_norm"), nullptr);
  EXPECT_FLOAT_EQ(f->get_float("deepseek2.rope.scaling.yarn_log_multiplier", 0), 0.0707f);
  EXPECT_EQ(ne(*f, "blk.0.attn_q.weight"), (std::vector<int64_t>{16, 12}));
  EXPECT_EQ(f->find_tensor("blk.0.attn_q_a.weight"), nullptr);
  EXPECT_EQ(f->find_tensor("blk.1.exp_probs_b.bias"), nullptr);
  EXPECT_EQ(floats(*f, "blk.1.ffn_up_shexp.weight"),
            h.values["model.layers.1.mlp.shared_experts.up_proj.weight"]);
}

// ---- tokenizers from the shared test data ----

std::vector<std::string> inp_texts(const std::string& path) {
  const std::string all = test::read_file(path);
  std::vector<std::string> out;
  const std::string sep = "\n__ggml_vocab_test__\n";
  size_t pos = 0;
  while (pos <= all.size()) {
    const size_t e = all.find(sep, pos);
    out.push_back(all.substr(pos, e == std::string::npos ? std::string::npos : e - pos));
    if (e == std::string::npos) break;
    pos = e + sep.size();
  }
  return out;
}

void check_real_tokenizer(const std::string& name, const std::string& arch, int64_t vocab,
                          const std::string& want_pre) {
  HfDir h("hf-tok-" + name);
  if (arch == "DeepseekV3ForCausalLM") {
    h.config = deepseek_config();
    h.config.erase("quantization_config");
    h.config["vocab_size"] = vocab;
    add_deepseek_tensors(h, false, true, 2, vocab);
  } else {
    h.config = {{"architectures", {arch}},  {"hidden_size", 16},        {"num_hidden_layers", 2},
                {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"intermediate_size", 24},
                {"vocab_size", vocab},      {"bos_token_id", 151643},   {"tie_word_embeddings", true}};
    h.bf16("model.embed_tokens.weight", {vocab, 16});
    add_llama_layers(h, 2, true);
    h.bf16("model.norm.weight", {16});
  }
  h.values.clear();
  h.write(false);
  for (const char* file : {"tokenizer.json", "tokenizer_config.json"})
    fs::create_symlink(test::testdata("tokenizers/" + name + "/" + file), h.dir + "/" + file);

  const auto f = open_hf_model(h.dir);
  EXPECT_EQ(f->get_string("tokenizer.ggml.pre", ""), want_pre);
  const std::vector<std::string> toks = f->get("tokenizer.ggml.tokens").as_string_array();
  ASSERT_EQ(static_cast<int64_t>(toks.size()), vocab);
  EXPECT_EQ(toks.back(), "[PAD" + std::to_string(vocab - 1) + "]");
  const std::string tc_template =
      json::parse(test::read_file(h.dir + "/tokenizer_config.json"))["chat_template"];
  EXPECT_EQ(f->get_string("tokenizer.chat_template", ""), tc_template);

  const auto gguf_tok = tokenizer_from_gguf(*f);
  const HfBpeTokenizer hf_tok(h.dir + "/tokenizer.json");
  std::vector<std::string> texts = inp_texts(test::testdata("tokenizers/" + name + "/" + name + ".inp"));
  for (const std::string& line : {std::string("tokenizers/") + name + "/" + name + "-special.jsonl"}) {
    std::istringstream in(test::read_file(test::testdata(line)));
    for (std::string l; std::getline(in, l);)
      if (!l.empty()) texts.push_back(json::parse(l)["text"].get<std::string>());
  }
  int compared = 0;
  for (const std::string& t : texts) {
    // llama.cpp does not apply tokenizer.json's normalizer (Qwen's NFC): compare NFC text only.
    if (normalize_unicode(t, NormalForm::kNfc) != t) continue;
    EXPECT_EQ(gguf_tok->encode(t, true), hf_tok.encode(t, true)) << name << ": " << t;
    EXPECT_EQ(gguf_tok->encode(t, false), hf_tok.encode(t, false)) << name << " (no special): " << t;
    ++compared;
  }
  EXPECT_GT(compared, 20);
  EXPECT_EQ(gguf_tok->eos_id(), hf_tok.eos_id());
  EXPECT_EQ(gguf_tok->add_bos(), hf_tok.add_bos());
  if (arch == "DeepseekV3ForCausalLM") {
    EXPECT_EQ(gguf_tok->bos_id(), 0);
    EXPECT_EQ(gguf_tok->eos_id(), 1);
    EXPECT_TRUE(gguf_tok->add_bos());
    EXPECT_EQ(f->get("tokenizer.ggml.token_type").as_int_array()[0], 3);  // <｜begin▁of▁sentence｜>
  } else {
    EXPECT_EQ(gguf_tok->bos_id(), 151643);  // config.json bos_token_id
    EXPECT_EQ(gguf_tok->eos_id(), 151645);  // tokenizer_config.json eos_token <|im_end|>
    EXPECT_EQ(f->get("tokenizer.ggml.token_type").as_int_array()[151667], 4);  // <think>: user-defined
  }
}

TEST(HfModelTokenizer, DeepseekV3MatchesHf) {
  check_real_tokenizer("deepseek-v3", "DeepseekV3ForCausalLM", 129280, "deepseek-v3");
}

TEST(HfModelTokenizer, Qwen3MatchesHf) { check_real_tokenizer("qwen3", "Qwen2ForCausalLM", 151936, "qwen2"); }

// ---- errors ----

TEST(HfModelErrors, NameTheKeyOrTensor) {
  struct Case {
    std::string what;
    std::function<void(HfDir&)> edit;  // applied before write
    std::vector<std::string> expect;
  };
  const std::vector<Case> cases = {
      {"unknown arch",
       [](HfDir& h) { h.config["architectures"] = {"GPT2LMHeadModel"}; },
       {"GPT2LMHeadModel", "not supported"}},
      {"bad hidden_size", [](HfDir& h) { h.config["hidden_size"] = -16; }, {"hidden_size", "out of range"}},
      {"kv heads", [](HfDir& h) { h.config["num_key_value_heads"] = 3; }, {"num_key_value_heads"}},
      {"string layers",
       [](HfDir& h) { h.config["num_hidden_layers"] = "2"; },
       {"num_hidden_layers", "integer"}},
      {"expert count",
       [](HfDir& h) { h.config["n_routed_experts"] = 6; },
       {"model.layers.1.mlp.gate.weight", "shape"}},
      {"used > experts", [](HfDir& h) { h.config["num_experts_per_tok"] = 9; }, {"num_experts_per_tok"}},
      {"group", [](HfDir& h) { h.config["n_group"] = 3; }, {"n_group"}},
      {"scoring", [](HfDir& h) { h.config["scoring_func"] = "relu"; }, {"scoring_func", "relu"}},
      {"rope", [](HfDir& h) { h.config["rope_scaling"]["type"] = "dynamic"; }, {"rope_scaling", "dynamic"}},
      {"wrong shape", [](HfDir& h) { h.config["kv_lora_rank"] = 6; }, {"kv_a_proj_with_mqa", "shape"}},
      {"block size",
       [](HfDir& h) {
         h.config["quantization_config"]["weight_block_size"] = {8, 8};
       },
       {"_scale_inv", "shape"}},
      {"vocab", [](HfDir& h) { h.config["vocab_size"] = 200; }, {"model.embed_tokens.weight", "shape"}},
      {"quant type",
       [](HfDir& h) { h.config["quantization_config"]["quant_method"] = 5; },
       {"unexpected JSON"}},
      {"rope not object", [](HfDir& h) { h.config["rope_scaling"] = 3; }, {"rope_scaling"}},
      {"rope factor", [](HfDir& h) { h.config["rope_scaling"]["factor"] = "x"; }, {"rope_scaling.factor"}},
      {"architectures",
       [](HfDir& h) { h.config["architectures"] = "DeepseekV3ForCausalLM"; },
       {"architectures"}},
      {"huge layers", [](HfDir& h) { h.config["num_hidden_layers"] = 1e300; }, {"num_hidden_layers"}},
  };
  for (const Case& c : cases) {
    HfDir h("hf-err");
    h.config = deepseek_config();
    add_deepseek_tensors(h, true, true, 2);
    c.edit(h);
    h.write();
    const std::string msg = open_error(h.dir);
    ASSERT_NE(msg, "") << c.what;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << c.what;
    EXPECT_TRUE(contains(msg, h.dir)) << c.what << ": " << msg;
    for (const std::string& s : c.expect) EXPECT_TRUE(contains(msg, s)) << c.what << ": " << msg;
  }
}

TEST(HfModelErrors, TensorsTokenizerAndFiles) {
  EXPECT_TRUE(contains(open_error("/nonexistent-dir"), "not a directory"));
  {
    HfDir h("hf-err2");
    EXPECT_TRUE(contains(open_error(h.dir), "config.json"));
    h.config = llama_config();
    h.bf16("model.embed_tokens.weight", {300, 16});
    add_llama_layers(h, 2, false);
    h.bf16("model.norm.weight", {16});
    h.f32("model.layers.0.mlp.extra.weight", {3});
    h.write();
    std::string msg = open_error(h.dir);
    EXPECT_TRUE(contains(msg, "model.layers.0.mlp.extra.weight") && contains(msg, "not part of")) << msg;
  }
  {
    HfDir h("hf-err3");
    h.config = llama_config();
    h.bf16("model.embed_tokens.weight", {300, 16});
    add_llama_layers(h, 1, false);  // layer 1 missing
    h.bf16("model.norm.weight", {16});
    h.write();
    std::string msg = open_error(h.dir);
    EXPECT_TRUE(contains(msg, "model.layers.1.input_layernorm.weight") && contains(msg, "missing")) << msg;
  }
  {
    HfDir h("hf-err4");
    h.config = llama_config();
    h.bf16("model.embed_tokens.weight", {300, 16});
    add_llama_layers(h, 2, false);
    const std::vector<int64_t> ids(16, 1);
    h.st.add("model.norm.weight", StDtype::kI64, {16}, ids.data(), ids.size() * 8);
    h.write();
    std::string msg = open_error(h.dir);
    EXPECT_TRUE(contains(msg, "model.norm.weight") && contains(msg, "I64")) << msg;
  }
  {
    HfDir h("hf-err6");  // a config that promises experts the files lack
    h.config = deepseek_config();
    add_deepseek_tensors(h, true, true, 2, 300, 3);
    h.write();
    std::string msg = open_error(h.dir);
    EXPECT_TRUE(contains(msg, "model.layers.1.mlp.experts.3.gate_proj.weight") && contains(msg, "missing"))
        << msg;
  }
  {
    HfDir h("hf-err7");  // more layers in the files than config.json says
    h.config = llama_config();
    h.config["num_hidden_layers"] = 1;
    h.bf16("model.embed_tokens.weight", {300, 16});
    add_llama_layers(h, 2, false);
    h.bf16("model.norm.weight", {16});
    h.write();
    std::string msg = open_error(h.dir);
    EXPECT_TRUE(contains(msg, "model.layers.1.") && contains(msg, "not part of")) << msg;
  }
  {
    HfDir h("hf-err8");  // a tokenizer larger than vocab_size
    h.config = llama_config();
    h.config["vocab_size"] = 200;
    h.bf16("model.embed_tokens.weight", {200, 16});
    add_llama_layers(h, 2, false);
    h.bf16("model.norm.weight", {16});
    h.write();
    std::string msg = open_error(h.dir);
    EXPECT_TRUE(contains(msg, "vocab_size") && contains(msg, "261")) << msg;
  }
  {
    HfDir h("hf-err5");
    h.config = llama_config();
    h.bf16("model.embed_tokens.weight", {300, 16});
    add_llama_layers(h, 2, false);
    h.bf16("model.norm.weight", {16});
    h.write();
    write_tiny_tokenizer(
        h.dir, json{{"type", "Sequence"},
                    {"pretokenizers",
                     {{{"type", "Split"},
                       {"pattern", {{"Regex", "[a-z]+"}}},
                       {"behavior", "Isolated"},
                       {"invert", false}},
                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}});
    std::string msg = open_error(h.dir);
    EXPECT_TRUE(contains(msg, "pre-tokenizer") && contains(msg, "tokenizer.json")) << msg;
    write_tiny_tokenizer(h.dir,
                         json{{"type", "Sequence"},
                              {"pretokenizers", {{{"type", "Split"}, {"pattern", 7}, {"behavior", 5}}}}});
    msg = open_error(h.dir);
    EXPECT_TRUE(contains(msg, "tokenizer.json")) << msg;
    write_tiny_tokenizer(h.dir);
    std::ofstream(h.dir + "/tokenizer_config.json") << R"({"bos_token": 5, "add_bos_token": "yes"})";
    msg = open_error(h.dir);
    EXPECT_TRUE(contains(msg, "tokenizer_config.json") && contains(msg, "add_bos_token")) << msg;
    std::ofstream(h.dir + "/tokenizer_config.json") << R"({"bos_token": 5, "chat_template": 3})";
    EXPECT_EQ(open_error(h.dir), "");  // values gguf-py skips are skipped
    fs::remove(h.dir + "/tokenizer.json");
    EXPECT_TRUE(contains(open_error(h.dir), "no tokenizer.json"));
  }
}

TEST(HfModelSharded, IndexedShardsOpen) {
  HfDir h("hf-shard");
  h.config = llama_config();
  h.write();  // config + tokenizer; the tensors go to two shards below
  SafetensorsWriter a, b;
  auto add = [&](SafetensorsWriter& w, const std::string& n, const Shape& s) {
    w.add_f32(n, s, std::vector<float>(static_cast<size_t>(HfDir::numel(s)), 0.5f));
  };
  json map = json::object();
  add(a, "model.embed_tokens.weight", {300, 16});
  map["model.embed_tokens.weight"] = "model-00001-of-00002.safetensors";
  for (int il = 0; il < 2; ++il) {
    SafetensorsWriter& w = il == 0 ? a : b;
    const std::string shard =
        il == 0 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    const std::string L = "model.layers." + std::to_string(il) + ".";
    for (const auto& [n, s] : {std::pair{"input_layernorm.weight", Shape{16}},
                               {"self_attn.q_proj.weight", Shape{16, 16}},
                               {"self_attn.k_proj.weight", Shape{8, 16}},
                               {"self_attn.v_proj.weight", Shape{8, 16}},
                               {"self_attn.o_proj.weight", Shape{16, 16}},
                               {"post_attention_layernorm.weight", Shape{16}},
                               {"mlp.gate_proj.weight", Shape{24, 16}},
                               {"mlp.up_proj.weight", Shape{24, 16}},
                               {"mlp.down_proj.weight", Shape{16, 24}}}) {
      add(w, L + n, s);
      map[L + n] = shard;
    }
  }
  add(b, "model.norm.weight", {16});
  map["model.norm.weight"] = "model-00002-of-00002.safetensors";
  fs::remove(h.dir + "/model.safetensors");
  a.write(h.dir + "/model-00001-of-00002.safetensors");
  b.write(h.dir + "/model-00002-of-00002.safetensors");
  std::ofstream(h.dir + "/model.safetensors.index.json") << json{{"weight_map", map}}.dump();
  const auto f = open_hf_model(h.dir);
  EXPECT_EQ(f->tensors().size(), 1u + 1u + 2u * 9u + 1u);  // + rope_freqs
  EXPECT_EQ(floats(*f, "blk.1.ffn_down.weight")[5], 0.5f);
  EXPECT_EQ(f->get_int("general.file_type", -1), 0);  // all f32
}

}  // namespace
}  // namespace moe

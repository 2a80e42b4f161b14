#include "model/presets.h"

#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "core/error.h"
#include "kernels/kernels.h"
#include "model/decoder.h"
#include "runtime/sampler.h"

namespace moe {

namespace {

ModelConfig dense(const std::string& arch, int64_t vocab, int64_t embd, int64_t ff, int64_t layers,
                  int64_t heads, int64_t kv_heads, float theta, float eps, int64_t ctx) {
  ModelConfig c;
  c.arch = arch;
  c.n_vocab = vocab;
  c.n_embd = embd;
  c.n_ff = ff;
  c.n_layer = layers;
  c.n_head = heads;
  c.n_head_kv = kv_heads;
  c.head_dim_k = c.head_dim_v = embd / heads;
  c.rope.n_rot = c.head_dim_k;
  c.rope.freq_base = theta;
  c.rope.neox = arch == "qwen2";
  c.rms_eps = eps;
  c.n_ctx_train = ctx;
  return c;
}

// DeepSeek MLA + MoE shape (DeepSeek's own inference/configs, testdata/deepseek-ref/).
ModelConfig deepseek(int64_t vocab, int64_t embd, int64_t ff, int64_t ff_exp, int64_t layers,
                     int64_t dense_lead, int64_t heads, int64_t experts, int64_t used, int64_t shared,
                     int64_t q_lora, bool sigmoid, float scale, int64_t groups, int64_t groups_used) {
  ModelConfig c;
  c.arch = "deepseek2";
  c.n_vocab = vocab;
  c.n_embd = embd;
  c.n_ff = ff;
  c.n_layer = layers;
  c.n_head = c.n_head_kv = heads;
  c.q_lora_rank = q_lora;
  c.kv_lora_rank = 512;
  c.qk_nope_dim = 128;
  c.rope.n_rot = 64;
  c.head_dim_k = 192;
  c.head_dim_v = 128;
  c.n_layer_dense_lead = dense_lead;
  c.n_expert = experts;
  c.n_expert_used = used;
  c.n_expert_shared = shared;
  c.n_ff_exp = ff_exp;
  c.gating_sigmoid = sigmoid;
  c.expert_weights_norm = sigmoid;  // V3: norm_topk_prob; V2-Lite: no
  c.expert_weights_scale = scale;
  c.n_expert_groups = groups;
  c.n_group_used = groups_used;
  c.rms_eps = 1e-6f;
  c.n_ctx_train = 163840;
  c.rope.freq_base = 10000.0f;  // YaRN x40 from 4096
  c.rope.freq_scale = 1.0f / 40.0f;
  c.rope.ext_factor = 1.0f;
  c.rope.n_ctx_orig = 4096;
  c.rope.beta_fast = 32.0f;
  c.rope.beta_slow = 1.0f;
  return c;
}

// Llama 3.1's rope scaling as llama.cpp's converter turns it into rope_freqs: wavelengths above
// orig/low stretched by factor, below orig/high kept, smooth in between.
std::vector<float> llama3_factors(float theta, int64_t dim, float factor, float low, float high, float orig) {
  std::vector<float> out;
  for (int64_t i = 0; i < dim; i += 2) {
    const double freq =
        1.0 / std::pow(static_cast<double>(theta), static_cast<double>(i) / static_cast<double>(dim));
    const double wavelen = 2.0 * M_PI / freq;
    if (wavelen < orig / high) {
      out.push_back(1.0f);
    } else if (wavelen > orig / low) {
      out.push_back(factor);
    } else {
      const double smooth = (orig / wavelen - low) / (high - low);
      out.push_back(static_cast<float>(1.0 / ((1.0 - smooth) / factor + smooth)));
    }
  }
  return out;
}

std::vector<Preset> make_presets() {
  std::vector<Preset> p;
  p.push_back({"deepseek-r1",
               "DeepSeek-R1 / V3 (671B total, 37B active): MLA, 256 routed + 1 shared experts, top-8",
               deepseek(129280, 7168, 18432, 2048, 61, 3, 128, 256, 8, 1, 1536, true, 2.5f, 8, 4), 0.1f});
  p.push_back({"deepseek-v2-lite",
               "DeepSeek-V2-Lite (16B): MLA without query compression, 64 experts top-6, 2 shared",
               deepseek(102400, 2048, 10944, 1408, 27, 1, 16, 64, 6, 2, 0, false, 1.0f, 1, 1), 0.0707f});
  p.push_back({"r1-distill-qwen-1.5b", "DeepSeek-R1-Distill-Qwen-1.5B (Qwen2 architecture)",
               dense("qwen2", 151936, 1536, 8960, 28, 12, 2, 10000.0f, 1e-6f, 131072)});
  p.push_back({"r1-distill-qwen-7b", "DeepSeek-R1-Distill-Qwen-7B (Qwen2 architecture)",
               dense("qwen2", 152064, 3584, 18944, 28, 28, 4, 10000.0f, 1e-6f, 131072)});
  p.push_back({"r1-distill-qwen-14b", "DeepSeek-R1-Distill-Qwen-14B (Qwen2 architecture)",
               dense("qwen2", 152064, 5120, 13824, 48, 40, 8, 1000000.0f, 1e-5f, 131072)});
  p.push_back({"r1-distill-qwen-32b", "DeepSeek-R1-Distill-Qwen-32B (Qwen2 architecture)",
               dense("qwen2", 152064, 5120, 27648, 64, 40, 8, 1000000.0f, 1e-5f, 131072)});
  p.push_back({"r1-distill-llama-8b", "DeepSeek-R1-Distill-Llama-8B (Llama 3.1 architecture)",
               dense("llama", 128256, 4096, 14336, 32, 32, 8, 500000.0f, 1e-5f, 131072)});
  p.push_back({"r1-distill-llama-70b", "DeepSeek-R1-Distill-Llama-70B (Llama 3.3 architecture)",
               dense("llama", 128256, 8192, 28672, 80, 64, 8, 500000.0f, 1e-5f, 131072)});
  for (size_t i = p.size() - 2; i < p.size(); ++i)
    p[i].config.rope.freq_factors = llama3_factors(500000.0f, 128, 8.0f, 1.0f, 4.0f, 8192.0f);
  // The seed's model: 22 layers, each holding 16 expert FFNs of which the router picks 2 per
  // token (the seed's "each expert has 22 layers" read as layer-level MoE; see README).
  ModelConfig seed = dense("llama", 129280, 4096, 14336, 22, 32, 32, 10000.0f, 1e-5f, 4096);
  seed.n_expert = 16;
  seed.n_expert_used = 2;
  seed.n_ff_exp = seed.n_ff;
  seed.expert_weights_norm = false;  // probs = softmax(x W^T); topk(probs, 2) used as they are
  seed.expert_weights_scale = 1.0f;
  p.push_back({"seed-moe",
               "the seed's MoE: 22 layers x 16 experts, top-2 softmax routing without renormalisation",
               seed});
  // The benchmark models of bench/vs_llamacpp.sh: a small DeepSeek-V3-style MoE (1.25B total,
  // 264M active parameters) and a dense Qwen2 of about 130M.
  p.push_back({"bench-deepseek2",
               "benchmark MoE: hidden 1024, 8 layers (first dense), MLA, 64 experts top-6 + 2 shared",
               deepseek(102400, 1024, 2816, 704, 8, 1, 8, 64, 6, 2, 384, true, 2.5f, 1, 1), 0.1f});
  p.push_back({"bench-qwen2", "benchmark dense model: Qwen2 architecture, hidden 768, 12 layers",
               dense("qwen2", 32000, 768, 2304, 12, 12, 2, 1000000.0f, 1e-6f, 32768)});
  for (Preset& q : p) q.config.name = q.name;
  return p;
}

}  // namespace

std::span<const Preset> presets() {
  static const std::vector<Preset> kPresets = make_presets();
  return kPresets;
}

const Preset& find_preset(const std::string& name) {
  std::string names;
  for (const Preset& p : presets()) {
    if (p.name == name) return p;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  fail("unknown preset '", name, "' (known: ", names, ")");
}

ModelConfig reduced(const ModelConfig& full) {
  ModelConfig c = full;
  c.n_vocab = std::min<int64_t>(full.n_vocab, 512);
  c.n_embd = 64;
  c.n_layer = std::min<int64_t>(full.n_layer, full.n_layer_dense_lead > 0 ? 3 : 2);
  c.n_layer_dense_lead = std::min<int64_t>(full.n_layer_dense_lead, 1);
  c.n_head = 4;
  c.n_head_kv = full.n_head_kv == full.n_head ? 4 : 2;
  c.n_ff = 96;
  c.n_ctx_train = std::min<int64_t>(full.n_ctx_train, 4096);
  if (full.is_mla()) {
    c.q_lora_rank = full.q_lora_rank > 0 ? 32 : 0;
    c.kv_lora_rank = 32;
    c.qk_nope_dim = 16;
    c.rope.n_rot = 8;
    c.head_dim_k = 24;
    c.head_dim_v = 16;
    c.rope.n_ctx_orig = std::min<int64_t>(full.rope.n_ctx_orig, 64);
  } else {
    c.head_dim_k = c.head_dim_v = c.rope.n_rot = 16;
    if (!full.rope.freq_factors.empty())  // same scaling law at the reduced head size
      c.rope.freq_factors = llama3_factors(c.rope.freq_base, 16, 8.0f, 1.0f, 4.0f, 8192.0f);
  }
  if (full.n_expert > 0) {
    c.n_expert = std::min<int64_t>(full.n_expert, 8);
    c.n_expert_used = std::min<int64_t>(full.n_expert_used, 2);
    c.n_ff_exp = full.n_ff_exp == full.n_ff ? c.n_ff : 32;
    if (full.n_expert_groups > 1) {
      c.n_expert_groups = 4;
      c.n_group_used = 2;
    }
  }
  return c;
}

ParamCount count_params(const ModelConfig& c) {
  ParamCount p;
  int64_t attn = 0;
  if (c.is_mla()) {
    const int64_t q = c.q_lora_rank > 0
                          ? c.n_embd * c.q_lora_rank + c.q_lora_rank + c.q_lora_rank * c.n_head * c.head_dim_k
                          : c.n_embd * c.n_head * c.head_dim_k;
    attn = q + c.n_embd * (c.kv_lora_rank + c.rope.n_rot) + c.kv_lora_rank +
           c.kv_lora_rank * c.n_head * (c.qk_nope_dim + c.head_dim_v) + c.n_head * c.head_dim_v * c.n_embd;
  } else {
    attn = c.n_embd * (c.n_head * c.head_dim_k + c.n_head_kv * (c.head_dim_k + c.head_dim_v)) +
           c.n_head * c.head_dim_v * c.n_embd;
  }
  const int64_t dense_ffn = 3 * c.n_embd * c.n_ff, expert = 3 * c.n_embd * c.n_ff_exp;
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const int64_t norms = 2 * c.n_embd;
    if (c.is_moe_layer(il)) {
      const int64_t fixed = attn + norms + c.n_embd * c.n_expert + c.n_expert_shared * expert;
      p.total += fixed + c.n_expert * expert;
      p.active += fixed + c.n_expert_used * expert;
    } else {
      p.total += attn + norms + dense_ffn;
      p.active += attn + norms + dense_ffn;
    }
  }
  const int64_t embed = 2 * c.n_vocab * c.n_embd + c.n_embd;
  p.total += embed;
  p.active += embed;
  return p;
}

std::string describe_config(const ModelConfig& c) {
  char buf[512];
  std::string s;
  const auto line = [&](const char* fmt, auto... args) {
    std::snprintf(buf, sizeof buf, fmt, args...);
    s += buf;
  };
  line("architecture      %s\n", c.arch.c_str());
  line("vocabulary        %lld\n", static_cast<long long>(c.n_vocab));
  line("layers            %lld (embedding %lld)\n", static_cast<long long>(c.n_layer),
       static_cast<long long>(c.n_embd));
  if (c.is_mla()) {
    line(
        "attention         MLA: %lld heads, q rank %lld, kv rank %lld, head k %lld (nope %lld + rope %lld), "
        "v %lld\n",
        static_cast<long long>(c.n_head), static_cast<long long>(c.q_lora_rank),
        static_cast<long long>(c.kv_lora_rank), static_cast<long long>(c.head_dim_k),
        static_cast<long long>(c.qk_nope_dim), static_cast<long long>(c.rope.n_rot),
        static_cast<long long>(c.head_dim_v));
  } else {
    line("attention         GQA: %lld heads, %lld kv heads, head %lld\n", static_cast<long long>(c.n_head),
         static_cast<long long>(c.n_head_kv), static_cast<long long>(c.head_dim_k));
  }
  if (c.n_expert > 0) {
    line(
        "feed-forward      MoE: %lld experts, top-%lld, %lld shared, expert width %lld, first %lld layers "
        "dense (%lld)\n",
        static_cast<long long>(c.n_expert), static_cast<long long>(c.n_expert_used),
        static_cast<long long>(c.n_expert_shared), static_cast<long long>(c.n_ff_exp),
        static_cast<long long>(c.n_layer_dense_lead), static_cast<long long>(c.n_ff));
    line("router            %s%s, weights %s x %.2f", c.gating_sigmoid ? "sigmoid" : "softmax",
         c.n_expert_groups > 1 ? " + group-limited" : "",
         c.expert_weights_norm ? "renormalised" : "as scored", c.expert_weights_scale);
    if (c.n_expert_groups > 1)
      line(" (%lld groups, keep %lld)", static_cast<long long>(c.n_expert_groups),
           static_cast<long long>(c.n_group_used));
    s += "\n";
  } else {
    line("feed-forward      dense SwiGLU, width %lld\n", static_cast<long long>(c.n_ff));
  }
  line("rope              theta %g, %lld dims, %s pairs", c.rope.freq_base,
       static_cast<long long>(c.rope.n_rot), c.rope.neox ? "NeoX" : "adjacent");
  if (!c.rope.freq_factors.empty()) s += ", Llama 3 frequency factors";
  if (c.rope.ext_factor != 0.0f)
    line(", YaRN x%g from %lld", 1.0f / c.rope.freq_scale, static_cast<long long>(c.rope.n_ctx_orig));
  s += "\n";
  const ParamCount p = count_params(c);
  line("parameters        %.2fB total, %.2fB active per token\n", p.total / 1e9, p.active / 1e9);
  const KvBytesPerToken kv = kv_bytes_per_token(c);
  line("kv cache / token  %lld bytes (f32)%s; a per-head cache of k and v would need %lld bytes (%.1fx)\n",
       static_cast<long long>(kv.stored), c.is_mla() ? " = MLA latent + rope key per layer" : "",
       static_cast<long long>(kv.naive), static_cast<double>(kv.naive) / static_cast<double>(kv.stored));
  return s;
}

namespace {

// The values of write_random_model: uniform in +-a around a center, drawn in tensor order from one
// generator, so the same seed always gives the same file.
class RandomValues {
 public:
  explicit RandomValues(uint64_t seed) : rng_(seed) {}

  // Norm weights ("...norm.weight") center on 1 with n_in 16; biases get n_in 100; matrices
  // +-1/sqrt(ne[0]) (keeps activations O(1)), and the output head a gain of 4 so that greedy decoding of
  // a random model has clear winners rather than near-ties.
  std::vector<float> operator()(const std::string& name, const std::vector<int64_t>& ne) {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    const auto ends_with = [&](const std::string& s) {
      return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    if (ends_with("norm.weight")) return values(n, 16, 1.0f);
    if (ends_with(".bias")) return values(n, 100);
    std::vector<float> v = values(n, ne[0]);
    if (name == "output.weight")
      for (float& x : v) x *= 4.0f;
    return v;
  }

 private:
  std::vector<float> values(int64_t n, int64_t n_in, float center = 0.0f) {
    std::vector<float> v(static_cast<size_t>(n));
    const float a = 1.0f / std::sqrt(static_cast<float>(n_in));
    for (float& x : v) x = center + a * static_cast<float>(2.0 * rng_.uniform() - 1.0);
    return v;
  }
  Rng rng_;
};

// Adds tensors to the writer: matrices in opt.type, everything else (norms, biases) in f32.
class TensorAdder {
 public:
  TensorAdder(GgufWriter& w, const RandomModelOptions& opt, const TensorValues& values)
      : w_(w), opt_(opt), values_(values) {}

  // The caller's values for name, checked against the shape.
  std::vector<float> get(const std::string& name, const std::vector<int64_t>& ne) {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    std::vector<float> v = values_(name, ne);
    MOE_CHECK(static_cast<int64_t>(v.size()) == n, "write model: tensor ", name, " needs ", n,
              " values, the source gave ", v.size());
    return v;
  }
  void add(const std::string& name, const std::vector<int64_t>& ne, const std::vector<float>& v,
           bool matrix) {
    const DType t = matrix ? opt_.type : DType::F32;
    const size_t row = row_bytes(t, ne[0]);
    std::vector<uint8_t> bytes(row * (v.size() / ne[0]));
    for (size_t r = 0; r < v.size() / ne[0]; ++r)
      kernels::quantize_row(t, v.data() + r * ne[0], bytes.data() + r * row, ne[0]);
    w_.add_tensor(name, t, ne, bytes.data(), bytes.size());
  }
  void matrix(const std::string& name, const std::vector<int64_t>& ne) { add(name, ne, get(name, ne), true); }
  void norm(const std::string& name, int64_t n) { add(name, {n}, get(name, {n}), false); }
  void bias(const std::string& name, int64_t n) { add(name, {n}, get(name, {n}), false); }

 private:
  GgufWriter& w_;
  const RandomModelOptions& opt_;
  const TensorValues& values_;
};

// Pieces "<unk>", "<s>", "</s>", "<0x00>".."<0xFF>", then "▁" followed by the base-26 spelling of
// the index: unique, valid UTF-8, and tokenizable text never needs more than the byte fallback.
void write_synthetic_vocab(GgufWriter& w, int64_t n_vocab) {
  MOE_CHECK(n_vocab >= 260, "random model: a synthetic vocabulary needs at least 260 tokens, not ", n_vocab);
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  auto add = [&](std::string piece, float score, int32_t type) {
    tokens.push_back(std::move(piece));
    scores.push_back(score);
    types.push_back(type);
  };
  add("<unk>", 0.0f, 2);  // llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte
  add("<s>", 0.0f, 3);
  add("</s>", 0.0f, 3);
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    add(buf, 0.0f, 6);
  }
  for (int64_t i = 259; i < n_vocab; ++i) {
    std::string s;
    for (int64_t v = i; v > 0; v /= 26) s.insert(s.begin(), static_cast<char>('a' + v % 26));
    s.insert(0, "\xe2\x96\x81");  // U+2581, SentencePiece's word boundary
    add(std::move(s), -static_cast<float>(i), 1);
  }
  w.set("tokenizer.ggml.model", GgufValue::str("llama"));
  w.set("tokenizer.ggml.tokens", GgufValue::str_array(tokens));
  w.set("tokenizer.ggml.scores", GgufValue::f32_array(scores));
  w.set("tokenizer.ggml.token_type", GgufValue::i32_array(types));
  w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(1));
  w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(2));
  w.set("tokenizer.ggml.unknown_token_id", GgufValue::u32(0));
}

}  // namespace

void write_model(const ModelConfig& c, const RandomModelOptions& opt, const TensorValues& values,
                 const std::string& path) {
  validate_config(c, "random model");
  GgufWriter w;
  const std::string a = c.arch, p = a + ".";
  const bool mla = c.is_mla();
  w.set("general.architecture", GgufValue::str(a));
  w.set("general.name", GgufValue::str(c.name.empty() ? "random " + a : c.name));
  // llama.cpp's llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32.
  const uint32_t ftype = opt.type == DType::F32    ? 0
                         : opt.type == DType::F16  ? 1
                         : opt.type == DType::BF16 ? 32
                                                   : 7;
  MOE_CHECK(opt.type == DType::F32 || opt.type == DType::F16 || opt.type == DType::BF16 || opt.type == DType::Q8_0,
            "write_model: matrices of type ", dtype_name(opt.type), " are not supported (f32, f16, bf16, q8_0)");
  w.set("general.file_type", GgufValue::u32(ftype));
  w.set(p + "context_length", GgufValue::u32(static_cast<uint32_t>(c.n_ctx_train)));
  w.set(p + "embedding_length", GgufValue::u32(static_cast<uint32_t>(c.n_embd)));
  w.set(p + "block_count", GgufValue::u32(static_cast<uint32_t>(c.n_layer)));
  w.set(p + "feed_forward_length", GgufValue::u32(static_cast<uint32_t>(c.n_ff)));
  w.set(p + "attention.head_count", GgufValue::u32(static_cast<uint32_t>(c.n_head)));
  w.set(p + "attention.layer_norm_rms_epsilon", GgufValue::f32(c.rms_eps));
  w.set(p + "rope.dimension_count", GgufValue::u32(static_cast<uint32_t>(c.rope.n_rot)));
  w.set(p + "rope.freq_base", GgufValue::f32(c.rope.freq_base));
  if (c.rope.freq_scale != 1.0f) {
    w.set(p + "rope.scaling.type", GgufValue::str(c.rope.ext_factor != 0.0f ? "yarn" : "linear"));
    w.set(p + "rope.scaling.factor", GgufValue::f32(1.0f / c.rope.freq_scale));
    if (c.rope.ext_factor != 0.0f) {
      w.set(p + "rope.scaling.original_context_length",
            GgufValue::u32(static_cast<uint32_t>(c.rope.n_ctx_orig)));
      w.set(p + "rope.scaling.yarn_beta_fast", GgufValue::f32(c.rope.beta_fast));
      w.set(p + "rope.scaling.yarn_beta_slow", GgufValue::f32(c.rope.beta_slow));
    }
  }
  if (mla) {
    w.set(p + "attention.head_count_kv", GgufValue::u32(opt.mla_split ? 1 : static_cast<uint32_t>(c.n_head)));
    w.set(
        p + "attention.key_length",
        GgufValue::u32(static_cast<uint32_t>(opt.mla_split ? c.kv_lora_rank + c.rope.n_rot : c.head_dim_k)));
    w.set(p + "attention.value_length",
          GgufValue::u32(static_cast<uint32_t>(opt.mla_split ? c.kv_lora_rank : c.head_dim_v)));
    if (opt.mla_split) {
      w.set(p + "attention.key_length_mla", GgufValue::u32(static_cast<uint32_t>(c.head_dim_k)));
      w.set(p + "attention.value_length_mla", GgufValue::u32(static_cast<uint32_t>(c.head_dim_v)));
    }
    if (c.q_lora_rank > 0)
      w.set(p + "attention.q_lora_rank", GgufValue::u32(static_cast<uint32_t>(c.q_lora_rank)));
    w.set(p + "attention.kv_lora_rank", GgufValue::u32(static_cast<uint32_t>(c.kv_lora_rank)));
    w.set(p + "rope.scaling.yarn_log_multiplier",
          GgufValue::f32(c.rope.ext_factor != 0.0f ? opt.yarn_log_multiplier : 0.0f));
  } else {
    w.set(p + "attention.head_count_kv", GgufValue::u32(static_cast<uint32_t>(c.n_head_kv)));
    w.set(p + "attention.key_length", GgufValue::u32(static_cast<uint32_t>(c.head_dim_k)));
    w.set(p + "attention.value_length", GgufValue::u32(static_cast<uint32_t>(c.head_dim_v)));
  }
  if (c.n_expert > 0) {
    w.set(p + "expert_count", GgufValue::u32(static_cast<uint32_t>(c.n_expert)));
    w.set(p + "expert_used_count", GgufValue::u32(static_cast<uint32_t>(c.n_expert_used)));
    if (a == "deepseek2") {
      w.set(p + "leading_dense_block_count", GgufValue::u32(static_cast<uint32_t>(c.n_layer_dense_lead)));
      w.set(p + "expert_feed_forward_length", GgufValue::u32(static_cast<uint32_t>(c.n_ff_exp)));
      w.set(p + "expert_shared_count", GgufValue::u32(static_cast<uint32_t>(c.n_expert_shared)));
      w.set(p + "expert_weights_scale", GgufValue::f32(c.expert_weights_scale));
      w.set(p + "expert_weights_norm", GgufValue::boolean(c.expert_weights_norm));
      w.set(p + "expert_gating_func", GgufValue::u32(c.gating_sigmoid ? 2 : 1));
      if (c.n_expert_groups > 1) {
        w.set(p + "expert_group_count", GgufValue::u32(static_cast<uint32_t>(c.n_expert_groups)));
        w.set(p + "expert_group_used_count", GgufValue::u32(static_cast<uint32_t>(c.n_group_used)));
      }
    } else {
      MOE_CHECK(
          c.n_ff_exp == c.n_ff && c.n_expert_shared == 0 && !c.gating_sigmoid && c.n_layer_dense_lead == 0,
          "random model: ", a, " MoE layers use feed_forward_length, softmax routing and no shared experts");
      if (!c.expert_weights_norm) w.set(p + "expert_weights_norm", GgufValue::boolean(false));
    }
  }
  if (opt.tokenizer_source) {
    for (const auto& [key, value] : opt.tokenizer_source->metadata())
      if (key.rfind("tokenizer.", 0) == 0) w.set(key, value);
    const GgufValue* tokens = opt.tokenizer_source->find("tokenizer.ggml.tokens");
    MOE_CHECK(tokens && static_cast<int64_t>(tokens->elems().size()) == c.n_vocab,
              "random model: the tokenizer has ", tokens ? tokens->elems().size() : 0, " tokens, the config ",
              c.n_vocab);
  }

  if (!opt.tokenizer_source && opt.synthetic_vocab) write_synthetic_vocab(w, c.n_vocab);
  if (!opt.chat_template.empty()) w.set("tokenizer.chat_template", GgufValue::str(opt.chat_template));
  for (const auto& [key, value] : opt.extra_kv) w.set(key, value);

  TensorAdder r(w, opt, values);
  const int64_t E = c.n_embd;
  if (!c.rope.freq_factors.empty())
    r.add("rope_freqs.weight", {c.rope.n_rot / 2}, c.rope.freq_factors, false);
  r.matrix("token_embd.weight", {E, c.n_vocab});
  r.norm("output_norm.weight", E);
  if (!opt.tied_output) r.matrix("output.weight", {E, c.n_vocab});
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    r.norm(b + "attn_norm.weight", E);
    if (mla) {
      const int64_t H = c.n_head, rank = c.kv_lora_rank, nope = c.qk_nope_dim, dv = c.head_dim_v;
      if (c.q_lora_rank > 0) {
        r.matrix(b + "attn_q_a.weight", {E, c.q_lora_rank});
        r.norm(b + "attn_q_a_norm.weight", c.q_lora_rank);
        r.matrix(b + "attn_q_b.weight", {c.q_lora_rank, H * c.head_dim_k});
      } else {
        r.matrix(b + "attn_q.weight", {E, H * c.head_dim_k});
      }
      r.matrix(b + "attn_kv_a_mqa.weight", {E, rank + c.rope.n_rot});
      r.norm(b + "attn_kv_a_norm.weight", rank);
      // kv_b: per head nope rows of W_k then dv rows of W_v, each of rank inputs.
      const std::vector<float> kv_b = r.get(b + "attn_kv_b.weight", {rank, H * (nope + dv)});
      if (opt.mla_split) {
        std::vector<float> k_b(static_cast<size_t>(H * rank * nope)), v_b(static_cast<size_t>(H * dv * rank));
        for (int64_t hd = 0; hd < H; ++hd) {
          for (int64_t i = 0; i < nope; ++i)
            for (int64_t k = 0; k < rank; ++k)
              k_b[(hd * rank + k) * nope + i] = kv_b[(hd * (nope + dv) + i) * rank + k];
          for (int64_t i = 0; i < dv; ++i)
            for (int64_t k = 0; k < rank; ++k)
              v_b[(hd * dv + i) * rank + k] = kv_b[(hd * (nope + dv) + nope + i) * rank + k];
        }
        r.add(b + "attn_k_b.weight", {nope, rank, H}, k_b, true);
        r.add(b + "attn_v_b.weight", {rank, dv, H}, v_b, true);
      } else {
        r.add(b + "attn_kv_b.weight", {rank, H * (nope + dv)}, kv_b, true);
      }
      r.matrix(b + "attn_output.weight", {H * dv, E});
    } else {
      r.matrix(b + "attn_q.weight", {E, c.n_head * c.head_dim_k});
      r.matrix(b + "attn_k.weight", {E, c.n_head_kv * c.head_dim_k});
      r.matrix(b + "attn_v.weight", {E, c.n_head_kv * c.head_dim_v});
      if (a == "qwen2") {
        r.bias(b + "attn_q.bias", c.n_head * c.head_dim_k);
        r.bias(b + "attn_k.bias", c.n_head_kv * c.head_dim_k);
        r.bias(b + "attn_v.bias", c.n_head_kv * c.head_dim_v);
      }
      r.matrix(b + "attn_output.weight", {c.n_head * c.head_dim_v, E});
    }
    r.norm(b + "ffn_norm.weight", E);
    if (c.is_moe_layer(il)) {
      const int64_t F = c.n_ff_exp, X = c.n_expert;
      r.matrix(b + "ffn_gate_inp.weight", {E, X});
      if (c.gating_sigmoid) r.bias(b + "exp_probs_b.bias", X);
      r.matrix(b + "ffn_gate_exps.weight", {E, F, X});
      r.matrix(b + "ffn_up_exps.weight", {E, F, X});
      r.matrix(b + "ffn_down_exps.weight", {F, E, X});
      if (c.n_expert_shared > 0) {
        r.matrix(b + "ffn_gate_shexp.weight", {E, F * c.n_expert_shared});
        r.matrix(b + "ffn_up_shexp.weight", {E, F * c.n_expert_shared});
        r.matrix(b + "ffn_down_shexp.weight", {F * c.n_expert_shared, E});
      }
    } else {
      r.matrix(b + "ffn_gate.weight", {E, c.n_ff});
      r.matrix(b + "ffn_up.weight", {E, c.n_ff});
      r.matrix(b + "ffn_down.weight", {c.n_ff, E});
    }
  }
  w.write(path);
}

void write_random_model(const ModelConfig& c, const RandomModelOptions& opt, const std::string& path) {
  RandomValues random(opt.seed);
  write_model(c, opt, std::ref(random), path);
}

}  // namespace moe

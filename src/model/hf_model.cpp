// Hugging Face directory -> GGUF view, mirroring llama.cpp's convert_hf_to_gguf.py (TextModel,
// LlamaModel, Qwen2Model, DeepseekV2Model). The tokenizer metadata is in hf_vocab.cpp.
#include "model/hf_model.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <tuple>

#include "core/error.h"
#include "formats/safetensors.h"
#include "model/hf_vocab.h"

namespace moe {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Shape = std::vector<int64_t>;  // PyTorch order, outermost first

// llama.cpp's LlamaFileType values (general.file_type).
constexpr uint32_t kFileTypeAllF32 = 0;
constexpr uint32_t kFileTypeMostlyF16 = 1;
constexpr uint32_t kFileTypeMostlyBf16 = 32;

json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MOE_CHECK(in.good(), path, ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// config.json, with errors that name the directory and the key.
class Config {
 public:
  Config(std::string dir, json j) : dir_(std::move(dir)), j_(std::move(j)) {
    MOE_CHECK(j_.is_object(), dir_, "/config.json: not a JSON object");
  }
  const std::string& dir() const { return dir_; }
  const json& raw() const { return j_; }

  // The value, or nullptr when absent or null.
  const json* get(const std::string& key) const {
    const auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  bool has(const std::string& key) const { return get(key) != nullptr; }

  [[noreturn]] void bad(const std::string& key, const std::string& why) const {
    fail(dir_, "/config.json: ", key, " ", why);
  }

  std::optional<int64_t> opt_int(const std::string& key, int64_t lo, int64_t hi) const {
    const json* v = get(key);
    if (v == nullptr) return std::nullopt;
    int64_t x = 0;
    if (v->is_number_integer()) {
      if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi))
        bad(key, "is out of range");
      x = v->get<int64_t>();
    } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
               std::trunc(v->get<double>()) == v->get<double>() && std::fabs(v->get<double>()) < 9e15) {
      x = static_cast<int64_t>(v->get<double>());
    } else {
      bad(key, "must be an integer, got " + v->dump());
    }
    if (x < lo || x > hi)
      bad(key, "= " + std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " +
                   std::to_string(hi) + "]");
    return x;
  }
  int64_t integer(const std::string& key, int64_t lo, int64_t hi) const {
    const std::optional<int64_t> v = opt_int(key, lo, hi);
    if (!v) bad(key, "is missing");
    return *v;
  }
  int64_t int_or(const std::string& key, int64_t dflt, int64_t lo, int64_t hi) const {
    return opt_int(key, lo, hi).value_or(dflt);
  }
  std::optional<double> opt_number(const std::string& key) const {
    const json* v = get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number() || !std::isfinite(v->get<double>())) bad(key, "must be a number, got " + v->dump());
    return v->get<double>();
  }
  std::optional<bool> opt_bool(const std::string& key) const {
    const json* v = get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_boolean()) bad(key, "must be true or false, got " + v->dump());
    return v->get<bool>();
  }
  std::optional<std::string> opt_string(const std::string& key) const {
    const json* v = get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) bad(key, "must be a string, got " + v->dump());
    return v->get<std::string>();
  }

 private:
  std::string dir_;
  json j_;
};

// Metadata in insertion order; setting a key again replaces its value in place (as gguf-py does).
class Meta {
 public:
  void set(const std::string& key, GgufValue v) {
    for (auto& kv : kv_) {
      if (kv.first == key) {
        kv.second = std::move(v);
        return;
      }
    }
    kv_.emplace_back(key, std::move(v));
  }
  void u32(const std::string& key, int64_t v) { set(key, GgufValue::u32(static_cast<uint32_t>(v))); }
  void f32(const std::string& key, double v) { set(key, GgufValue::f32(static_cast<float>(v))); }
  std::vector<std::pair<std::string, GgufValue>> take() { return std::move(kv_); }

 private:
  std::vector<std::pair<std::string, GgufValue>> kv_;
};

// A weight as read from the safetensors, FP8 already dequantized.
struct Weight {
  std::string name;  // Hugging Face name, for messages
  DType type = DType::F32;
  Shape shape;
  const uint8_t* data = nullptr;
  size_t n_bytes = 0;
  std::shared_ptr<std::vector<uint8_t>> owned;  // the buffer data points into, when converted
  size_t elem_size() const { return dtype_traits(type).block_bytes; }
};

std::shared_ptr<std::vector<uint8_t>> new_buffer(size_t n) {
  return std::make_shared<std::vector<uint8_t>>(n);
}

Weight owned_weight(std::string name, DType type, Shape shape, std::shared_ptr<std::vector<uint8_t>> buf) {
  Weight w;
  w.name = std::move(name);
  w.type = type;
  w.shape = std::move(shape);
  w.data = buf->data();
  w.n_bytes = buf->size();
  w.owned = std::move(buf);
  return w;
}

// Collects the GGUF tensors; keeps whatever their bytes live in.
class Builder {
 public:
  Builder(const Config& cfg, const SafetensorsDir& st) : cfg_(cfg), st_(st) {
    if (const json* q = cfg.get("quantization_config")) {
      if (q->is_object() && q->value("quant_method", "") == "fp8") {
        const auto bs = q->find("weight_block_size");
        if (bs != q->end() && !bs->is_null()) {
          MOE_CHECK(bs->is_array() && bs->size() == 2 && (*bs)[0].is_number_integer() &&
                        (*bs)[1].is_number_integer() && (*bs)[0].get<int64_t>() > 0 &&
                        (*bs)[1].get<int64_t>() > 0,
                    cfg.dir(), "/config.json: quantization_config.weight_block_size must be [rows, cols]");
          block_rows_ = (*bs)[0].get<int64_t>();
          block_cols_ = (*bs)[1].get<int64_t>();
        }
      }
    }
  }

  const std::string& dir() const { return cfg_.dir(); }
  bool has(const std::string& hf) const { return st_.find(hf) != nullptr; }
  void skip(const std::string& hf) { used_.insert(hf); }

  // The tensor hf, which must have the given shape (derived from config.json).
  Weight get(const std::string& hf, const Shape& shape) {
    const SafetensorsTensor* t = st_.find(hf);
    MOE_CHECK(t != nullptr, dir(), ": tensor '", hf, "' is missing");
    MOE_CHECK(t->shape == shape, dir(), ": tensor '", hf, "' has shape ", shape_str(t->shape), ", expected ",
              shape_str(shape), " from config.json");
    used_.insert(hf);
    Weight w;
    w.name = hf;
    w.shape = t->shape;
    if (const std::optional<DType> d = st_dtype_to_dtype(t->dtype)) {
      w.type = *d;
      w.data = t->data;
      w.n_bytes = t->n_bytes;
      return w;
    }
    MOE_CHECK(t->dtype == StDtype::kF8E4M3, dir(), ": tensor '", hf, "' has dtype ", st_dtype_name(t->dtype),
              ", which cannot be used as a weight (F32, F16, BF16 or F8_E4M3 expected)");
    return dequantize_fp8(*t);
  }

  // Adds a GGUF tensor (ne = the reversed shape) that points at w's bytes.
  void add(const std::string& gguf_name, const Weight& w) {
    GgufTensorInfo info;
    info.name = gguf_name;
    info.type = w.type;
    info.n_dims = static_cast<int>(w.shape.size());
    MOE_CHECK(info.n_dims >= 1 && info.n_dims <= 4, dir(), ": tensor '", w.name, "' has ", info.n_dims,
              " dimensions");
    for (int i = 0; i < info.n_dims; ++i) info.ne[i] = w.shape[w.shape.size() - 1 - static_cast<size_t>(i)];
    info.n_bytes = w.n_bytes;
    static const uint8_t kEmpty = 0;
    info.external = w.data != nullptr ? w.data : &kEmpty;
    if (w.owned) keep_.push_back(w.owned);
    tensors_.push_back(std::move(info));
  }

  // Fails on safetensors entries no rule consumed (the converter's "Can not map tensor"), unless
  // ignorable says they are not part of the model.
  void check_all_used(const std::function<bool(const std::string&)>& ignorable) const {
    for (const SafetensorsTensor* t : st_.tensors()) {
      const std::string& n = t->name;
      if (used_.count(n) || ignorable(n)) continue;
      if (n.ends_with(".rotary_emb.inv_freq") || n.ends_with(".attention.masked_bias") ||
          n.ends_with(".attention.bias") || n.ends_with(".activation_scale"))
        continue;
      fail(dir(), ": tensor '", n, "' (in ", t->file, ") is not part of a ", arch_,
           " model as config.json describes it");
    }
  }

  void set_arch(std::string a) { arch_ = std::move(a); }
  std::vector<GgufTensorInfo>& tensors() { return tensors_; }
  std::vector<std::shared_ptr<const void>>& keep_alive() { return keep_; }

 private:
  Weight dequantize_fp8(const SafetensorsTensor& t) {
    const int64_t n = t.n_elements();
    int64_t rows = 1, cols = n, br = 1, bc = std::max<int64_t>(n, 1);
    std::vector<float> scale = {1.0f};
    const std::string sname = t.name + "_scale_inv";
    if (const SafetensorsTensor* s = st_.find(sname)) {
      used_.insert(sname);
      scale = scale_values(*s);
      if (scale.size() != 1) {
        MOE_CHECK(t.shape.size() == 2, dir(), ": FP8 tensor '", t.name, "' with block scales must be 2-D");
        MOE_CHECK(block_rows_ > 0, dir(), ": tensor '", t.name, "' has block scales '", sname,
                  "', but config.json has no quantization_config.weight_block_size");
        rows = t.shape[0];
        cols = t.shape[1];
        br = block_rows_;
        bc = block_cols_;
        const Shape want = {(rows + br - 1) / br, (cols + bc - 1) / bc};
        MOE_CHECK(s->shape == want, dir(), ": tensor '", sname, "' has shape ", shape_str(s->shape),
                  ", expected ", shape_str(want), " for ", shape_str(t.shape), " in blocks of ", br, "x", bc);
      }
    }
    auto buf = new_buffer(static_cast<size_t>(n) * 2);
    dequantize_fp8_blocks_bf16(t.data, rows, cols, scale.data(), br, bc,
                               reinterpret_cast<uint16_t*>(buf->data()));
    return owned_weight(t.name, DType::BF16, t.shape, std::move(buf));
  }

  std::vector<float> scale_values(const SafetensorsTensor& s) const {
    const std::optional<DType> d = st_dtype_to_dtype(s.dtype);
    MOE_CHECK(d.has_value(), dir(), ": scale tensor '", s.name, "' has dtype ", st_dtype_name(s.dtype),
              " (F32, BF16 or F16 expected)");
    std::vector<float> out(static_cast<size_t>(s.n_elements()));
    MOE_CHECK(!out.empty(), dir(), ": scale tensor '", s.name, "' is empty");
    for (size_t i = 0; i < out.size(); ++i) {
      if (*d == DType::F32) {
        std::memcpy(&out[i], s.data + 4 * i, 4);
      } else {
        uint16_t h;
        std::memcpy(&h, s.data + 2 * i, 2);
        out[i] = *d == DType::BF16 ? bf16_to_fp32(h) : fp16_to_fp32(h);
      }
    }
    return out;
  }

  const Config& cfg_;
  const SafetensorsDir& st_;
  std::string arch_;
  int64_t block_rows_ = 0, block_cols_ = 0;
  std::set<std::string> used_;
  std::vector<GgufTensorInfo> tensors_;
  std::vector<std::shared_ptr<const void>> keep_;
};

// ---- transforms (byte shuffles; the element type is kept) ----

// The converter's LlamaModel.permute: rows of each head reordered from HF's rotate-half layout
// (first half, second half) to interleaved pairs, so llama's adjacent-pair RoPE gives the same
// result. Works on weights [n_head * head_dim, n_in] and biases [n_head * head_dim] alike.
Weight permute_heads(const Weight& w, int64_t n_head, const std::string& dir) {
  const int64_t rows = w.shape[0];
  MOE_CHECK(n_head > 0 && rows % (2 * n_head) == 0, dir, ": tensor '", w.name, "' has ", rows,
            " rows, not a multiple of 2 * ", n_head, " heads");
  const size_t row_bytes = w.n_bytes / static_cast<size_t>(rows);
  const int64_t head_dim = rows / n_head, half = head_dim / 2;
  auto buf = new_buffer(w.n_bytes);
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j)
        std::memcpy(buf->data() + static_cast<size_t>(h * head_dim + 2 * i + j) * row_bytes,
                    w.data + static_cast<size_t>(h * head_dim + j * half + i) * row_bytes, row_bytes);
  return owned_weight(w.name, w.type, w.shape, std::move(buf));
}

// k_b[h][c][i] = kv_b[h * (nope + v) + i][c] for elements of kEs bytes.
template <size_t kEs>
void transpose_key_rows(const uint8_t* w, uint8_t* kb, int64_t n_head, int64_t nope, int64_t v,
                        int64_t kv_lora) {
  for (int64_t h = 0; h < n_head; ++h) {
    const uint8_t* head = w + static_cast<size_t>(h * (nope + v) * kv_lora) * kEs;
    uint8_t* out = kb + static_cast<size_t>(h * kv_lora * nope) * kEs;
    for (int64_t i = 0; i < nope; ++i)
      for (int64_t c = 0; c < kv_lora; ++c)
        std::memcpy(out + static_cast<size_t>(c * nope + i) * kEs,
                    head + static_cast<size_t>(i * kv_lora + c) * kEs, kEs);
  }
}

// kv_b_proj [n_head * (nope + v), kv_lora] split per head as the converter does:
// k_b [n_head, kv_lora, nope] (the key rows, transposed) and v_b [n_head, v, kv_lora].
std::pair<Weight, Weight> split_kv_b(const Weight& w, int64_t n_head, int64_t nope, int64_t v,
                                     int64_t kv_lora) {
  const size_t es = w.elem_size();
  auto kb = new_buffer(static_cast<size_t>(n_head * kv_lora * nope) * es);
  auto vb = new_buffer(static_cast<size_t>(n_head * v * kv_lora) * es);
  if (es == 2)
    transpose_key_rows<2>(w.data, kb->data(), n_head, nope, v, kv_lora);
  else
    transpose_key_rows<4>(w.data, kb->data(), n_head, nope, v, kv_lora);
  for (int64_t h = 0; h < n_head; ++h) {
    std::memcpy(vb->data() + static_cast<size_t>(h * v * kv_lora) * es,
                w.data + static_cast<size_t>((h * (nope + v) + nope) * kv_lora) * es,
                static_cast<size_t>(v * kv_lora) * es);
  }
  return {owned_weight(w.name, w.type, {n_head, kv_lora, nope}, std::move(kb)),
          owned_weight(w.name, w.type, {n_head, v, kv_lora}, std::move(vb))};
}

// Experts [out, in] each, stacked into [n_expert, out, in]. One expert is read (and, for FP8,
// dequantized) at a time, so only the stacked copy stays.
Weight stack_experts(Builder& b, const std::vector<std::string>& names, const Shape& shape,
                     const std::string& what) {
  std::shared_ptr<std::vector<uint8_t>> buf;
  DType type = DType::F32;
  size_t each = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const Weight w = b.get(names[i], shape);
    if (i == 0) {
      type = w.type;
      each = w.n_bytes;
      buf = new_buffer(each * names.size());
    }
    MOE_CHECK(w.type == type, b.dir(), ": tensor '", names[i], "' is ", dtype_name(w.type), " but '",
              names[0], "' is ", dtype_name(type));
    std::memcpy(buf->data() + i * each, w.data, each);
  }
  Shape s = {static_cast<int64_t>(names.size())};
  s.insert(s.end(), shape.begin(), shape.end());
  return owned_weight(what, type, s, std::move(buf));
}

// ---- hyperparameters shared by the architectures (TextModel.set_gguf_parameters) ----

struct Dims {
  int64_t n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, n_vocab = 0;
  bool tied = false;
};

Dims read_dims(const Config& c) {
  Dims d;
  d.n_embd = c.integer("hidden_size", 1, 1 << 20);
  d.n_layer = c.integer("num_hidden_layers", 1, 4096);
  d.n_head = c.integer("num_attention_heads", 1, 4096);
  d.n_head_kv = c.int_or("num_key_value_heads", d.n_head, 1, d.n_head);
  if (d.n_head % d.n_head_kv != 0) c.bad("num_key_value_heads", "does not divide num_attention_heads");
  d.n_vocab = c.integer("vocab_size", 1, 1 << 24);
  d.tied = c.opt_bool("tie_word_embeddings").value_or(false);
  return d;
}

// The rope scaling dict (rope_scaling, or transformers 5's rope_parameters) and its type.
std::pair<const json*, std::string> rope_scaling(const Config& c) {
  const json* rs = c.get("rope_parameters");
  if (rs == nullptr) rs = c.get("rope_scaling");
  if (rs == nullptr) return {nullptr, ""};
  if (!rs->is_object()) c.bad("rope_scaling", "must be an object");
  std::string type;
  for (const char* k : {"rope_type", "type"}) {
    const auto it = rs->find(k);
    if (it != rs->end() && it->is_string()) {
      type = it->get<std::string>();
      break;
    }
  }
  return {rs, type};
}

double rope_number(const Config& c, const json& rs, const char* key, bool required, double dflt = 0.0) {
  const auto it = rs.find(key);
  if (it == rs.end() || it->is_null()) {
    if (required) c.bad(std::string("rope_scaling.") + key, "is missing");
    return dflt;
  }
  if (!it->is_number() || !std::isfinite(it->get<double>()))
    c.bad(std::string("rope_scaling.") + key, "must be a number");
  return it->get<double>();
}

// rope_theta: in the rope dict (transformers 5's rope_parameters) or at the top level.
std::optional<double> rope_theta(const Config& c) {
  if (const auto [rs, type] = rope_scaling(c); rs != nullptr && rs->contains("rope_theta"))
    return rope_number(c, *rs, "rope_theta", true);
  return c.opt_number("rope_theta");
}

void base_params(Meta& m, const Config& c, const std::string& arch, const Dims& d, int64_t head_count_kv,
                 bool allow_llama3, std::optional<double> default_rms_eps = std::nullopt) {
  const std::string a = arch + ".";
  m.u32(a + "block_count", d.n_layer);
  if (auto ctx = c.opt_int("max_position_embeddings", 1, std::numeric_limits<uint32_t>::max()))
    m.u32(a + "context_length", *ctx);
  m.u32(a + "embedding_length", d.n_embd);
  if (auto ff = c.opt_int("intermediate_size", 1, std::numeric_limits<uint32_t>::max()))
    m.u32(a + "feed_forward_length", *ff);
  m.u32(a + "attention.head_count", d.n_head);
  m.u32(a + "attention.head_count_kv", head_count_kv);

  if (const auto [rs, type] = rope_scaling(c); rs != nullptr && !type.empty() && type != "default") {
    if (type == "linear" || type == "yarn") {
      const double factor = rope_number(c, *rs, "factor", true);
      if (factor < 1.0) c.bad("rope_scaling.factor", "must be >= 1");
      m.set(a + "rope.scaling.type", GgufValue::str(type));
      m.f32(a + "rope.scaling.factor", factor);
      if (type == "yarn") {
        const auto orig =
            rs->contains("original_max_position_embeddings")
                ? rope_number(c, *rs, "original_max_position_embeddings", true)
                : static_cast<double>(c.integer("original_max_position_embeddings", 1, 1 << 30));
        if (orig < 1 || orig > (1 << 30) || std::trunc(orig) != orig)
          c.bad("rope_scaling.original_max_position_embeddings", "must be a positive integer");
        m.u32(a + "rope.scaling.original_context_length", static_cast<int64_t>(orig));
        if (rs->contains("extrapolation_factor"))
          m.f32(a + "rope.scaling.yarn_ext_factor", rope_number(c, *rs, "extrapolation_factor", true));
        for (const char* k : {"attention_factor", "attn_factor"}) {
          if (rs->contains(k) && !(*rs)[k].is_null()) {
            m.f32(a + "rope.scaling.yarn_attn_factor", rope_number(c, *rs, k, true));
            break;
          }
        }
        if (rs->contains("beta_fast"))
          m.f32(a + "rope.scaling.yarn_beta_fast", rope_number(c, *rs, "beta_fast", true));
        if (rs->contains("beta_slow"))
          m.f32(a + "rope.scaling.yarn_beta_slow", rope_number(c, *rs, "beta_slow", true));
      }
    } else if (!(type == "llama3" && allow_llama3)) {
      c.bad("rope_scaling", "type '" + type + "' is not supported for " + arch);
    }
  }
  if (auto theta = rope_theta(c)) {
    if (*theta <= 0) c.bad("rope_theta", "must be positive");
    m.f32(a + "rope.freq_base", *theta);
  }
  if (auto eps = c.opt_number("rms_norm_eps").value_or(default_rms_eps.value_or(0.0)); eps != 0.0) {
    if (eps < 0 || eps > 1) c.bad("rms_norm_eps", "is out of range");
    m.f32(a + "attention.layer_norm_rms_epsilon", eps);
  }
  for (const char* k : {"num_local_experts", "num_experts", "n_routed_experts"}) {
    if (auto n = c.opt_int(k, 1, 1 << 16)) {
      m.u32(a + "expert_count", *n);
      break;
    }
  }
  if (auto n = c.opt_int("num_experts_per_tok", 1, 1 << 16)) m.u32(a + "expert_used_count", *n);
  if (auto n = c.opt_int("n_group", 1, 1 << 16)) m.u32(a + "expert_group_count", *n);
  if (auto n = c.opt_int("topk_group", 1, 1 << 16)) m.u32(a + "expert_group_used_count", *n);
  if (auto f = c.opt_string("scoring_func")) {
    if (*f == "softmax")
      m.u32(a + "expert_gating_func", 1);
    else if (*f == "sigmoid")
      m.u32(a + "expert_gating_func", 2);
    else
      c.bad("scoring_func", "'" + *f + "' is not supported (softmax or sigmoid)");
  }
  if (auto hd = c.opt_int("head_dim", 1, 1 << 16)) {
    m.u32(a + "attention.key_length", *hd);
    m.u32(a + "attention.value_length", *hd);
  }
  m.u32("general.file_type", kFileTypeMostlyF16);  // placeholder, set from the tensors at the end
}

// token_embd / output_norm / output, shared by every architecture. lm_head is skipped when the
// embeddings are tied (llama.cpp then reuses token_embd) or absent.
void add_embeddings(Builder& b, const Dims& d) {
  b.add("token_embd.weight", b.get("model.embed_tokens.weight", {d.n_vocab, d.n_embd}));
}
void add_output(Builder& b, const Dims& d) {
  b.add("output_norm.weight", b.get("model.norm.weight", {d.n_embd}));
  if (d.tied) {
    b.skip("lm_head.weight");
  } else if (b.has("lm_head.weight")) {
    b.add("output.weight", b.get("lm_head.weight", {d.n_vocab, d.n_embd}));
  }
}

std::string layer(int64_t il) { return "model.layers." + std::to_string(il) + "."; }
std::string blk(int64_t il) { return "blk." + std::to_string(il) + "."; }

// llama3 rope scaling as the converter's LlamaModel.generate_extra_tensors: per-frequency
// factors, computed in float32 as torch does.
std::vector<float> llama3_rope_factors(const Config& c, const json& rs, int64_t dim) {
  const float base = static_cast<float>(rope_theta(c).value_or(10000.0));
  const double factor = rope_number(c, rs, "factor", false, 8.0);
  const double low = rope_number(c, rs, "low_freq_factor", false, 1.0);
  const double high = rope_number(c, rs, "high_freq_factor", false, 4.0);
  const double old_ctx = rope_number(c, rs, "original_max_position_embeddings", false, 8192.0);
  if (low == high) c.bad("rope_scaling", "low_freq_factor must differ from high_freq_factor");
  const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
  std::vector<float> out;
  for (int64_t i = 0; i < dim; i += 2) {
    const float freq = 1.0f / std::pow(base, static_cast<float>(i) / static_cast<float>(dim));
    const float wavelen = static_cast<float>(2.0 * M_PI) / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(static_cast<float>(factor));
    } else {
      const float smooth = static_cast<float>((old_ctx / wavelen - low) / (high - low));
      out.push_back(1.0f / ((1.0f - smooth) / static_cast<float>(factor) + smooth));
    }
  }
  return out;
}

// ---- llama (and Mixtral) / qwen2 ----

void build_llama_like(Builder& b, Meta& m, const Config& c, const std::string& arch, bool moe) {
  const Dims d = read_dims(c);
  const bool is_llama = arch == "llama";
  int64_t head_dim = 0;
  if (auto hd = c.opt_int("head_dim", 2, 1 << 16)) {
    head_dim = *hd;
  } else {
    if (d.n_embd % d.n_head != 0) c.bad("hidden_size", "is not a multiple of num_attention_heads");
    head_dim = d.n_embd / d.n_head;
  }
  if (head_dim % 2 != 0) c.bad("head_dim", "must be even");
  const int64_t n_ff = c.integer("intermediate_size", 1, 1 << 22);
  int64_t n_expert = 0;
  if (moe) {
    n_expert = c.integer("num_local_experts", 1, 4096);
    const int64_t used = c.integer("num_experts_per_tok", 1, 4096);
    if (used > n_expert) c.bad("num_experts_per_tok", "exceeds num_local_experts");
  }
  base_params(m, c, arch, d, d.n_head_kv, is_llama);
  if (is_llama) {
    m.u32(arch + ".vocab_size", d.n_vocab);
    m.u32(arch + ".rope.dimension_count", head_dim);
  }

  const int64_t q_rows = d.n_head * head_dim, kv_rows = d.n_head_kv * head_dim;
  if (const auto [rs, type] = rope_scaling(c); is_llama && rs != nullptr && type == "llama3") {
    const std::vector<float> f = llama3_rope_factors(c, *rs, head_dim);
    auto buf = new_buffer(f.size() * sizeof(float));
    std::memcpy(buf->data(), f.data(), buf->size());
    b.add("rope_freqs.weight", owned_weight("rope_freqs", DType::F32, {static_cast<int64_t>(f.size())}, buf));
  }
  add_embeddings(b, d);
  for (int64_t il = 0; il < d.n_layer; ++il) {
    const std::string L = layer(il), B = blk(il);
    b.add(B + "attn_norm.weight", b.get(L + "input_layernorm.weight", {d.n_embd}));
    Weight q = b.get(L + "self_attn.q_proj.weight", {q_rows, d.n_embd});
    Weight k = b.get(L + "self_attn.k_proj.weight", {kv_rows, d.n_embd});
    b.add(B + "attn_q.weight", is_llama ? permute_heads(q, d.n_head, b.dir()) : q);
    b.add(B + "attn_k.weight", is_llama ? permute_heads(k, d.n_head_kv, b.dir()) : k);
    b.add(B + "attn_v.weight", b.get(L + "self_attn.v_proj.weight", {kv_rows, d.n_embd}));
    // Qwen2 always has q/k/v biases; Llama only with attention_bias.
    for (const auto& [proj, rows, heads] :
         {std::tuple{"q", q_rows, d.n_head}, std::tuple{"k", kv_rows, d.n_head_kv},
          std::tuple{"v", kv_rows, int64_t{0}}}) {
      const std::string name = L + "self_attn." + proj + "_proj.bias";
      if (!is_llama || b.has(name)) {
        Weight bias = b.get(name, {rows});
        b.add(B + "attn_" + proj + ".bias",
              is_llama && heads > 0 ? permute_heads(bias, heads, b.dir()) : bias);
      }
    }
    b.add(B + "attn_output.weight", b.get(L + "self_attn.o_proj.weight", {d.n_embd, q_rows}));
    if (is_llama && b.has(L + "self_attn.o_proj.bias"))
      b.add(B + "attn_output.bias", b.get(L + "self_attn.o_proj.bias", {d.n_embd}));
    b.add(B + "ffn_norm.weight", b.get(L + "post_attention_layernorm.weight", {d.n_embd}));
    if (moe) {
      b.add(B + "ffn_gate_inp.weight", b.get(L + "block_sparse_moe.gate.weight", {n_expert, d.n_embd}));
      // Mixtral's w1 = gate, w3 = up, w2 = down.
      for (const auto& [w, gguf, shape] : {std::tuple{"w1", "ffn_gate_exps", Shape{n_ff, d.n_embd}},
                                           std::tuple{"w3", "ffn_up_exps", Shape{n_ff, d.n_embd}},
                                           std::tuple{"w2", "ffn_down_exps", Shape{d.n_embd, n_ff}}}) {
        std::vector<std::string> names;
        for (int64_t x = 0; x < n_expert; ++x)
          names.push_back(L + "block_sparse_moe.experts." + std::to_string(x) + "." + w + ".weight");
        b.add(B + gguf + ".weight", stack_experts(b, names, shape, L + "block_sparse_moe.experts.*." + w));
      }
    } else {
      b.add(B + "ffn_gate.weight", b.get(L + "mlp.gate_proj.weight", {n_ff, d.n_embd}));
      b.add(B + "ffn_up.weight", b.get(L + "mlp.up_proj.weight", {n_ff, d.n_embd}));
      b.add(B + "ffn_down.weight", b.get(L + "mlp.down_proj.weight", {d.n_embd, n_ff}));
    }
  }
  add_output(b, d);
  b.check_all_used([](const std::string&) { return false; });
}

// ---- deepseek2 ----

void build_deepseek2(Builder& b, Meta& m, const Config& c) {
  const Dims d = read_dims(c);
  const std::string a = "deepseek2.";
  const std::optional<int64_t> q_lora = c.opt_int("q_lora_rank", 1, 1 << 20);
  const int64_t kv_lora = c.int_or("kv_lora_rank", 512, 1, 1 << 20);
  const int64_t nope = c.integer("qk_nope_head_dim", 1, 1 << 16);
  const int64_t rope = c.integer("qk_rope_head_dim", 2, 1 << 16);
  const int64_t v_dim = c.integer("v_head_dim", 1, 1 << 16);
  if (rope % 2 != 0) c.bad("qk_rope_head_dim", "must be even");
  const bool has_moe = c.has("n_routed_experts");
  const int64_t n_ff = c.integer("intermediate_size", 1, 1 << 22);
  const int64_t first_dense = c.int_or("first_k_dense_replace", has_moe ? 0 : d.n_layer, 0, d.n_layer);
  int64_t moe_ff = 0;
  if (c.has("moe_intermediate_size"))
    moe_ff = c.integer("moe_intermediate_size", 1, 1 << 22);
  else
    moe_ff = n_ff;
  int64_t n_expert = 0, n_shared = 0;
  if (has_moe) {
    n_expert = c.integer("n_routed_experts", 1, 1 << 16);
    c.integer("num_experts_per_tok", 1, n_expert);
    n_shared = c.int_or("n_shared_experts", 0, 0, 1 << 10);
    if (c.int_or("moe_layer_freq", 1, 1, 1 << 10) != 1)
      c.bad("moe_layer_freq", "other than 1 is not supported");
    if (auto groups = c.opt_int("n_group", 1, n_expert)) {
      if (n_expert % *groups != 0) c.bad("n_group", "does not divide n_routed_experts");
      if (auto used_groups = c.opt_int("topk_group", 1, *groups); !used_groups)
        c.bad("topk_group", "is missing while n_group is set");
    }
    if (auto s = c.opt_number("routed_scaling_factor"); s && *s <= 0)
      c.bad("routed_scaling_factor", "must be positive");
  }
  c.opt_bool("norm_topk_prob");  // type check

  // The converter's order: TextModel's keys (with head_count_kv = 1: MLA is written as MQA and
  // rms_norm_eps defaulting to 1e-6), then DeepseekV2Model's.
  base_params(m, c, "deepseek2", d, 1, false, 1e-6);
  m.u32(a + "leading_dense_block_count", first_dense);
  m.u32(a + "vocab_size", d.n_vocab);
  if (q_lora) m.u32(a + "attention.q_lora_rank", *q_lora);
  m.u32(a + "attention.kv_lora_rank", kv_lora);
  m.u32(a + "attention.key_length", kv_lora + rope);
  m.u32(a + "attention.value_length", kv_lora);
  m.u32(a + "attention.key_length_mla", nope + rope);
  m.u32(a + "attention.value_length_mla", v_dim);
  m.u32(a + "expert_feed_forward_length", moe_ff);
  if (has_moe) m.u32(a + "expert_count", n_expert);
  m.u32(a + "expert_shared_count", n_shared);
  if (auto s = c.opt_number("routed_scaling_factor")) m.f32(a + "expert_weights_scale", *s);
  if (c.opt_bool("norm_topk_prob").value_or(false))
    m.set(a + "expert_weights_norm", GgufValue::boolean(true));
  m.u32(a + "rope.dimension_count", rope);
  if (const auto [rs, type] = rope_scaling(c);
      rs != nullptr && rs->contains("mscale_all_dim") && !(*rs)["mscale_all_dim"].is_null()) {
    // [TAG_DEEPSEEK2_YARN_LOG_MUL_FIX]: the converter writes 0.1 * mscale_all_dim.
    m.f32(a + "rope.scaling.yarn_log_multiplier", 0.1 * rope_number(c, *rs, "mscale_all_dim", true));
  }

  const int64_t q_rows = d.n_head * (nope + rope);
  add_embeddings(b, d);
  for (int64_t il = 0; il < d.n_layer; ++il) {
    const std::string L = layer(il), B = blk(il);
    b.add(B + "attn_norm.weight", b.get(L + "input_layernorm.weight", {d.n_embd}));
    if (q_lora) {
      b.add(B + "attn_q_a.weight", b.get(L + "self_attn.q_a_proj.weight", {*q_lora, d.n_embd}));
      b.add(B + "attn_q_a_norm.weight", b.get(L + "self_attn.q_a_layernorm.weight", {*q_lora}));
      b.add(B + "attn_q_b.weight", b.get(L + "self_attn.q_b_proj.weight", {q_rows, *q_lora}));
    } else {
      b.add(B + "attn_q.weight", b.get(L + "self_attn.q_proj.weight", {q_rows, d.n_embd}));
    }
    b.add(B + "attn_kv_a_mqa.weight",
          b.get(L + "self_attn.kv_a_proj_with_mqa.weight", {kv_lora + rope, d.n_embd}));
    b.add(B + "attn_kv_a_norm.weight", b.get(L + "self_attn.kv_a_layernorm.weight", {kv_lora}));
    const Weight kv_b = b.get(L + "self_attn.kv_b_proj.weight", {d.n_head * (nope + v_dim), kv_lora});
    auto [k_b, v_b] = split_kv_b(kv_b, d.n_head, nope, v_dim, kv_lora);
    b.add(B + "attn_k_b.weight", k_b);
    b.add(B + "attn_v_b.weight", v_b);
    b.add(B + "attn_output.weight", b.get(L + "self_attn.o_proj.weight", {d.n_embd, d.n_head * v_dim}));
    b.add(B + "ffn_norm.weight", b.get(L + "post_attention_layernorm.weight", {d.n_embd}));
    if (!has_moe || il < first_dense) {
      b.add(B + "ffn_gate.weight", b.get(L + "mlp.gate_proj.weight", {n_ff, d.n_embd}));
      b.add(B + "ffn_up.weight", b.get(L + "mlp.up_proj.weight", {n_ff, d.n_embd}));
      b.add(B + "ffn_down.weight", b.get(L + "mlp.down_proj.weight", {d.n_embd, n_ff}));
      continue;
    }
    b.add(B + "ffn_gate_inp.weight", b.get(L + "mlp.gate.weight", {n_expert, d.n_embd}));
    if (b.has(L + "mlp.gate.e_score_correction_bias"))
      b.add(B + "exp_probs_b.bias", b.get(L + "mlp.gate.e_score_correction_bias", {n_expert}));
    for (const auto& [w, shape] :
         {std::pair{"gate", Shape{moe_ff, d.n_embd}}, std::pair{"up", Shape{moe_ff, d.n_embd}},
          std::pair{"down", Shape{d.n_embd, moe_ff}}}) {
      std::vector<std::string> names;
      for (int64_t x = 0; x < n_expert; ++x)
        names.push_back(L + "mlp.experts." + std::to_string(x) + "." + w + "_proj.weight");
      b.add(B + "ffn_" + w + "_exps.weight",
            stack_experts(b, names, shape, L + "mlp.experts.*." + w + "_proj"));
    }
    if (n_shared > 0) {
      const int64_t sh_ff = n_shared * moe_ff;
      b.add(B + "ffn_gate_shexp.weight", b.get(L + "mlp.shared_experts.gate_proj.weight", {sh_ff, d.n_embd}));
      b.add(B + "ffn_up_shexp.weight", b.get(L + "mlp.shared_experts.up_proj.weight", {sh_ff, d.n_embd}));
      b.add(B + "ffn_down_shexp.weight", b.get(L + "mlp.shared_experts.down_proj.weight", {d.n_embd, sh_ff}));
    }
  }
  add_output(b, d);
  // Multi-token-prediction layers (model.layers.N with N >= num_hidden_layers) are skipped, as
  // the converter does.
  const int64_t n_layer = d.n_layer;
  b.check_all_used([n_layer](const std::string& n) {
    if (!n.starts_with("model.layers.")) return false;
    const size_t dot = n.find('.', 13);
    if (dot == std::string::npos || dot == 13 || dot - 13 > 9) return false;
    const std::string num = n.substr(13, dot - 13);
    if (!std::all_of(num.begin(), num.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) return false;
    return std::stoll(num) >= n_layer;
  });
}

}  // namespace

bool is_hf_model_dir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::is_regular_file(fs::path(path) / "config.json", ec);
}

static std::unique_ptr<GgufFile> open_hf_model_impl(const std::string& dir) {
  std::error_code ec;
  MOE_CHECK(fs::is_directory(dir, ec), dir, ": not a directory");
  const std::string config_path = (fs::path(dir) / "config.json").string();
  MOE_CHECK(fs::is_regular_file(config_path, ec), dir,
            ": no config.json (not a Hugging Face model directory)");
  json j = read_json(config_path);
  MOE_CHECK(j.is_object(), config_path, ": not a JSON object");
  // Multimodal wrappers keep the language model's keys in text_config (the converter merges it).
  if (j.contains("text_config") && j["text_config"].is_object()) {
    json merged = j;
    for (const auto& [k, v] : j["text_config"].items()) merged[k] = v;
    j = std::move(merged);
  }
  const Config c(dir, j);
  const json* archs = c.get("architectures");
  MOE_CHECK(archs != nullptr && archs->is_array() && !archs->empty() && (*archs)[0].is_string(), config_path,
            ": 'architectures' must list the model class");
  const std::string hf_arch = (*archs)[0].get<std::string>();
  std::string arch;
  if (hf_arch == "LlamaForCausalLM" || hf_arch == "MixtralForCausalLM") {
    arch = "llama";
  } else if (hf_arch == "Qwen2ForCausalLM") {
    arch = "qwen2";
  } else if (hf_arch == "DeepseekV2ForCausalLM" || hf_arch == "DeepseekV3ForCausalLM") {
    arch = "deepseek2";
  } else {
    fail(config_path, ": architecture '", hf_arch,
         "' is not supported (LlamaForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM, DeepseekV2ForCausalLM, "
         "DeepseekV3ForCausalLM)");
  }

  const std::unique_ptr<SafetensorsDir> st = open_safetensors_dir(dir);
  Meta m;
  m.set("general.architecture", GgufValue::str(arch));
  m.set("general.type", GgufValue::str("model"));
  std::string name = fs::path(dir).lexically_normal().filename().string();
  if (name.empty()) name = fs::path(dir).lexically_normal().parent_path().filename().string();
  m.set("general.name", GgufValue::str(name));
  Builder b(c, *st);
  b.set_arch(arch);
  if (arch == "deepseek2")
    build_deepseek2(b, m, c);
  else
    build_llama_like(b, m, c, arch, hf_arch == "MixtralForCausalLM");
  m.u32("general.quantization_version", 2);

  // general.file_type as the converter guesses it: the first 2-D (or larger) BF16 or F16 tensor
  // decides; a model of f32 tensors only is ALL_F32 here (the converter would write F16 data).
  uint32_t ftype = kFileTypeAllF32;
  for (const GgufTensorInfo& t : b.tensors()) {
    if (t.n_dims < 2 || (t.type != DType::BF16 && t.type != DType::F16)) continue;
    ftype = t.type == DType::BF16 ? kFileTypeMostlyBf16 : kFileTypeMostlyF16;
    break;
  }
  m.u32("general.file_type", ftype);

  std::vector<std::pair<std::string, GgufValue>> vocab;
  add_hf_bpe_vocab(dir, c.integer("vocab_size", 1, 1 << 24), arch == "llama", &vocab);
  for (auto& [key, value] : vocab) m.set(key, std::move(value));

  // The mappings stay live as long as the GgufFile (tensors point into them).
  for (const auto& f : st->files()) b.keep_alive().push_back(f);
  return GgufFile::from_parts(dir, m.take(), std::move(b.tensors()), std::move(b.keep_alive()));
}

std::unique_ptr<GgufFile> open_hf_model(const std::string& dir) {
  try {
    return open_hf_model_impl(dir);
  } catch (const nlohmann::json::exception& e) {
    // A JSON value of an unexpected type somewhere in the directory's files.
    fail(dir, ": unexpected JSON content: ", e.what());
  }
}

}  // namespace moe

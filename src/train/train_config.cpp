// Training run config: strict JSON parsing, every error naming the key.
#include "train/train_config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "model/presets.h"

namespace moe::train {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

class Reader {
 public:
  Reader(const Json& obj, std::string origin, std::string path)
      : obj_(obj), origin_(std::move(origin)), path_(std::move(path)) {
    if (!obj_.is_object()) fail(origin_, ": ", path_.empty() ? "the config" : path_, ": must be an object");
  }
  [[noreturn]] void error(const std::string& key, const std::string& msg) const {
    fail(origin_, ": ", path_.empty() ? key : path_ + "." + key, ": ", msg);
  }
  void allow(std::initializer_list<const char*> keys) const {
    for (const auto& [key, value] : obj_.items()) {
      bool ok = false;
      for (const char* k : keys) ok = ok || key == k;
      if (!ok) error(key, "unknown key");
    }
  }
  bool has(const char* key) const { return obj_.contains(key); }
  const Json& at(const char* key) const {
    if (!obj_.contains(key)) error(key, "missing");
    return obj_.at(key);
  }
  void integer(const char* key, int64_t* out, int64_t lo, int64_t hi) const {
    if (!has(key)) return;
    const Json& v = obj_.at(key);
    if (!v.is_number_integer()) error(key, "must be an integer");
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))
      error(key, str_cat("must be <= ", hi));
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) error(key, str_cat("must be in [", lo, ", ", hi, "]"));
    *out = x;
  }
  void number(const char* key, float* out, double lo, double hi) const {
    if (!has(key)) return;
    const Json& v = obj_.at(key);
    if (!v.is_number()) error(key, "must be a number");
    const double x = v.get<double>();
    if (!std::isfinite(x) || x < lo || x > hi) error(key, str_cat("must be in [", lo, ", ", hi, "]"));
    *out = static_cast<float>(x);
  }
  void boolean(const char* key, bool* out) const {
    if (!has(key)) return;
    if (!obj_.at(key).is_boolean()) error(key, "must be true or false");
    *out = obj_.at(key).get<bool>();
  }
  void string(const char* key, std::string* out) const {
    if (!has(key)) return;
    if (!obj_.at(key).is_string()) error(key, "must be a string");
    *out = obj_.at(key).get<std::string>();
  }
  void path(const char* key, std::string* out, const std::string& base) const {
    std::string s;
    string(key, &s);
    if (s.empty()) return;
    *out = fs::path(s).is_absolute() || base.empty() ? s : (fs::path(base) / s).lexically_normal().string();
  }
  const std::string& origin() const { return origin_; }

 private:
  const Json& obj_;
  std::string origin_, path_;
};

constexpr int64_t kBig = int64_t{1} << 40;

ModelConfig parse_model(const Json& j, const std::string& origin) {
  const Reader r(j, origin, "model");
  r.allow({"preset",
           "reduced",
           "arch",
           "n_vocab",
           "n_embd",
           "n_layer",
           "n_head",
           "n_head_kv",
           "head_dim",
           "n_ff",
           "rms_eps",
           "rope_theta",
           "rope_dim",
           "context_length",
           "n_expert",
           "n_expert_used",
           "n_expert_shared",
           "n_ff_exp",
           "n_layer_dense_lead",
           "gating",
           "expert_weights_norm",
           "expert_weights_scale",
           "n_expert_groups",
           "n_group_used",
           "q_lora_rank",
           "kv_lora_rank",
           "qk_nope_dim",
           "head_dim_v",
           "name"});
  ModelConfig c;
  if (r.has("preset")) {
    std::string name;
    r.string("preset", &name);
    bool red = false;
    r.boolean("reduced", &red);
    c = red ? reduced(find_preset(name).config) : find_preset(name).config;
    // Training runs at the base context: drop long-context RoPE scaling from preset shapes.
    c.rope.freq_scale = 1.0f;
    c.rope.ext_factor = 0.0f;
    c.rope.freq_factors.clear();
    c.kq_scale = 0.0f;
  } else {
    c.arch = "llama";
    c.rms_eps = 1e-5f;
    c.rope.freq_base = 10000.0f;
  }
  r.string("arch", &c.arch);
  r.string("name", &c.name);
  r.integer("n_vocab", &c.n_vocab, 0, int64_t{1} << 24);
  r.integer("n_embd", &c.n_embd, 1, 1 << 16);
  r.integer("n_layer", &c.n_layer, 1, 1024);
  r.integer("n_head", &c.n_head, 1, 1024);
  if (!r.has("n_head_kv") && !r.has("preset")) c.n_head_kv = c.n_head;
  r.integer("n_head_kv", &c.n_head_kv, 1, 1024);
  if (!r.has("preset") && c.n_head > 0 && c.n_embd > 0) c.head_dim_k = c.head_dim_v = c.n_embd / c.n_head;
  int64_t hd = 0;
  r.integer("head_dim", &hd, 1, 4096);
  if (hd > 0) c.head_dim_k = c.head_dim_v = hd;
  r.integer("n_ff", &c.n_ff, 1, 1 << 20);
  r.number("rms_eps", &c.rms_eps, 1e-12, 1.0);
  r.number("rope_theta", &c.rope.freq_base, 1.0, 1e9);
  r.integer("rope_dim", &c.rope.n_rot, 2, 4096);
  r.integer("context_length", &c.n_ctx_train, 1, int64_t{1} << 24);
  r.integer("n_expert", &c.n_expert, 0, 4096);
  r.integer("n_expert_used", &c.n_expert_used, 0, 4096);
  r.integer("n_expert_shared", &c.n_expert_shared, 0, 64);
  if (!r.has("preset")) c.n_ff_exp = c.n_ff;
  r.integer("n_ff_exp", &c.n_ff_exp, 0, 1 << 20);
  r.integer("n_layer_dense_lead", &c.n_layer_dense_lead, 0, 1024);
  std::string gating;
  r.string("gating", &gating);
  if (!gating.empty()) {
    if (gating != "softmax" && gating != "sigmoid") r.error("gating", "must be softmax or sigmoid");
    c.gating_sigmoid = gating == "sigmoid";
  }
  // A llama MoE renormalises its top-k weights unless told otherwise (Mixtral; llama.cpp always does).
  if (!r.has("preset") && c.arch == "llama") c.expert_weights_norm = true;
  r.boolean("expert_weights_norm", &c.expert_weights_norm);
  r.number("expert_weights_scale", &c.expert_weights_scale, 1e-6, 1e6);
  r.integer("n_expert_groups", &c.n_expert_groups, 0, 4096);
  r.integer("n_group_used", &c.n_group_used, 0, 4096);
  r.integer("q_lora_rank", &c.q_lora_rank, 0, 1 << 16);
  r.integer("kv_lora_rank", &c.kv_lora_rank, 0, 1 << 16);
  r.integer("qk_nope_dim", &c.qk_nope_dim, 0, 4096);
  r.integer("head_dim_v", &c.head_dim_v, 1, 4096);
  if (!r.has("preset")) {
    if (c.is_mla()) {
      if (!r.has("rope_dim") || !r.has("qk_nope_dim") || !r.has("head_dim_v"))
        r.error("kv_lora_rank", "MLA needs rope_dim, qk_nope_dim and head_dim_v");
      c.arch = "deepseek2";
      c.n_head_kv = c.n_head;
      c.head_dim_k = c.qk_nope_dim + c.rope.n_rot;
    } else if (!r.has("rope_dim")) {
      c.rope.n_rot = c.head_dim_k;
    }
  }
  if (c.n_ctx_train == 0) c.n_ctx_train = 4096;
  return c;
}

}  // namespace

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::kF32:
      return "f32";
    case Precision::kBf16:
      return "bf16";
    case Precision::kF16:
      return "fp16";
  }
  return "?";
}

TrainConfig parse_train_config(std::string_view json_text, const std::string& origin,
                               const std::string& base_dir) {
  Json j;
  try {
    j = Json::parse(json_text);
  } catch (const Json::parse_error& e) {
    fail(origin, ": not valid JSON: ", e.what());
  }
  const Reader r(j, origin, "");
  r.allow({"model",
           "data",
           "tokenizer",
           "out_dir",
           "seq_len",
           "micro_batch",
           "batch",
           "steps",
           "lr",
           "lr_min",
           "warmup",
           "beta1",
           "beta2",
           "eps",
           "weight_decay",
           "grad_clip",
           "balance",
           "aux_alpha",
           "bias_gamma",
           "precision",
           "loss_scale",
           "loss_scale_interval",
           "activation_checkpointing",
           "seed",
           "init_std",
           "init_from",
           "checkpoint_every",
           "keep_checkpoints",
           "eval_every",
           "eval_batches",
           "log_every",
           "comment"});
  TrainConfig t;
  t.source_json = std::string(json_text);
  t.model = parse_model(r.at("model"), origin);
  r.path("data", &t.data, base_dir);
  if (t.data.empty()) r.error("data", "missing (a directory written by moe data prepare)");
  r.path("tokenizer", &t.tokenizer, base_dir);
  r.path("out_dir", &t.out_dir, base_dir);
  r.path("init_from", &t.init_from, base_dir);
  r.integer("seq_len", &t.seq_len, 2, 1 << 20);
  r.integer("micro_batch", &t.micro_batch, 1, 1 << 20);
  t.batch = t.micro_batch;
  r.integer("batch", &t.batch, 1, 1 << 24);
  if (t.batch % t.micro_batch != 0)
    r.error("batch", str_cat(t.batch, " is not a multiple of micro_batch ", t.micro_batch));
  r.integer("steps", &t.steps, 1, kBig);
  r.number("lr", &t.lr, 0.0, 10.0);
  t.lr_min = t.lr * 0.1f;
  r.number("lr_min", &t.lr_min, 0.0, 10.0);
  t.warmup = std::min<int64_t>(t.warmup, t.steps / 10);
  r.integer("warmup", &t.warmup, 0, kBig);
  r.number("beta1", &t.adamw.beta1, 0.0, 0.999999);
  r.number("beta2", &t.adamw.beta2, 0.0, 0.999999);
  r.number("eps", &t.adamw.eps, 0.0, 1.0);
  r.number("weight_decay", &t.adamw.weight_decay, 0.0, 10.0);
  r.number("grad_clip", &t.grad_clip, 0.0, 1e9);
  std::string balance = "aux";
  r.string("balance", &balance);
  if (balance == "aux")
    t.balance = Balance::kAux;
  else if (balance == "loss-free")
    t.balance = Balance::kLossFree;
  else if (balance == "none")
    t.balance = Balance::kNone;
  else
    r.error("balance", "must be aux, loss-free or none");
  r.number("aux_alpha", &t.aux_alpha, 0.0, 100.0);
  r.number("bias_gamma", &t.bias_gamma, 0.0, 1.0);
  std::string prec = "f32";
  r.string("precision", &prec);
  if (prec == "f32")
    t.precision = Precision::kF32;
  else if (prec == "bf16")
    t.precision = Precision::kBf16;
  else if (prec == "fp16")
    t.precision = Precision::kF16;
  else
    r.error("precision", "must be f32, bf16 or fp16");
  r.number("loss_scale", &t.loss_scale_init, 1.0, 1e30);
  r.integer("loss_scale_interval", &t.loss_scale_interval, 1, kBig);
  r.boolean("activation_checkpointing", &t.activation_checkpointing);
  int64_t seed = 1;
  r.integer("seed", &seed, 0, INT64_MAX);
  t.seed = static_cast<uint64_t>(seed);
  r.number("init_std", &t.init_std, 0.0, 10.0);
  r.integer("checkpoint_every", &t.checkpoint_every, 0, kBig);
  int64_t keep = t.keep_checkpoints;
  r.integer("keep_checkpoints", &keep, 0, 1 << 20);
  t.keep_checkpoints = static_cast<int>(keep);
  r.integer("eval_every", &t.eval_every, 0, kBig);
  r.integer("eval_batches", &t.eval_batches, 1, 1 << 20);
  r.integer("log_every", &t.log_every, 1, kBig);
  if (t.balance == Balance::kLossFree && !t.model.gating_sigmoid)
    r.error("balance", "loss-free balancing needs a sigmoid router (its selection bias); set model.gating");
  if (t.balance != Balance::kAux) t.aux_alpha = 0.0f;
  return t;
}

TrainConfig load_train_config(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MOE_CHECK(f.good(), "cannot read ", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_train_config(ss.str(), path, fs::path(path).parent_path().string());
}

}  // namespace moe::train

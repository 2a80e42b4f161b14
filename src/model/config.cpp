#include "model/config.h"

#include "core/error.h"
#include "model/weights.h"

namespace moe {

ModelConfig read_transformer_config(const GgufFile& file, const std::string& arch, bool neox) {
  WeightLoader w(file);
  ModelConfig c;
  c.arch = arch;
  c.name = file.get_string("general.name", "");
  const std::string p = arch + ".";
  c.n_embd = w.required_int(p + "embedding_length");
  c.n_layer = w.required_int(p + "block_count");
  c.n_ff = w.int_or(p + "feed_forward_length", 0);
  c.n_head = w.required_int(p + "attention.head_count");
  c.n_head_kv = w.int_or(p + "attention.head_count_kv", c.n_head);
  c.n_ctx_train = w.int_or(p + "context_length", 2048);
  c.rms_eps = w.float_or(p + "attention.layer_norm_rms_epsilon", 1e-5f);
  MOE_CHECK(c.n_embd > 0 && c.n_embd <= (1 << 20), file.name(), ": ", p, "embedding_length = ", c.n_embd, " is out of range");
  MOE_CHECK(c.n_layer > 0 && c.n_layer <= 4096, file.name(), ": ", p, "block_count = ", c.n_layer, " is out of range");
  MOE_CHECK(c.n_head > 0 && c.n_head <= 4096, file.name(), ": ", p, "attention.head_count = ", c.n_head, " is out of range");
  MOE_CHECK(c.n_head_kv > 0 && c.n_head % c.n_head_kv == 0, file.name(), ": ", p,
            "attention.head_count_kv = ", c.n_head_kv, " does not divide head_count = ", c.n_head);
  MOE_CHECK(c.n_ctx_train > 0, file.name(), ": ", p, "context_length must be positive");
  c.head_dim_k = w.int_or(p + "attention.key_length", c.n_embd / c.n_head);
  c.head_dim_v = w.int_or(p + "attention.value_length", c.n_embd / c.n_head);
  MOE_CHECK(c.head_dim_k > 0 && c.head_dim_v > 0, file.name(), ": head dimensions must be positive");

  c.rope.n_rot = w.int_or(p + "rope.dimension_count", c.head_dim_k);
  MOE_CHECK(c.rope.n_rot > 0 && c.rope.n_rot <= c.head_dim_k && c.rope.n_rot % 2 == 0, file.name(), ": ", p,
            "rope.dimension_count = ", c.rope.n_rot, " must be even and at most the head size ", c.head_dim_k);
  c.rope.freq_base = w.float_or(p + "rope.freq_base", 10000.0f);
  c.rope.neox = neox;
  const std::string scaling = file.get_string(p + "rope.scaling.type", "none");
  float factor = w.float_or(p + "rope.scaling.factor", 0.0f);
  if (factor == 0.0f) {  // older files store the linear scale instead
    const float linear = w.float_or(p + "rope.scale_linear", 0.0f);
    if (linear != 0.0f) factor = linear;
  }
  if (scaling == "linear" || scaling == "yarn") {
    MOE_CHECK(factor >= 1.0f, file.name(), ": ", p, "rope.scaling.factor = ", factor, " must be >= 1");
    c.rope.freq_scale = 1.0f / factor;
  } else if (scaling != "none") {
    fail(file.name(), ": ", p, "rope.scaling.type '", scaling, "' is not supported");
  }
  if (scaling == "yarn") {
    c.rope.ext_factor = 1.0f;
    c.rope.n_ctx_orig = w.int_or(p + "rope.scaling.original_context_length", c.n_ctx_train);
    c.rope.beta_fast = w.float_or(p + "rope.scaling.yarn_beta_fast", 32.0f);
    c.rope.beta_slow = w.float_or(p + "rope.scaling.yarn_beta_slow", 1.0f);
  }
  return c;
}

}  // namespace moe

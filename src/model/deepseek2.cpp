// DeepSeek-V2/V3/R1 (llama.cpp's `deepseek2`): multi-head latent attention with decoupled RoPE
// on adjacent pairs and YaRN, the first leading_dense_block_count layers dense, the rest MoE
// with shared experts, softmax (V2) or sigmoid + selection bias + group-limited (V3/R1) routing.
//
// Two tensor layouts exist in published files. Older: attn_kv_b (W_k and W_v stacked per head),
// head_count_kv = n_head, key_length = nope + rope. Newer (llama.cpp since 2025): attn_k_b and
// attn_v_b split from it, head_count_kv = 1, key_length = kv_lora_rank + rope and
// key_length_mla / value_length_mla giving the per-head sizes. Both load into the same weights.
//
// YaRN: rope.scaling.yarn_log_multiplier holds 0.1 * mscale_all_dim as every converter writes
// it (newer llama.cpp divides it by 0.1 on load and multiplies by 0.1 again in the graph), so
// mscale = 1 + yarn_log_multiplier * ln(factor) in both. RoPE magnitudes are left unscaled
// (attn_factor cancels YaRN's built-in 1 + 0.1 ln(factor)); the softmax scale takes mscale².
#include "model/deepseek2.h"

#include <cmath>

#include "core/error.h"
#include "model/config.h"
#include "model/decoder.h"

namespace moe {

ModelConfig read_deepseek2_config(const GgufFile& file) {
  ModelConfig c = read_transformer_config(file, "deepseek2", /*neox=*/false);
  const std::string p = "deepseek2.";
  const std::string& src = file.name();
  const GgufTensorInfo* embd = file.find_tensor("token_embd.weight");
  MOE_CHECK(embd != nullptr, src, ": tensor 'token_embd.weight' is missing");
  c.n_vocab = embd->ne[1];

  c.q_lora_rank = file.get_int(p + "attention.q_lora_rank", 0);
  c.kv_lora_rank = file.get_int(p + "attention.kv_lora_rank", 0);
  MOE_CHECK(c.kv_lora_rank > 0, src, ": ", p, "attention.kv_lora_rank is missing or zero");
  if (file.find(p + "attention.key_length_mla") != nullptr) {
    c.head_dim_k = file.get_int(p + "attention.key_length_mla", 0);
    c.head_dim_v = file.get_int(p + "attention.value_length_mla", 0);
  }
  c.n_head_kv = c.n_head;  // MLA: every head has its own (absorbed) keys and values
  MOE_CHECK(c.head_dim_k > c.rope.n_rot && c.head_dim_v > 0, src, ": ", p,
            "key/value lengths are inconsistent with rope.dimension_count");
  c.qk_nope_dim = c.head_dim_k - c.rope.n_rot;

  c.n_layer_dense_lead = file.get_int(p + "leading_dense_block_count", 0);
  c.n_expert = file.get_int(p + "expert_count", 0);
  c.n_expert_used = file.get_int(p + "expert_used_count", 0);
  c.n_ff_exp = file.get_int(p + "expert_feed_forward_length", 0);
  c.n_expert_shared = file.get_int(p + "expert_shared_count", 0);
  c.expert_weights_scale = static_cast<float>(file.get_float(p + "expert_weights_scale", 1.0));
  c.expert_weights_norm = file.get_bool(p + "expert_weights_norm", false);
  const int64_t gating = file.get_int(p + "expert_gating_func", 1);  // files before V3 have none: softmax
  MOE_CHECK(gating == 1 || gating == 2, src, ": ", p, "expert_gating_func = ", gating,
            " is not supported (1 softmax, 2 sigmoid)");
  c.gating_sigmoid = gating == 2;
  c.n_expert_groups = file.get_int(p + "expert_group_count", 0);
  c.n_group_used = file.get_int(p + "expert_group_used_count", 0);

  float mscale = 1.0f;
  if (c.rope.ext_factor != 0.0f) {  // YaRN
    const float log_factor = std::log(1.0f / c.rope.freq_scale);
    c.rope.attn_factor = 1.0f / (1.0f + 0.1f * log_factor);
    mscale = 1.0f + static_cast<float>(file.get_float(p + "rope.scaling.yarn_log_multiplier", 0.0)) * log_factor;
  }
  c.kq_scale = mscale * mscale / std::sqrt(static_cast<float>(c.head_dim_k));
  return c;
}

std::unique_ptr<Model> make_deepseek2(const GgufFile& file) {
  ModelConfig c = read_deepseek2_config(file);
  DecoderWeights w = load_decoder(file, c, DecoderOptions{});
  return std::make_unique<DecoderModel>(std::move(c), std::move(w));
}

}  // namespace moe

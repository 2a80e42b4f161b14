// Llama architecture (llama.cpp's `llama`): pre-norm decoder blocks with RMSNorm, grouped-query
// attention with RoPE on adjacent pairs (the GGUF converter permutes Q/K for it), SwiGLU FFN or
// Mixtral-style MoE (softmax router, top-k renormalised), tied or separate output projection.
// The seed-moe preset is this architecture with llama.expert_weights_norm = false (top-2
// softmax probabilities used as they are); llama.cpp ignores that key and renormalises.
#include "model/llama.h"

#include "core/error.h"
#include "model/config.h"
#include "model/decoder.h"
#include "model/weights.h"

namespace moe {

namespace {

int64_t vocab_from_embedding(const GgufFile& file) {
  const GgufTensorInfo* embd = file.find_tensor("token_embd.weight");
  MOE_CHECK(embd != nullptr, file.name(), ": tensor 'token_embd.weight' is missing");
  return embd->ne[1];
}

}  // namespace

ModelConfig read_llama_family_config(const GgufFile& file, const std::string& arch, bool neox) {
  ModelConfig c = read_transformer_config(file, arch, neox);
  c.n_vocab = vocab_from_embedding(file);
  const std::string p = arch + ".";
  c.n_expert = file.get_int(p + "expert_count", 0);
  c.n_expert_used = file.get_int(p + "expert_used_count", 0);
  if (c.n_expert > 0) {
    c.n_ff_exp = file.get_int(p + "expert_feed_forward_length", c.n_ff);
    c.expert_weights_norm = file.get_bool(p + "expert_weights_norm", true);
    c.expert_weights_scale = static_cast<float>(file.get_float(p + "expert_weights_scale", 1.0));
  }
  return c;
}

std::unique_ptr<Model> make_llama(const GgufFile& file) {
  ModelConfig c = read_llama_family_config(file, "llama", /*neox=*/false);
  // Llama 3.1+ rope scaling: per-pair angle divisors stored as a tensor.
  if (auto f = WeightLoader(file).optional_vector("rope_freqs.weight", c.rope.n_rot / 2)) c.rope.freq_factors = *f;
  DecoderWeights w = load_decoder(file, c, DecoderOptions{});
  return std::make_unique<DecoderModel>(std::move(c), std::move(w));
}

}  // namespace moe

// Llama architecture (llama.cpp's `llama`): pre-norm decoder blocks with RMSNorm, grouped-query
// attention with RoPE on adjacent pairs (the GGUF converter permutes Q/K for it), SwiGLU FFN,
// tied or separate output projection.
#include "model/llama.h"

#include <string>
#include <vector>

#include "model/blocks.h"
#include "model/config.h"
#include "model/weights.h"

namespace moe {

namespace {

class LlamaModel : public Model {
 public:
  explicit LlamaModel(const GgufFile& file) {
    config_ = read_transformer_config(file, "llama", /*neox=*/false);
    ModelConfig& c = config_;
    WeightLoader w(file);
    const GgufTensorInfo* embd = file.find_tensor("token_embd.weight");
    MOE_CHECK(embd != nullptr, file.name(), ": tensor 'token_embd.weight' is missing");
    c.n_vocab = embd->ne[1];
    MOE_CHECK(c.n_ff > 0, file.name(), ": llama.feed_forward_length is missing");
    tok_embd_ = w.matrix("token_embd.weight", {c.n_embd, c.n_vocab});
    output_norm_ = w.vector("output_norm.weight", c.n_embd);
    // Tied embeddings: without output.weight the embedding matrix doubles as the output head.
    output_ = w.optional_matrix("output.weight", {c.n_embd, c.n_vocab}).value_or(tok_embd_);
    layers_.resize(static_cast<size_t>(c.n_layer));
    for (int64_t il = 0; il < c.n_layer; ++il) {
      const std::string b = "blk." + std::to_string(il) + ".";
      Layer& l = layers_[il];
      l.attn_norm = w.vector(b + "attn_norm.weight", c.n_embd);
      l.attn.wq = w.matrix(b + "attn_q.weight", {c.n_embd, c.n_head * c.head_dim_k});
      l.attn.wk = w.matrix(b + "attn_k.weight", {c.n_embd, c.n_head_kv * c.head_dim_k});
      l.attn.wv = w.matrix(b + "attn_v.weight", {c.n_embd, c.n_head_kv * c.head_dim_v});
      l.attn.wo = w.matrix(b + "attn_output.weight", {c.n_head * c.head_dim_v, c.n_embd});
      l.ffn_norm = w.vector(b + "ffn_norm.weight", c.n_embd);
      l.ffn.gate = w.matrix(b + "ffn_gate.weight", {c.n_embd, c.n_ff});
      l.ffn.up = w.matrix(b + "ffn_up.weight", {c.n_embd, c.n_ff});
      l.ffn.down = w.matrix(b + "ffn_down.weight", {c.n_ff, c.n_embd});
    }
  }

  KvCache new_cache(int64_t n_ctx) const override {
    const ModelConfig& c = config_;
    return KvCache(c.n_layer, n_ctx, c.n_head_kv * c.head_dim_k, c.n_head_kv * c.head_dim_v);
  }

  void forward(std::span<const int32_t> tokens, int64_t pos0, KvCache& cache, bool all_logits,
               float* logits, ThreadPool& pool) const override {
    const ModelConfig& c = config_;
    const int64_t n = static_cast<int64_t>(tokens.size());
    if (n == 0) return;
    std::vector<float> x(static_cast<size_t>(n * c.n_embd));    // [n, n_embd] residual stream
    std::vector<float> h(x.size());                             // [n, n_embd] normed input
    std::vector<float> y(x.size());                             // [n, n_embd] block output
    embed_tokens(tok_embd_, tokens, x.data());
    for (int64_t il = 0; il < c.n_layer; ++il) {
      const Layer& l = layers_[il];
      rms_norm_rows(x.data(), l.attn_norm.data(), n, c.n_embd, c.rms_eps, h.data());
      attention_gqa(c, l.attn, il, h.data(), n, pos0, cache, y.data(), pool);
      for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
      rms_norm_rows(x.data(), l.ffn_norm.data(), n, c.n_embd, c.rms_eps, h.data());
      ffn_swiglu(l.ffn, h.data(), n, y.data(), pool);
      for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
    }
    output_logits(c, output_norm_, output_, x.data(), n, all_logits, logits, pool);
  }

 private:
  struct Layer {
    std::vector<float> attn_norm, ffn_norm;
    GqaWeights attn;
    FfnWeights ffn;
  };
  Tensor tok_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<Layer> layers_;
};

}  // namespace

std::unique_ptr<Model> make_llama(const GgufFile& file) { return std::make_unique<LlamaModel>(file); }

}  // namespace moe

// The model interface every architecture implements, and loading a model file.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "model/kv_cache.h"
#include "tokenizer/tokenizer.h"

namespace moe {

// Hyperparameters shared by the transformer family; each architecture fills what it uses.
struct ModelConfig {
  std::string arch;  // general.architecture
  std::string name;  // general.name, if any
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim_k = 0;  // per-head key/query width
  int64_t head_dim_v = 0;  // per-head value width
  int64_t n_ff = 0;
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  kernels::RopeParams rope;
  float kq_scale = 0.0f;  // attention logit scale; 0 means 1/sqrt(head_dim_k)

  // Mixture of experts (n_expert == 0: every layer is dense).
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_expert_shared = 0;        // always-on experts beside the routed ones
  int64_t n_ff_exp = 0;               // hidden width of one expert (routed and shared)
  int64_t n_layer_dense_lead = 0;     // the first layers keep a dense FFN of width n_ff
  bool gating_sigmoid = false;        // router scores: softmax (false) or sigmoid (true)
  bool expert_weights_norm = false;   // renormalise the top-k weights to sum to 1
  float expert_weights_scale = 1.0f;  // then multiply them (DeepSeek's routed_scaling_factor)
  int64_t n_expert_groups = 0;        // group-limited routing: experts in groups, keep the best
  int64_t n_group_used = 0;           //   n_group_used groups (scored by their top-2 sum)

  // Multi-head latent attention (kv_lora_rank == 0: grouped-query attention).
  int64_t q_lora_rank = 0;   // 0: queries straight from the input (DeepSeek-V2-Lite)
  int64_t kv_lora_rank = 0;  // latent width; the cache stores it plus the rope dims
  int64_t qk_nope_dim = 0;   // per-head key/query dims without rope; head_dim_k = nope + rope
  bool is_moe_layer(int64_t il) const { return n_expert > 0 && il >= n_layer_dense_lead; }
  bool is_mla() const { return kv_lora_rank > 0; }
};

// One sequence's share of a batched forward: its new tokens, the position of the first, and its
// cache (which must already hold positions [0, pos0)). *cache must stay live during the call.
struct SeqBatch {
  std::span<const int32_t> tokens;
  int64_t pos0 = 0;
  KvCache* cache = nullptr;
  bool all_logits = false;  // logits for every row of this sequence, else for its last row only
};

// Optional counters a forward pass adds to: routed slots per expert, per layer ([n_layer][n_expert]).
struct ForwardStats {
  std::vector<std::vector<int64_t>> expert_counts;
};

class Model {
 public:
  virtual ~Model() = default;
  const ModelConfig& config() const { return config_; }

  // A cache for one sequence of up to n_ctx tokens.
  virtual KvCache new_cache(int64_t n_ctx) const = 0;

  // Runs tokens[i] at position pos0 + i of the sequence whose cache is `cache` (which must
  // already hold positions [0, pos0)). Writes logits for every input row ([n_tokens, n_vocab])
  // when all_logits, else for the last row only ([n_vocab]).
  virtual void forward(std::span<const int32_t> tokens, int64_t pos0, KvCache& cache, bool all_logits,
                       float* logits, ThreadPool& pool) const = 0;

  // Several sequences in one pass (continuous batching): the rows of all sequences share every
  // weight read; attention stays within each sequence. logits receives, sequence after sequence,
  // the rows each asked for ([n_tokens_s or 1, n_vocab] each). A row's logits are bit-identical
  // to those of a forward() over that sequence alone. The default runs the sequences one by one.
  virtual void forward_batch(std::span<const SeqBatch> seqs, float* logits, ThreadPool& pool,
                             ForwardStats* stats = nullptr) const;

 protected:
  ModelConfig config_;
};

// A loaded model file: the parsed file (owns the mapping the weights point into), the tokenizer
// and the network. Members are destroyed in reverse order, so the mapping outlives the model.
struct LoadedModel {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Model> model;
};

// Loads a GGUF model file or a Hugging Face model directory (config.json + safetensors +
// tokenizer.json). Throws moe::Error naming the file and the key or tensor at fault.
LoadedModel load_model(const std::string& path);

// The architectures this build knows, and building one from a parsed GGUF file.
using ArchFactory = std::unique_ptr<Model> (*)(const GgufFile& file);
struct ArchEntry {
  const char* name;
  ArchFactory factory;
};
std::span<const ArchEntry> known_archs();

}  // namespace moe

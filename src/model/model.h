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
  std::string arch;         // general.architecture
  std::string name;         // general.name, if any
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim_k = 0;   // per-head key/query width
  int64_t head_dim_v = 0;   // per-head value width
  int64_t n_ff = 0;
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  kernels::RopeParams rope;
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
  virtual void forward(std::span<const int32_t> tokens, int64_t pos0, KvCache& cache,
                       bool all_logits, float* logits, ThreadPool& pool) const = 0;

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

// Loads a GGUF model. Throws moe::Error naming the file and the key or tensor at fault.
LoadedModel load_model(const std::string& path);

// The architectures this build knows, and building one from a parsed GGUF file.
using ArchFactory = std::unique_ptr<Model> (*)(const GgufFile& file);
struct ArchEntry {
  const char* name;
  ArchFactory factory;
};
std::span<const ArchEntry> known_archs();

}  // namespace moe

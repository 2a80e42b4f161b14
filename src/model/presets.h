// Named model shapes (`moe info --preset NAME`) and random-weight GGUF models of any shape, in
// llama.cpp's layout, for tests and benchmarks (nothing can be downloaded here).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "formats/gguf.h"
#include "model/model.h"

namespace moe {

struct Preset {
  std::string name;
  std::string description;
  ModelConfig config;
  float yarn_log_multiplier = 0.0f;  // 0.1 * mscale_all_dim, as converters write it
};

std::span<const Preset> presets();
// Throws moe::Error listing the known names when name is unknown.
const Preset& find_preset(const std::string& name);

// The same architecture at a size that runs in a test: every feature kept (MLA ranks, groups,
// shared experts, dense lead layers), widths cut down.
ModelConfig reduced(const ModelConfig& c);

// Total parameters and those active per token (routed experts counted n_expert_used times).
struct ParamCount {
  int64_t total = 0;
  int64_t active = 0;
};
ParamCount count_params(const ModelConfig& c);

// Human-readable lines describing a config (for `moe info`).
std::string describe_config(const ModelConfig& c);

struct RandomModelOptions {
  uint64_t seed = 1;
  DType type = DType::F32;  // matrices; norms and biases stay f32
  bool mla_split = true;    // deepseek2: attn_k_b + attn_v_b (newer) or attn_kv_b (older)
  bool tied_output = false;
  float yarn_log_multiplier = 0.1f;
  // Copies every tokenizer.* key from this file (its vocabulary size must equal c.n_vocab).
  const GgufFile* tokenizer_source = nullptr;
  std::string chat_template;  // stored as tokenizer.chat_template when not empty
  // Without a tokenizer_source: write a synthetic SentencePiece vocabulary of n_vocab pieces
  // (<unk>, <s>, </s>, the 256 byte tokens, then made-up pieces) so that tools which require a
  // tokenizer, llama.cpp among them, load the file. Needs n_vocab >= 260.
  bool synthetic_vocab = false;
};

// Writes a GGUF of architecture c.arch with random weights, loadable by this engine and by
// llama.cpp. The same seed gives the same weights for either MLA layout.
void write_random_model(const ModelConfig& c, const RandomModelOptions& opt, const std::string& path);

}  // namespace moe

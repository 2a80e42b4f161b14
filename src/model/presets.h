// Named model shapes (`moe info --preset NAME`) and random-weight GGUF models of any shape, in
// llama.cpp's layout, for tests and benchmarks (nothing can be downloaded here).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

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
  // Written after the tokenizer keys (and the chat template), in this order; a key already set is
  // replaced in place. For exporters: e.g. the tokenizer.* keys of add_hf_bpe_vocab (model/hf_vocab.h).
  std::vector<std::pair<std::string, GgufValue>> extra_kv;
};

// Supplies the f32 values of one tensor by its GGUF name and shape (ne innermost first), row-major in
// that shape: exactly ne[0] * ne[1] * ... values, or write_model throws naming the tensor. Called once per
// tensor, in file order.
using TensorValues =
    std::function<std::vector<float>(const std::string& name, const std::vector<int64_t>& ne)>;

// Writes a GGUF of architecture c.arch, loadable by this engine and by llama.cpp: the metadata and
// tensor layout of c and opt, the tensor values from `values`. Matrices are stored as opt.type, norms and
// biases as f32. rope_freqs.weight (Llama 3) comes from c.rope.freq_factors, not from values. For MLA,
// values is asked for "blk.N.attn_kv_b.weight" in the combined layout ne {kv_lora_rank, n_head *
// (qk_nope + head_dim_v)} (per head: nope rows of W_k, then head_dim_v rows of W_v), and with
// opt.mla_split that tensor is written as attn_k_b {nope, rank, H} + attn_v_b {rank, dv, H}.
void write_model(const ModelConfig& c, const RandomModelOptions& opt, const TensorValues& values,
                 const std::string& path);

// write_model with random weights: the same seed gives the same weights for either MLA layout, and the
// same file bytes as before write_model existed (presets_test pins their hashes).
void write_random_model(const ModelConfig& c, const RandomModelOptions& opt, const std::string& path);

}  // namespace moe

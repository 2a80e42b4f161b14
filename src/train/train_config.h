// The one file that describes a training run (`moe train CONFIG.json`): model shape, data, schedule,
// optimizer, balance, precision, checkpoints and logging. configs/train/ holds the presets.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "model/model.h"
#include "train/optim.h"
#include "train/train_model.h"

namespace moe::train {

enum class Balance { kAux, kLossFree, kNone };

struct TrainConfig {
  ModelConfig model;      // n_vocab 0: taken from the data's vocabulary
  std::string data;       // directory written by `moe data prepare`
  std::string tokenizer;  // tokenizer.json stored into exported GGUF files ("" = none)
  std::string out_dir;    // checkpoints, event files, log and the exported model

  int64_t seq_len = 256;
  int64_t micro_batch = 8;  // sequences per forward/backward
  int64_t batch = 8;        // sequences per optimizer step (a multiple of micro_batch)
  int64_t steps = 1000;
  float lr = 1e-4f, lr_min = 1e-5f;
  int64_t warmup = 1000;
  AdamWConfig adamw;
  float grad_clip = 1.0f;  // max global norm; 0: off
  Balance balance = Balance::kAux;
  float aux_alpha = 0.01f;
  float bias_gamma = 0.001f;  // loss-free balancing step
  Precision precision = Precision::kF32;
  float loss_scale_init = 65536.0f;  // fp16
  int64_t loss_scale_interval = 2000;
  bool activation_checkpointing = false;
  uint64_t seed = 1;
  float init_std = 0.02f;
  std::string init_from;  // a GGUF to start from instead of random weights

  int64_t checkpoint_every = 100;
  int keep_checkpoints = 3;
  int64_t eval_every = 100;
  int64_t eval_batches = 4;
  int64_t log_every = 1;

  std::string source_json;  // the config text as given (stored in checkpoints)
};

// Strict: unknown keys, wrong types and out-of-range values throw moe::Error naming origin and the key.
// Relative paths resolve against base_dir. The model is either {"preset": NAME, "reduced": bool,
// "n_vocab": ...overrides} or explicit fields (see configs/train/README.md).
TrainConfig parse_train_config(std::string_view json_text, const std::string& origin,
                               const std::string& base_dir);
TrainConfig load_train_config(const std::string& path);

const char* precision_name(Precision p);

}  // namespace moe::train

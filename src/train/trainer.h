// The training loop of `moe train`: batches from TokenShards, gradient accumulation, AdamW with the
// warmup + cosine schedule and clipping, loss scaling, MoE balance, evaluation, checkpoints (atomic,
// keep K, exact resume), TensorBoard events, a JSON-lines log and a console progress line.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "train/train_config.h"

namespace moe::train {

struct TrainRunOptions {
  int threads = 0;           // <= 0: all hardware threads
  bool resume = false;       // continue from the newest checkpoint in out_dir/checkpoints
  int64_t stop_after = 0;    // > 0: stop (after checkpointing) once this step is done, as if interrupted
  bool progress = true;      // the console progress line on stderr
  bool export_final = true;  // write out_dir/model.gguf at the end
};

struct TrainSummary {
  int64_t first_step = 0;                            // 0, or the step resumed from
  int64_t last_step = 0;                             // steps done in total
  double first_val_loss = 0.0, last_val_loss = 0.0;  // NaN when no evaluation ran
  double tokens_per_s = 0.0;
  int64_t activation_bytes = 0;  // peak per micro-batch
  std::vector<double> losses;    // training loss of each step run in this call
};

// Runs (or resumes) the run cfg describes. Throws moe::Error on bad data, config or I/O.
TrainSummary run_training(const TrainConfig& cfg, const TrainRunOptions& opt);

// Training speed without data or disk: `steps` optimizer steps on random tokens (after one warm-up
// step), timed. Returns tokens/s and the peak activation bytes of a micro-batch.
struct TrainBench {
  double tokens_per_s = 0.0;
  double step_ms = 0.0;
  int64_t activation_bytes = 0;
};
TrainBench bench_training(const TrainConfig& cfg, int64_t steps, int threads);

// Writes the model of a checkpoint as GGUF (type: f32, f16, bf16 or q8_0 matrices) with the run's
// tokenizer; both moe.cpp and llama.cpp load it.
void export_checkpoint(const std::string& ckpt_path, const std::string& out_gguf, const std::string& type);

}  // namespace moe::train

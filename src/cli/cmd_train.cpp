// `moe train`: pretrain a model from prepared token shards; `moe export`: a checkpoint as GGUF.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "train/trainer.h"

namespace moe::cli {

namespace {

struct TrainArgs {
  std::string config;
  std::string out;
  bool resume = false;
  int64_t stop_after = 0;
  int64_t steps = 0;
  int threads = 0;
  bool quiet = false;
  int64_t bench = 0;
};

void run_train(const TrainArgs& a) {
  train::TrainConfig cfg = train::load_train_config(a.config);
  if (a.bench > 0) {
    const train::TrainBench b = train::bench_training(cfg, a.bench, a.threads);
    std::printf("{\"tokens_per_s\": %.1f, \"step_ms\": %.2f, \"activation_mib\": %.2f}\n", b.tokens_per_s,
                b.step_ms, static_cast<double>(b.activation_bytes) / (1 << 20));
    return;
  }
  if (!a.out.empty()) cfg.out_dir = a.out;
  if (a.steps > 0) cfg.steps = a.steps;
  train::TrainRunOptions ro;
  ro.threads = a.threads;
  ro.resume = a.resume;
  ro.stop_after = a.stop_after;
  ro.progress = !a.quiet;
  const train::TrainSummary s = train::run_training(cfg, ro);
  const auto val = [](double v) { return std::isnan(v) ? std::string("-") : std::to_string(v); };
  std::printf("steps %lld..%lld, %.0f tokens/s, val loss %s -> %s, activations %.1f MiB per micro-batch%s\n",
              static_cast<long long>(s.first_step), static_cast<long long>(s.last_step), s.tokens_per_s,
              val(s.first_val_loss).c_str(), val(s.last_val_loss).c_str(),
              static_cast<double>(s.activation_bytes) / (1 << 20), cfg.activation_checkpointing ? " (checkpointed)" : "");
}

struct ExportArgs {
  std::string ckpt;
  std::string out;
  std::string type = "f32";
};

}  // namespace

void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Pretrain a model on token shards from `moe data prepare`");
  auto a = std::make_shared<TrainArgs>();
  cmd->add_option("--config", a->config, "run config (JSON; see configs/train/)")->required();
  cmd->add_option("-o,--out", a->out, "output directory (overrides out_dir of the config)");
  cmd->add_flag("--resume", a->resume, "continue from the newest checkpoint in the output directory");
  cmd->add_option("--stop-after", a->stop_after, "stop after this step (checkpointed), as if interrupted");
  cmd->add_option("--steps", a->steps, "override the number of steps of the config");
  cmd->add_option("-t,--threads", a->threads, "threads (default: all)");
  cmd->add_flag("-q,--quiet", a->quiet, "no progress line");
  cmd->add_option(
      "--bench", a->bench,
      "measure speed instead: this many optimizer steps on random tokens, one JSON line (no data read)");
  cmd->callback([a] { run_train(*a); });

  auto* ex = app.add_subcommand(
      "export", "Write a training checkpoint as a GGUF model (moe.cpp and llama.cpp load it)");
  auto e = std::make_shared<ExportArgs>();
  ex->add_option("checkpoint", e->ckpt, "checkpoint file (OUT/checkpoints/step_*.ckpt)")->required();
  ex->add_option("output", e->out, "GGUF file to write")->required();
  ex->add_option("--type", e->type, "matrix type: f32, f16, bf16 or q8_0");
  ex->callback([e] {
    train::export_checkpoint(e->ckpt, e->out, e->type);
    std::fprintf(stderr, "export: wrote %s\n", e->out.c_str());
  });
}

}  // namespace moe::cli

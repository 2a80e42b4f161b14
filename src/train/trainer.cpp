#include "train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/file_util.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "model/hf_vocab.h"
#include "model/presets.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/ops.h"
#include "train/optim.h"
#include "train/tb_events.h"
#include "train/train_model.h"

namespace moe::train {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

std::string fmt_duration(double s) {
  char buf[32];
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = std::lround(s);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  return buf;
}

// One line on stderr redrawn in place: step, bar, loss, aux, lr, grad norm, speed, ETA.
void draw_progress(int64_t step, int64_t total, double loss, double aux, float lr, double gnorm, double tps,
                   double eta_s) {
  constexpr int kWidth = 24;
  const int fill = static_cast<int>(kWidth * static_cast<double>(step) / static_cast<double>(total));
  std::string bar(static_cast<size_t>(fill), '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "\rstep %lld/%lld [%s] loss %.4f aux %.4f lr %.2e |g| %.3f %.0f tok/s ETA %s   ",
               static_cast<long long>(step), static_cast<long long>(total), bar.c_str(), loss, aux, lr, gnorm,
               tps, fmt_duration(eta_s).c_str());
  std::fflush(stderr);
}

// The run state a checkpoint restores besides the arrays.
struct RunState {
  int64_t step = 0;  // optimizer steps completed
  int64_t adam_t = 0;
  float loss_scale = 0.0f;
  int64_t good_steps = 0;
};

Checkpoint make_checkpoint(const TrainConfig& cfg, const TrainModel& m, AdamW& opt, const RunState& st) {
  Checkpoint ck;
  ck.arrays["params"] = m.values();
  ck.arrays["adam.m"] = opt.m();
  ck.arrays["adam.v"] = opt.v();
  Json s;
  s["step"] = st.step;
  s["adam_t"] = st.adam_t;
  s["loss_scale"] = st.loss_scale;
  s["good_steps"] = st.good_steps;
  s["n_vocab"] = m.config().n_vocab;
  s["tokenizer"] = cfg.tokenizer.empty() ? "" : fs::absolute(cfg.tokenizer).string();
  s["config"] = cfg.source_json;
  s["config_dir"] = cfg.out_dir.empty() ? "" : fs::absolute(cfg.out_dir).string();
  ck.texts["state"] = s.dump();
  return ck;
}

// Mean cross-entropy over a fixed set of validation windows (the same every evaluation).
double validation_loss(TrainModel& m, const TokenShards& val, const TrainConfig& cfg,
                       const TrainOptions& topt, ThreadPool& pool) {
  std::vector<int32_t> tokens;
  double sum = 0.0;
  for (int64_t i = 0; i < cfg.eval_batches; ++i) {
    val.batch(/*seed=*/0, i, cfg.micro_batch, cfg.seq_len, &tokens);
    sum += m.evaluate(tokens.data(), cfg.micro_batch, cfg.seq_len, topt, pool).loss;
  }
  return sum / static_cast<double>(cfg.eval_batches);
}

// Rewrites the log keeping only the records of steps before `step` (a resumed run rewrites the rest).
void truncate_log(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in.good()) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      const Json j = Json::parse(line);
      if (j.value("step", int64_t{-1}) <= step) kept += line + "\n";
    } catch (const Json::exception&) {
      // a torn last line of a killed run
    }
  }
  write_file_atomic(path, kept.data(), kept.size());
}

TrainOptions train_options(const TrainConfig& cfg) {
  TrainOptions t;
  t.aux_alpha = cfg.balance == Balance::kAux ? cfg.aux_alpha : 0.0f;
  t.checkpoint_activations = cfg.activation_checkpointing;
  t.precision = cfg.precision;
  return t;
}

struct Accumulated {
  double loss = 0.0, aux = 0.0;              // means over the micro-batches
  int64_t activation_bytes = 0;              // peak of one micro-batch
  std::vector<std::vector<int64_t>> counts;  // routed slots per layer and expert, summed
};

// The gradients of one optimizer step: zeroes them, then runs forward and backward over the
// batch / micro_batch micro-batches that fill(a, &tokens) provides, each weighted by 1 / their count,
// the loss multiplied by loss_scale.
Accumulated accumulate_gradients(TrainModel& m, const TrainConfig& cfg, const TrainOptions& topt,
                                 float loss_scale, ThreadPool& pool,
                                 const std::function<void(int64_t, std::vector<int32_t>*)>& fill) {
  const int64_t accum = cfg.batch / cfg.micro_batch;
  Accumulated acc;
  acc.counts.resize(static_cast<size_t>(m.config().n_layer));
  std::vector<int32_t> tokens;
  m.zero_grads();
  for (int64_t a = 0; a < accum; ++a) {
    fill(a, &tokens);
    const StepResult r = m.forward_backward(tokens.data(), cfg.micro_batch, cfg.seq_len, topt,
                                            1.0f / static_cast<float>(accum), loss_scale, pool);
    acc.loss += r.loss / static_cast<double>(accum);
    acc.aux += r.aux / static_cast<double>(accum);
    acc.activation_bytes = std::max(acc.activation_bytes, r.activation_bytes);
    for (size_t l = 0; l < r.expert_counts.size(); ++l) {
      if (r.expert_counts[l].empty()) continue;
      acc.counts[l].resize(r.expert_counts[l].size(), 0);
      for (size_t e = 0; e < r.expert_counts[l].size(); ++e) acc.counts[l][e] += r.expert_counts[l][e];
    }
  }
  return acc;
}

}  // namespace

TrainSummary run_training(const TrainConfig& cfg_in, const TrainRunOptions& ro) {
  TrainConfig cfg = cfg_in;
  MOE_CHECK(!cfg.out_dir.empty(), "train: out_dir is not set (in the config or with --out)");
  fs::create_directories(cfg.out_dir);
  const std::string ckpt_dir = (fs::path(cfg.out_dir) / "checkpoints").string();
  const std::string log_path = (fs::path(cfg.out_dir) / "train_log.jsonl").string();
  fs::create_directories(ckpt_dir);

  TokenShards train_data(cfg.data, "train"), val_data(cfg.data, "val");
  if (cfg.model.n_vocab == 0) cfg.model.n_vocab = train_data.vocab_size();
  MOE_CHECK(cfg.model.n_vocab >= static_cast<int64_t>(train_data.vocab_size()),
            "train: the model's vocabulary (", cfg.model.n_vocab, ") is smaller than the data's (",
            train_data.vocab_size(), ")");
  MOE_CHECK(train_data.n_windows(cfg.seq_len) > 0 && val_data.n_windows(cfg.seq_len) > 0,
            "train: the data holds no window of seq_len + 1 = ", cfg.seq_len + 1, " tokens");

  ThreadPool pool(ro.threads);
  set_blas_threads(pool.size());
  TrainModel m(cfg.model);
  if (!cfg.init_from.empty())
    m.load_gguf(cfg.init_from);
  else
    m.init_random(cfg.seed, cfg.init_std);
  const int64_t n_params = static_cast<int64_t>(m.values().size());
  AdamW opt(n_params, cfg.adamw);
  LossScaler scaler(cfg.precision == Precision::kF16 ? cfg.loss_scale_init : 1.0f, cfg.loss_scale_interval);
  const std::vector<uint8_t> decay = m.decay_mask();

  RunState st;
  TrainSummary sum;
  if (ro.resume) {
    const std::vector<int64_t> steps = list_checkpoints(ckpt_dir);
    MOE_CHECK(!steps.empty(), "train: --resume: no checkpoint in ", ckpt_dir);
    const std::string path = checkpoint_path(ckpt_dir, steps.back());
    Checkpoint ck = load_checkpoint(path);
    auto take = [&](const char* name, std::vector<float>& dst) {
      auto it = ck.arrays.find(name);
      MOE_CHECK(it != ck.arrays.end() && it->second.size() == dst.size(), path, ": section '", name,
                "' is missing or does not fit this model (", dst.size(), " values)");
      dst = std::move(it->second);
    };
    take("params", m.values());
    take("adam.m", opt.m());
    take("adam.v", opt.v());
    MOE_CHECK(ck.texts.count("state"), path, ": no state section");
    const Json s = Json::parse(ck.texts["state"]);
    st.step = s.at("step").get<int64_t>();
    st.adam_t = s.at("adam_t").get<int64_t>();
    st.loss_scale = s.at("loss_scale").get<float>();
    st.good_steps = s.at("good_steps").get<int64_t>();
    opt.set_t(st.adam_t);
    scaler.restore(st.loss_scale, st.good_steps);
    if (s.at("config").get<std::string>() != cfg.source_json)
      std::fprintf(stderr, "train: warning: the config differs from the one %s was saved with\n",
                   path.c_str());
    truncate_log(log_path, st.step);
    std::fprintf(stderr, "train: resumed from %s (step %lld)\n", path.c_str(),
                 static_cast<long long>(st.step));
  } else {
    std::ofstream(log_path, std::ios::trunc);
  }
  sum.first_step = st.step;

  const TrainOptions topt = train_options(cfg);
  const int64_t accum = cfg.batch / cfg.micro_batch;
  const int64_t tokens_per_step = cfg.batch * cfg.seq_len;
  EventWriter events((fs::path(cfg.out_dir) / "tb").string());
  std::ofstream log(log_path, std::ios::app);
  std::fprintf(stderr,
               "train: %lld parameters, %lld steps of %lld sequences x %lld tokens (%lld micro-batches), %s, "
               "%d threads\n",
               static_cast<long long>(n_params), static_cast<long long>(cfg.steps),
               static_cast<long long>(cfg.batch), static_cast<long long>(cfg.seq_len),
               static_cast<long long>(accum), precision_name(cfg.precision), pool.size());

  sum.first_val_loss = sum.last_val_loss = std::numeric_limits<double>::quiet_NaN();
  if (st.step == 0 && cfg.eval_every > 0) {
    sum.first_val_loss = validation_loss(m, val_data, cfg, topt, pool);
    events.scalar("val/loss", 0, sum.first_val_loss);
    log << Json{{"step", 0}, {"val_loss", sum.first_val_loss}}.dump() << "\n";
  }
  const auto t_start = Clock::now();
  int64_t tokens_done = 0;
  std::vector<int32_t> tokens;
  const int64_t end_step = ro.stop_after > 0 ? std::min(ro.stop_after, cfg.steps) : cfg.steps;
  while (st.step < end_step) {
    const auto t0 = Clock::now();
    const int64_t s = st.step;
    const Accumulated acc = accumulate_gradients(
        m, cfg, topt, scaler.scale(), pool, [&](int64_t a, std::vector<int32_t>* tokens) {
          train_data.batch(cfg.seed, s * accum + a, cfg.micro_batch, cfg.seq_len, tokens);
        });
    const double loss = acc.loss, aux = acc.aux;
    const std::vector<std::vector<int64_t>>& counts = acc.counts;
    sum.activation_bytes = std::max(sum.activation_bytes, acc.activation_bytes);
    std::vector<float>& g = m.grads();
    if (scaler.scale() != 1.0f) {
      const float inv = 1.0f / scaler.scale();
      for (float& x : g) x *= inv;
    }
    const double gnorm = global_norm(g.data(), n_params, &pool);
    const bool finite = std::isfinite(gnorm);
    const float used_scale = scaler.scale();
    const bool apply = cfg.precision == Precision::kF16 ? scaler.update(finite) : finite;
    const float lr = lr_at(s, cfg.lr, cfg.lr_min, cfg.warmup, cfg.steps);
    if (apply) {
      clip_by_global_norm(g.data(), n_params, gnorm, cfg.grad_clip);
      opt.step(m.values().data(), g.data(), decay.data(), lr, &pool);
      if (cfg.balance == Balance::kLossFree) m.update_balance_bias(counts, cfg.bias_gamma);
    } else if (cfg.precision != Precision::kF16) {
      fail("train: step ", s, ": the gradient is not finite (loss ", loss,
           "); lower lr or use fp16 loss scaling");
    }
    st.step = s + 1;
    st.adam_t = opt.t();
    st.loss_scale = scaler.scale();
    st.good_steps = scaler.good_steps();
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    tokens_done += tokens_per_step;
    const double tps =
        static_cast<double>(tokens_done) / std::chrono::duration<double>(Clock::now() - t_start).count();
    sum.losses.push_back(loss);

    Json rec = {{"step", st.step},   {"loss", loss},       {"aux_loss", aux},
                {"lr", lr},          {"grad_norm", gnorm}, {"loss_scale", used_scale},
                {"skipped", !apply}, {"step_s", dt}};
    if (st.step % cfg.log_every == 0 || st.step == end_step) {
      events.scalar("train/loss", st.step, loss);
      events.scalar("train/aux_loss", st.step, aux);
      events.scalar("train/lr", st.step, lr);
      events.scalar("train/grad_norm", st.step, gnorm);
      events.scalar("train/loss_scale", st.step, used_scale);
      events.scalar("train/tokens_per_s", st.step, tps);
      for (size_t l = 0; l < counts.size(); ++l) {
        if (counts[l].empty()) continue;
        double total = 0.0;
        for (int64_t n : counts[l]) total += static_cast<double>(n);
        std::vector<double> limits, cnt, freq;
        double sum_e = 0.0, sum_e2 = 0.0;
        for (size_t e = 0; e < counts[l].size(); ++e) {
          const double n = static_cast<double>(counts[l][e]);
          const double f = total > 0 ? n / total : 0.0;
          freq.push_back(f);
          limits.push_back(static_cast<double>(e) + 0.5);
          cnt.push_back(n);
          sum_e += n * static_cast<double>(e);
          sum_e2 += n * static_cast<double>(e) * static_cast<double>(e);
          events.scalar("experts/layer_" + std::to_string(l) + "/expert_" + std::to_string(e), st.step, f);
        }
        // Bucket e counts the slots routed to expert e.
        events.histogram_counts("experts/layer_" + std::to_string(l) + "/routed_expert", st.step, limits, cnt,
                                0.0, static_cast<double>(counts[l].size() - 1), sum_e, sum_e2);
        rec["expert_freq"][std::to_string(l)] = freq;
      }
    }
    const bool eval_now = cfg.eval_every > 0 && (st.step % cfg.eval_every == 0 || st.step == cfg.steps);
    if (eval_now) {
      sum.last_val_loss = validation_loss(m, val_data, cfg, topt, pool);
      events.scalar("val/loss", st.step, sum.last_val_loss);
      rec["val_loss"] = sum.last_val_loss;
    }
    log << rec.dump() << "\n";
    log.flush();
    if (ro.progress) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - t_start).count();
      const double eta =
          elapsed / static_cast<double>(st.step - sum.first_step) * static_cast<double>(cfg.steps - st.step);
      draw_progress(st.step, cfg.steps, loss, aux, lr, gnorm, tps, eta);
      if (eval_now)
        std::fprintf(stderr, "\n  val loss %.4f at step %lld\n", sum.last_val_loss,
                     static_cast<long long>(st.step));
    }
    const bool save =
        (cfg.checkpoint_every > 0 && st.step % cfg.checkpoint_every == 0) || st.step == end_step;
    if (save) {
      events.flush();
      save_checkpoint(make_checkpoint(cfg, m, opt, st), checkpoint_path(ckpt_dir, st.step));
      prune_checkpoints(ckpt_dir, cfg.keep_checkpoints);
    }
  }
  if (ro.progress) std::fprintf(stderr, "\n");
  events.flush();
  sum.last_step = st.step;
  sum.tokens_per_s = static_cast<double>(tokens_done) /
                     std::max(1e-9, std::chrono::duration<double>(Clock::now() - t_start).count());
  if (ro.export_final && st.step == cfg.steps) {
    const std::string out = (fs::path(cfg.out_dir) / "model.gguf").string();
    export_checkpoint(checkpoint_path(ckpt_dir, st.step), out, "f32");
    std::fprintf(stderr, "train: wrote %s\n", out.c_str());
  }
  return sum;
}

TrainBench bench_training(const TrainConfig& cfg, int64_t steps, int threads) {
  MOE_CHECK(cfg.model.n_vocab > 0, "bench: the config must give model.n_vocab");
  ThreadPool pool(threads);
  set_blas_threads(pool.size());
  TrainModel m(cfg.model);
  m.init_random(cfg.seed, cfg.init_std);
  const int64_t n = static_cast<int64_t>(m.values().size());
  AdamW opt(n, cfg.adamw);
  const std::vector<uint8_t> decay = m.decay_mask();
  const TrainOptions topt = train_options(cfg);
  uint64_t x = cfg.seed * 0x9E3779B97F4A7C15ull + 1;
  TrainBench b;
  Clock::time_point t0;
  for (int64_t s = 0; s <= steps; ++s) {
    if (s == 1) t0 = Clock::now();  // step 0 warms caches and allocators
    const Accumulated acc =
        accumulate_gradients(m, cfg, topt, 1.0f, pool, [&](int64_t, std::vector<int32_t>* tokens) {
          tokens->resize(static_cast<size_t>(cfg.micro_batch * (cfg.seq_len + 1)));
          for (int32_t& t : *tokens) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            t = static_cast<int32_t>(x % static_cast<uint64_t>(cfg.model.n_vocab));
          }
        });
    b.activation_bytes = std::max(b.activation_bytes, acc.activation_bytes);
    const double norm = global_norm(m.grads().data(), n, &pool);
    clip_by_global_norm(m.grads().data(), n, norm, cfg.grad_clip);
    opt.step(m.values().data(), m.grads().data(), decay.data(), cfg.lr, &pool);
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  b.step_ms = 1000.0 * secs / static_cast<double>(steps);
  b.tokens_per_s = static_cast<double>(steps * cfg.batch * cfg.seq_len) / secs;
  return b;
}

void export_checkpoint(const std::string& ckpt_path, const std::string& out_gguf, const std::string& type) {
  Checkpoint ck = load_checkpoint(ckpt_path);
  MOE_CHECK(ck.texts.count("state") && ck.arrays.count("params"), ckpt_path, ": not a moe train checkpoint");
  Json s;
  try {
    s = Json::parse(ck.texts["state"]);
  } catch (const Json::exception& e) {
    fail(ckpt_path, ": the state section is not valid JSON: ", e.what());
  }
  TrainConfig cfg = parse_train_config(s.at("config").get<std::string>(), ckpt_path + " (config)", "");
  cfg.model.n_vocab = s.at("n_vocab").get<int64_t>();
  const TrainModel layout(cfg.model);
  const std::vector<float>& values = ck.arrays["params"];
  MOE_CHECK(values.size() == layout.values().size(), ckpt_path, ": holds ", values.size(),
            " parameters; its config needs ", layout.values().size());
  RandomModelOptions opt;
  MOE_CHECK(type == "f32" || type == "f16" || type == "bf16" || type == "q8_0",
            "export: --type must be f32, f16, bf16 or q8_0");
  opt.type = type == "f32"    ? DType::F32
             : type == "f16"  ? DType::F16
             : type == "bf16" ? DType::BF16
                              : DType::Q8_0;
  const std::string tok = s.value("tokenizer", std::string());
  std::unique_ptr<GgufFile> tok_gguf;
  if (!tok.empty()) {
    char magic[4] = {};
    std::ifstream(tok, std::ios::binary).read(magic, 4);
    if (std::string(magic, 4) == "GGUF") {  // a GGUF model's tokenizer: its tokenizer.* keys
      tok_gguf = GgufFile::open(tok);
      opt.tokenizer_source = tok_gguf.get();
    } else {  // a Hugging Face tokenizer.json (with tokenizer_config.json beside it, if any)
      MOE_CHECK(fs::path(tok).filename() == "tokenizer.json", "export: the tokenizer ", tok,
                " is neither a GGUF file nor a tokenizer.json");
      add_hf_bpe_vocab(fs::path(tok).parent_path().string(), cfg.model.n_vocab, cfg.model.arch == "llama",
                       &opt.extra_kv);
    }
  } else {
    opt.synthetic_vocab = cfg.model.n_vocab >= 260;
  }
  write_model(
      cfg.model, opt,
      [&](const std::string& name, const std::vector<int64_t>& ne) {
        const ParamInfo& p = layout.param(name);
        int64_t n = 1;
        for (int64_t d : ne) n *= d;
        MOE_CHECK(n == p.size, "export: tensor '", name, "' size mismatch");
        return std::vector<float>(values.begin() + p.offset, values.begin() + p.offset + p.size);
      },
      out_gguf);
}

}  // namespace moe::train

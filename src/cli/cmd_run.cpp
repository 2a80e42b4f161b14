#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "model/model.h"
#include "runtime/generator.h"

namespace moe::cli {

namespace {

struct RunArgs {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  int64_t n_predict = 128;
  int64_t n_ctx = 0;
  int threads = 0;
  int64_t seed = -1;
  bool no_special = false;
  SamplingParams sampling;
};

void run_generate(const RunArgs& a) {
  const auto t_load = std::chrono::steady_clock::now();
  LoadedModel m = load_model(a.model);
  const double load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_load).count();

  std::string prompt = a.prompt;
  if (!a.prompt_file.empty()) {
    FILE* f = a.prompt_file == "-" ? stdin : std::fopen(a.prompt_file.c_str(), "rb");
    MOE_CHECK(f != nullptr, a.prompt_file, ": cannot open prompt file");
    prompt.clear();
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) prompt.append(buf, n);
    if (f != stdin) std::fclose(f);
  }

  GenerateOptions opts;
  opts.n_predict = a.n_predict;
  opts.n_ctx = a.n_ctx;
  opts.sampling = a.sampling;
  opts.sampling.seed = a.seed >= 0 ? static_cast<uint64_t>(a.seed) : std::random_device{}();
  const std::vector<int32_t> ids = tokenize_prompt(*m.tokenizer, prompt, !a.no_special);

  ThreadPool pool(a.threads);
  std::fputs(prompt.c_str(), stdout);
  std::fflush(stdout);
  StreamDecoder dec(*m.tokenizer);
  // The prompt's text is already printed, so the decoder must not drop a leading space again.
  if (!prompt.empty()) dec.push_context();
  const GenerateStats st = generate(m, ids, opts, pool, [&](int32_t id) {
    const std::string piece = dec.push(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  const std::string rest = dec.flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);

  std::fprintf(stderr, "\nload: %.1f ms (%s, %s)\n", load_ms, m.model->config().arch.c_str(),
               kernels::isa_name(kernels::active_isa()));
  std::fprintf(stderr, "prompt: %lld tokens in %.1f ms, %.1f tokens/s\n", static_cast<long long>(st.n_prompt),
               st.prompt_ms, st.prompt_ms > 0 ? 1000.0 * st.n_prompt / st.prompt_ms : 0.0);
  std::fprintf(stderr, "generation: %lld tokens in %.1f ms, %.1f tokens/s (%d threads, stop: %s)\n",
               static_cast<long long>(st.n_generated), st.generate_ms,
               st.generate_ms > 0 ? 1000.0 * st.n_generated / st.generate_ms : 0.0, pool.size(),
               st.stop_reason);
}

}  // namespace

void add_sampling_options(CLI::App* cmd, SamplingParams& s) {
  cmd->add_option("--temp", s.temperature, "temperature; 0 = greedy")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-k", s.top_k, "keep the k most likely tokens; 0 = off")->capture_default_str();
  cmd->add_option("--top-p", s.top_p, "nucleus sampling; 1 = off")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--min-p", s.min_p, "drop tokens below min-p times the top probability; 0 = off")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--repeat-penalty", s.repeat_penalty, "penalise repeated tokens; 1 = off")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--repeat-last-n", s.penalty_last_n, "tokens the penalties look back; -1 = all")->capture_default_str();
  cmd->add_option("--frequency-penalty", s.frequency_penalty, "subtract count * value")->capture_default_str();
  cmd->add_option("--presence-penalty", s.presence_penalty, "subtract value once seen")->capture_default_str();
}

void add_run_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "Generate text from a prompt, streaming to stdout");
  auto a = std::make_shared<RunArgs>();
  cmd->add_option("-m,--model", a->model, "model file (GGUF)")->required();
  cmd->add_option("-p,--prompt", a->prompt, "prompt text; empty starts from BOS");
  cmd->add_option("-f,--file", a->prompt_file, "read the prompt from a file (- for stdin)");
  cmd->add_option("-n,--n-predict", a->n_predict, "tokens to generate; -1 = until EOS")->capture_default_str();
  cmd->add_option("-c,--ctx-size", a->n_ctx, "context size; 0 = the model's (at most 4096)")->capture_default_str();
  cmd->add_option("-t,--threads", a->threads, "threads; 0 = all cores")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("-s,--seed", a->seed, "random seed; -1 = random")->capture_default_str();
  cmd->add_flag("--no-special", a->no_special, "treat special-token text in the prompt as plain text");
  add_sampling_options(cmd, a->sampling);
  cmd->callback([a] { run_generate(*a); });
}

}  // namespace moe::cli

#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "model/model.h"
#include "runtime/chat.h"
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
  bool chat = false;
  bool verbose_prompt = false;
  std::string system;
  bool user_set_temp = false;   // filled from the parser: the user's choice beats the model's
  bool user_set_top_p = false;
  SamplingParams sampling;
};

// The model publisher's recommended sampling, for the options the user left alone.
void apply_recommended(const ChatFormatter& chat, bool set_temp, bool set_top_p, SamplingParams& s) {
  const std::optional<SamplingParams> rec = chat.recommended_sampling();
  if (!rec) return;
  if (!set_temp) s.temperature = rec->temperature;
  if (!set_top_p) s.top_p = rec->top_p;
  if (!set_temp && !set_top_p) {
    s.top_k = rec->top_k;
    s.min_p = rec->min_p;
  }
}

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
  std::vector<int32_t> ids;
  std::string echo;  // printed before the generated text: the prompt, or in chat the reply's opener
  if (a.chat) {
    // The prompt is the user's message: rendered by the model's template; the template's own
    // markers are special tokens, the message text is not (no injected turn markers).
    const ChatFormatter chat(m);
    apply_recommended(chat, a.user_set_temp, a.user_set_top_p, opts.sampling);
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (!a.system.empty()) messages.push_back({{"role", "system"}, {"content", a.system}});
    messages.push_back({{"role", "user"}, {"content", prompt}});
    prompt = chat.prompt_for_reply(messages);
    ids = tokenize_chat_prompt(*m.tokenizer, prompt, messages);
    if (chat.is_r1()) echo = "<think>\n";
  } else {
    ids = tokenize_prompt(*m.tokenizer, prompt, !a.no_special);
    echo = prompt;
  }

  if (a.verbose_prompt) {
    std::fprintf(stderr, "sampling: temperature %.2f, top-p %.2f, top-k %d, min-p %.2f\n",
                 opts.sampling.temperature, opts.sampling.top_p, opts.sampling.top_k, opts.sampling.min_p);
    std::fprintf(stderr, "prompt (%zu tokens): %s\n", ids.size(), prompt.c_str());
    std::string list;
    for (int32_t id : ids) list += (list.empty() ? "" : " ") + std::to_string(id);
    std::fprintf(stderr, "prompt ids: %s\n", list.c_str());
  }
  ThreadPool pool(a.threads);
  std::fputs(echo.c_str(), stdout);
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
  cmd->add_flag("--chat", a->chat,
                "the prompt is a user message: apply the model's chat template (R1: reply opens with <think>)");
  cmd->add_option("--system", a->system, "with --chat: a system message");
  cmd->add_flag("--verbose-prompt", a->verbose_prompt, "print the prompt and its token ids to stderr");
  add_sampling_options(cmd, a->sampling);
  cmd->callback([a, cmd] {
    a->user_set_temp = cmd->count("--temp") > 0;
    a->user_set_top_p = cmd->count("--top-p") > 0;
    run_generate(*a);
  });
}

}  // namespace moe::cli

// `moe chat`: an interactive conversation in the terminal. Each line on stdin is a user turn;
// the reply streams to stdout. The whole conversation is re-rendered with the model's chat
// template every turn (earlier R1 reasoning is dropped by the template, as DeepSeek specifies).
#include <unistd.h>

#include <cstdio>
#include <iostream>
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

struct ChatArgs {
  std::string model;
  std::string system;
  int64_t n_predict = 1024;
  int64_t n_ctx = 0;
  int threads = 0;
  int64_t seed = -1;
  bool set_temp = false, set_top_p = false;
  SamplingParams sampling;
};

void run_chat(const ChatArgs& a) {
  const LoadedModel m = load_model(a.model);
  const ChatFormatter chat(m);
  SamplingParams sampling = a.sampling;
  if (const auto rec = chat.recommended_sampling()) {
    if (!a.set_temp) sampling.temperature = rec->temperature;
    if (!a.set_top_p) sampling.top_p = rec->top_p;
    if (!a.set_temp && !a.set_top_p) {
      sampling.top_k = rec->top_k;
      sampling.min_p = rec->min_p;
    }
  }
  sampling.seed = a.seed >= 0 ? static_cast<uint64_t>(a.seed) : std::random_device{}();
  ThreadPool pool(a.threads);
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  if (!a.system.empty()) messages.push_back({{"role", "system"}, {"content", a.system}});
  const bool tty = isatty(fileno(stdin));
  std::string line;
  for (int turn = 0;; ++turn) {
    if (tty) std::fputs("> ", stderr);
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    messages.push_back({{"role", "user"}, {"content", line}});
    const std::string prompt = chat.prompt_for_reply(messages);
    const std::vector<int32_t> ids = tokenize_chat_prompt(*m.tokenizer, prompt, messages);
    GenerateOptions opts;
    opts.n_predict = a.n_predict;
    opts.n_ctx = a.n_ctx;
    opts.sampling = sampling;
    opts.sampling.seed = sampling.seed + static_cast<uint64_t>(turn);
    std::string reply = chat.is_r1() ? "<think>\n" : "";
    std::fputs(reply.c_str(), stdout);
    StreamDecoder dec(*m.tokenizer);
    dec.push_context();
    generate(m, ids, opts, pool, [&](int32_t id) {
      const std::string piece = dec.push(id);
      reply += piece;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    reply += dec.flush();
    std::fputc('\n', stdout);
    std::fflush(stdout);
    messages.push_back({{"role", "assistant"}, {"content", reply}});
  }
}

}  // namespace

void add_chat_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("chat", "Chat with a model in the terminal (one user turn per line)");
  auto a = std::make_shared<ChatArgs>();
  cmd->add_option("-m,--model", a->model, "model file (GGUF)")->required();
  cmd->add_option("--system", a->system, "system message");
  cmd->add_option("-n,--n-predict", a->n_predict, "tokens per reply at most")->capture_default_str();
  cmd->add_option("-c,--ctx-size", a->n_ctx, "context size; 0 = the model's (at most 4096)");
  cmd->add_option("-t,--threads", a->threads, "threads; 0 = all cores")->check(CLI::NonNegativeNumber);
  cmd->add_option("-s,--seed", a->seed, "random seed; -1 = random");
  add_sampling_options(cmd, a->sampling);
  cmd->callback([a, cmd] {
    a->set_temp = cmd->count("--temp") > 0;
    a->set_top_p = cmd->count("--top-p") > 0;
    run_chat(*a);
  });
}

}  // namespace moe::cli

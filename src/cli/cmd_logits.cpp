#include <cstdio>
#include <memory>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "formats/npy.h"
#include "model/model.h"
#include "runtime/generator.h"

namespace moe::cli {

namespace {

struct LogitsArgs {
  std::string model;
  std::string prompt;
  std::string ids;
  std::string out;
  int threads = 0;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MOE_CHECK(used > 0 && used == item.size() && v >= 0 && v <= INT32_MAX, "--ids: '", item,
              "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
  }
  MOE_CHECK(!ids.empty(), "--ids: no token ids given");
  return ids;
}

void run_logits(const LogitsArgs& a) {
  LoadedModel m = load_model(a.model);
  const std::vector<int32_t> ids = a.ids.empty() ? tokenize_prompt(*m.tokenizer, a.prompt, true) : parse_ids(a.ids);
  MOE_CHECK(!ids.empty(), "nothing to evaluate");
  const int64_t n_vocab = m.model->config().n_vocab;
  for (int32_t id : ids) MOE_CHECK(id < n_vocab, "--ids: token id ", id, " is out of range [0, ", n_vocab, ")");
  const int64_t n = static_cast<int64_t>(ids.size());
  KvCache cache = m.model->new_cache(n);
  std::vector<float> logits(static_cast<size_t>(n * n_vocab));  // [n_tokens, n_vocab]
  ThreadPool pool(a.threads);
  m.model->forward(ids, 0, cache, /*all_logits=*/true, logits.data(), pool);
  write_npy_f32(a.out, {n, n_vocab}, logits.data());
  std::fprintf(stderr, "wrote %s: [%lld, %lld] float32\n", a.out.c_str(), static_cast<long long>(n),
               static_cast<long long>(n_vocab));
}

}  // namespace

void add_logits_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("logits", "Write the logits of every input position to a .npy file");
  auto a = std::make_shared<LogitsArgs>();
  cmd->add_option("-m,--model", a->model, "model file (GGUF)")->required();
  auto* p = cmd->add_option("-p,--prompt", a->prompt, "prompt text (BOS added as the model's metadata says)");
  auto* i = cmd->add_option("--ids", a->ids, "comma-separated token ids, used as given");
  p->excludes(i);
  cmd->add_option("--out", a->out, "output .npy file")->required();
  cmd->add_option("-t,--threads", a->threads, "threads; 0 = all cores")->check(CLI::NonNegativeNumber);
  cmd->callback([a] {
    MOE_CHECK(!a->prompt.empty() || !a->ids.empty(), "give -p PROMPT or --ids 1,2,3");
    run_logits(*a);
  });
}

}  // namespace moe::cli

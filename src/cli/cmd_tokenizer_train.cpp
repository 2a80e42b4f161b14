// `moe tokenizer train`: a byte-level BPE tokenizer (DeepSeek-V3's pre-tokenizer) trained on
// text files, written as a Hugging Face tokenizer.json.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/bpe_train.h"

namespace moe::cli {

namespace {

struct TokenizerTrainArgs {
  int32_t vocab_size = 0;
  std::vector<std::string> inputs;
  std::string out;
  std::vector<std::string> specials;
  int64_t min_frequency = 2;
  int threads = 0;
};

void run_tokenizer_train(const TokenizerTrainArgs& a) {
  BpeTrainOptions o;
  o.vocab_size = a.vocab_size;
  o.specials = a.specials;
  o.min_frequency = a.min_frequency;
  o.threads = a.threads;
  BpeTrainer trainer(std::move(o));
  for (const std::string& path : a.inputs) trainer.add_file(path);
  const BpeModel model = trainer.train();
  write_bpe_tokenizer_json(model, a.out);
  const BpeTrainStats& s = trainer.stats();
  const double seconds = s.count_seconds + s.merge_seconds;
  std::fprintf(stderr,
               "tokenizer train: %.2f MB, %llu words (%llu distinct) counted in %.2f s, %zu merges in %.2f s "
               "(%.2f MB/s overall); wrote %s with %zu tokens\n",
               static_cast<double>(s.bytes) / 1e6, static_cast<unsigned long long>(s.words),
               static_cast<unsigned long long>(s.unique_words), s.count_seconds, model.merges.size(),
               s.merge_seconds, seconds > 0 ? static_cast<double>(s.bytes) / 1e6 / seconds : 0.0,
               a.out.c_str(), model.vocab.size());
  if (static_cast<int32_t>(model.vocab.size()) < a.vocab_size) {
    std::fprintf(stderr,
                 "tokenizer train: warning: only %zu of %d tokens: no pair left occurs %lld times or more "
                 "(more text or a lower --min-frequency gives more)\n",
                 model.vocab.size(), a.vocab_size, static_cast<long long>(a.min_frequency));
  }
}

}  // namespace

void add_tokenizer_train_command(CLI::App& app) {
  // `tokenizer` groups tokenizer jobs; another job may already have created it.
  CLI::App* group = nullptr;
  for (CLI::App* sub : app.get_subcommands({}))
    if (sub->check_name("tokenizer")) group = sub;
  if (group == nullptr) {
    group = app.add_subcommand("tokenizer", "Tokenizer tools (train)");
    group->require_subcommand(1);
  }
  auto a = std::make_shared<TokenizerTrainArgs>();
  auto* cmd = group->add_subcommand(
      "train",
      "Train a byte-level BPE tokenizer (DeepSeek-V3 pre-tokenizer) and write a Hugging Face tokenizer.json");
  cmd->add_option("--vocab-size", a->vocab_size,
                  "number of tokens, special tokens and the 256 byte tokens included")
      ->required();
  cmd->add_option("--input", a->inputs, "a UTF-8 text file to train on (repeat for more)")->required();
  cmd->add_option("-o,--output", a->out, "the tokenizer.json to write")->required();
  cmd->add_option(
      "--special", a->specials,
      "a special token, e.g. \"<｜begin▁of▁sentence｜>\" (repeat for more; ids 0, 1, ... in order)");
  cmd->add_option("--min-frequency", a->min_frequency, "stop when the most frequent pair occurs fewer times")
      ->capture_default_str();
  cmd->add_option("--threads", a->threads, "counting threads (default: all cores, at most 8)");
  cmd->callback([a] { run_tokenizer_train(*a); });
}

}  // namespace moe::cli

// `moe data prepare`: a weighted mixture of text sources -> token shards for `moe train`.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/load.h"
#include "train/data.h"

namespace moe::cli {

namespace {

struct DataPrepareArgs {
  std::string config;
  std::string tokenizer;
  std::string out;
  int threads = 0;
  bool quiet = false;
};

void run_data_prepare(const DataPrepareArgs& a) {
  const train::MixtureConfig cfg = train::load_mixture_config(a.config);
  const LoadedTokenizer lt = load_tokenizer(a.tokenizer);
  train::PrepareOptions opt;
  opt.threads = a.threads;
  if (!a.quiet)
    opt.progress = [](const std::string& line) { std::fprintf(stderr, "data: %s\n", line.c_str()); };
  const train::PrepareResult r = train::prepare_data(cfg, *lt.tokenizer, a.tokenizer, a.out, opt);
  std::printf("%-16s %8s %8s %12s %10s %8s\n", "source", "weight", "actual", "train_tok", "val_tok",
              "epochs");
  for (const train::SourceStats& s : r.sources)
    std::printf("%-16s %7.2f%% %7.2f%% %12lld %10lld %8.2f\n", s.name.c_str(), 100 * s.share,
                r.train_tokens
                    ? 100.0 * static_cast<double>(s.train_tokens) / static_cast<double>(r.train_tokens)
                    : 0.0,
                static_cast<long long>(s.train_tokens), static_cast<long long>(s.val_tokens), s.epochs);
  std::printf("wrote %lld training tokens (%zu shards) and %lld validation tokens (%zu shards) to %s\n",
              static_cast<long long>(r.train_tokens), r.train_shards.size(),
              static_cast<long long>(r.val_tokens), r.val_shards.size(), a.out.c_str());
}

}  // namespace

void add_data_command(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Prepare training data");
  data->require_subcommand(1);
  auto* prep = data->add_subcommand(
      "prepare",
      "Tokenize a weighted mixture of text sources (mixture.json) into shuffled train/val token shards "
      "and a manifest");
  auto a = std::make_shared<DataPrepareArgs>();
  prep->add_option(
          "--config", a->config,
          "mixture JSON: {\"seed\", \"seq_len\", \"val_fraction\", \"shard_tokens\", \"train_tokens\", "
          "\"sources\": [{\"name\", \"weight\", \"format\": text|lines|python|man|synthetic-arithmetic, "
          "\"paths\": [glob or {\"glob\", \"format\"}], \"exclude\": [glob]} or {..., \"documents\": N}]}; "
          "see configs/data/seed_mixture.json")
      ->required();
  prep->add_option("--tokenizer", a->tokenizer, "a GGUF file, a tokenizer.json or a model directory")
      ->required();
  prep->add_option("-o,--out", a->out, "output directory (train_NNN.bin, val_NNN.bin, manifest.json)")
      ->required();
  prep->add_option("--threads", a->threads, "tokenizer threads (default: all cores)");
  prep->add_flag("-q,--quiet", a->quiet, "no progress lines on stderr");
  prep->callback([a] { run_data_prepare(*a); });
}

}  // namespace moe::cli

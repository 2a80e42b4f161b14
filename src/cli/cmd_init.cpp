// `moe init`: a model with random weights in any preset's shape (for tests, benchmarks, and as
// the starting point of `moe train`).
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "model/presets.h"

namespace moe::cli {

namespace {

struct InitArgs {
  std::string preset;
  std::string out;
  std::string tokenizer_from;
  std::string chat_template;
  std::string type = "f32";
  bool reduced = false;
  bool old_mla_layout = false;
  uint64_t seed = 1;
};

void run_init(const InitArgs& a) {
  const Preset& p = find_preset(a.preset);
  ModelConfig c = a.reduced ? reduced(p.config) : p.config;
  RandomModelOptions opt;
  opt.seed = a.seed;
  opt.mla_split = !a.old_mla_layout;
  opt.yarn_log_multiplier = p.yarn_log_multiplier;
  MOE_CHECK(a.type == "f32" || a.type == "f16" || a.type == "bf16", "--type must be f32, f16 or bf16");
  opt.type = a.type == "f32" ? DType::F32 : a.type == "f16" ? DType::F16 : DType::BF16;
  std::unique_ptr<GgufFile> tok;
  if (!a.tokenizer_from.empty()) {
    tok = GgufFile::open(a.tokenizer_from);
    const GgufValue* tokens = tok->find("tokenizer.ggml.tokens");
    MOE_CHECK(tokens != nullptr, a.tokenizer_from, ": has no tokenizer.ggml.tokens");
    c.n_vocab = static_cast<int64_t>(tokens->elems().size());
    opt.tokenizer_source = tok.get();
  } else {
    opt.synthetic_vocab = c.n_vocab >= 260;
  }
  const ParamCount n = count_params(c);
  // The writer holds the whole file in memory; keep that sane.
  MOE_CHECK(n.total <= 2'000'000'000, "preset '", a.preset, "' has ", n.total / 1'000'000'000.0,
            "B parameters; use --reduced (random weights of that size are not useful here)");
  if (!a.chat_template.empty()) {
    std::FILE* f = std::fopen(a.chat_template.c_str(), "rb");
    MOE_CHECK(f != nullptr, "cannot read ", a.chat_template);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) opt.chat_template.append(buf, n);
    std::fclose(f);
  }
  write_random_model(c, opt, a.out);
  std::fprintf(stderr, "init: wrote %s (%s, %.2fM parameters)\n", a.out.c_str(), c.arch.c_str(),
               n.total / 1e6);
}

}  // namespace

void add_init_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("init", "Write a model with random weights in a preset's shape");
  auto a = std::make_shared<InitArgs>();
  cmd->add_option("--preset", a->preset, "model shape (moe info --presets)")->required();
  cmd->add_option("-o,--out", a->out, "output GGUF file")->required();
  cmd->add_flag("--reduced", a->reduced, "same architecture and features at a test size");
  cmd->add_option("--tokenizer-from", a->tokenizer_from,
                  "copy the tokenizer (and vocabulary size) of this GGUF");
  cmd->add_option("--chat-template", a->chat_template, "store this Jinja file as tokenizer.chat_template");
  cmd->add_option("--type", a->type, "matrix type: f32, f16 or bf16");
  cmd->add_option("--seed", a->seed, "random seed");
  cmd->add_flag("--old-mla-layout", a->old_mla_layout,
                "deepseek2: write attn_kv_b instead of attn_k_b/attn_v_b");
  cmd->callback([a] { run_init(*a); });
}

}  // namespace moe::cli

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "model/model.h"
#include "runtime/generator.h"

namespace moe::cli {

namespace {

struct TokenizeArgs {
  std::string model;
  std::string text;
  bool ids_only = false;
  bool no_bos = false;
  bool no_special = false;
};

void run_tokenize(const TokenizeArgs& a) {
  const auto file = GgufFile::open(a.model);
  const auto tok = tokenizer_from_gguf(*file);
  const std::string text = a.text == "-" ? read_stdin() : a.text;
  std::vector<int32_t> ids;
  if (!a.no_bos && tok->add_bos() && tok->bos_id() >= 0) ids.push_back(tok->bos_id());
  const std::vector<int32_t> body = tok->encode(text, !a.no_special);
  ids.insert(ids.end(), body.begin(), body.end());
  if (a.ids_only) {
    std::string out = "[";
    for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
    std::printf("%s]\n", out.c_str());
    return;
  }
  for (int32_t id : ids) std::printf("%6d -> '%s'\n", id, tok->token_to_piece(id, true).c_str());
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Turn text into token ids");
  auto a = std::make_shared<TokenizeArgs>();
  cmd->add_option("-m,--model", a->model, "model file (GGUF) whose vocabulary to use")->required();
  cmd->add_option("text", a->text, "text to tokenize, or - for stdin");
  cmd->add_flag("--ids-only", a->ids_only, "print a JSON array of ids only");
  cmd->add_flag("--no-bos", a->no_bos, "do not add BOS even if the model asks for it");
  cmd->add_flag("--no-special", a->no_special, "treat special-token text as plain text");
  cmd->callback([a] { run_tokenize(*a); });
}

}  // namespace moe::cli

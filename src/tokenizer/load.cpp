#include "tokenizer/load.h"

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/hf_tokenizer.h"

namespace moe {

namespace {

bool has_gguf_magic(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {};
  return f.read(magic, 4) && std::string(magic, 4) == "GGUF";
}

std::string token_text_or_empty(const Tokenizer& tok, int32_t id) {
  return id >= 0 && id < tok.n_vocab() ? tok.token_text(id) : std::string();
}

}  // namespace

LoadedTokenizer load_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  LoadedTokenizer out;
  if (fs::is_regular_file(path, ec) && has_gguf_magic(path)) {
    const auto file = GgufFile::open(path);
    out.tokenizer = tokenizer_from_gguf(*file);
    if (const GgufValue* v = file->find("tokenizer.chat_template")) {
      MOE_CHECK(v->type() == GgufType::STRING, path, ": tokenizer.chat_template is not a string");
      out.chat_template = v->as_string();
    }
    out.bos_token = token_text_or_empty(*out.tokenizer, out.tokenizer->bos_id());
    out.eos_token = token_text_or_empty(*out.tokenizer, out.tokenizer->eos_id());
    return out;
  }
  fs::path json_path = path;
  if (fs::is_directory(path, ec)) {
    json_path /= "tokenizer.json";
    MOE_CHECK(fs::is_regular_file(json_path, ec), path,
              ": a model directory must hold tokenizer.json (SentencePiece tokenizer.model is not supported)");
  } else {
    MOE_CHECK(fs::exists(path, ec), path, ": no such file or directory");
    MOE_CHECK(json_path.extension() == ".json", path,
              ": not a tokenizer (expected a GGUF file, a tokenizer.json or a model directory)");
  }
  out.tokenizer = std::make_unique<HfBpeTokenizer>(json_path.string());
  const fs::path config = json_path.parent_path() / "tokenizer_config.json";
  bool have_config_tokens = false;
  if (fs::is_regular_file(config, ec)) {
    try {
      TokenizerConfigTemplate t = read_tokenizer_config(config.string());
      out.chat_template = std::move(t.chat_template);
      out.bos_token = std::move(t.bos_token);
      out.eos_token = std::move(t.eos_token);
      have_config_tokens = true;
    } catch (const Error&) {
      // No usable template: the tokenizer still works; `moe chat-template` reports the absence.
    }
  }
  if (!have_config_tokens) {
    out.bos_token = token_text_or_empty(*out.tokenizer, out.tokenizer->bos_id());
    out.eos_token = token_text_or_empty(*out.tokenizer, out.tokenizer->eos_id());
  }
  return out;
}

}  // namespace moe

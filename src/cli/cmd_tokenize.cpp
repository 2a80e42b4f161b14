// `moe tokenize` and `moe detokenize`.
#include <cctype>
#include <climits>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/load.h"

namespace moe::cli {

namespace {

struct TokenizeArgs {
  std::string model;
  std::string tokenizer;
  std::string text;
  std::string jsonl;
  bool ids_only = false;
  bool special = false;
  bool no_special = false;
  bool bos = false;
  bool no_bos = false;
};

std::string ids_json(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  return out + "]";
}

// -m MODEL: the ids the model would see (BOS as its metadata says, like llama-tokenize).
// --tokenizer PATH: the tokenizer's own encoding, as Hugging Face tokenizers' encode() and
// llama.cpp's vocab test vectors give it (no BOS unless --bos).
std::vector<int32_t> encode(const Tokenizer& tok, const TokenizeArgs& a, const std::string& text) {
  std::vector<int32_t> ids;
  const bool want_bos = a.bos || (!a.model.empty() && tok.add_bos() && !a.no_bos);
  if (want_bos && tok.bos_id() >= 0) ids.push_back(tok.bos_id());
  const std::vector<int32_t> body = tok.encode(text, a.special && !a.no_special);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

void run_jsonl(const Tokenizer& tok, const TokenizeArgs& a) {
  std::ifstream file;
  if (a.jsonl != "-") {
    file.open(a.jsonl, std::ios::binary);
    MOE_CHECK(file, "cannot read ", a.jsonl);
  }
  std::istream& in = a.jsonl == "-" ? std::cin : file;
  std::string line;
  for (size_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail(a.jsonl, ":", line_no, ": invalid JSON: ", e.what());
    }
    MOE_CHECK(j.is_object() && j.contains("text") && j["text"].is_string(), a.jsonl, ":", line_no,
              ": expected an object with a string \"text\"");
    const std::vector<int32_t> ids = encode(tok, a, j["text"].get<std::string>());
    nlohmann::json out;
    out["id"] = j.contains("id") ? j["id"] : nlohmann::json(nullptr);
    out["ids"] = ids;
    std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
}

void run_tokenize(const TokenizeArgs& a) {
  MOE_CHECK(a.model.empty() != a.tokenizer.empty(), "tokenize: give exactly one of -m MODEL or --tokenizer PATH");
  MOE_CHECK(a.jsonl.empty() || a.text.empty(), "tokenize: give either TEXT or --jsonl FILE, not both");
  const LoadedTokenizer lt = load_tokenizer(a.model.empty() ? a.tokenizer : a.model);
  const Tokenizer& tok = *lt.tokenizer;
  if (!a.jsonl.empty()) return run_jsonl(tok, a);
  const std::string text = a.text == "-" ? read_stdin() : a.text;
  const std::vector<int32_t> ids = encode(tok, a, text);
  if (a.ids_only) {
    std::printf("%s\n", ids_json(ids).c_str());
    return;
  }
  for (int32_t id : ids) std::printf("%6d -> '%s'\n", id, tok.token_to_piece(id, true).c_str());
}

struct DetokenizeArgs {
  std::string tokenizer;
  std::string ids;
  bool skip_special = false;
};

// Accepts "1,2,3", "[1, 2, 3]" and whitespace-separated ids.
std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  const auto is_sep = [](char c) { return c == ',' || c == '[' || c == ']' || std::isspace(static_cast<unsigned char>(c)); };
  while (i < s.size()) {
    if (is_sep(s[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && !is_sep(s[j])) ++j;
    const std::string word = s.substr(i, j - i);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MOE_CHECK(used == word.size() && v >= 0 && v <= INT32_MAX, "not a token id: '", word, "'");
    ids.push_back(static_cast<int32_t>(v));
    i = j;
  }
  return ids;
}

void run_detokenize(const DetokenizeArgs& a) {
  const LoadedTokenizer lt = load_tokenizer(a.tokenizer);
  const std::vector<int32_t> ids = parse_ids(a.ids == "-" ? read_stdin() : a.ids);
  for (int32_t id : ids)
    MOE_CHECK(id < lt.tokenizer->n_vocab(), "token id ", id, " is out of range (vocabulary of ",
              lt.tokenizer->n_vocab(), ")");
  const std::string text = lt.tokenizer->decode(ids, !a.skip_special);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Turn text into token ids");
  auto a = std::make_shared<TokenizeArgs>();
  cmd->add_option("-m,--model", a->model, "model file (GGUF): ids as the model sees them (BOS per its metadata)");
  cmd->add_option("--tokenizer", a->tokenizer,
                  "tokenizer: a GGUF file, a tokenizer.json or a Hugging Face model directory (no BOS)");
  cmd->add_option("text", a->text, "text to tokenize, or - for stdin");
  cmd->add_option("--jsonl", a->jsonl,
                  "read lines {\"id\": ..., \"text\": ...} from FILE (- for stdin), print {\"id\": ..., \"ids\": [...]}");
  cmd->add_flag("--ids-only", a->ids_only, "print a JSON array of ids only");
  cmd->add_flag("--special", a->special,
                "match the text of special tokens (<｜User｜>, <|im_start|>) as those tokens; off by default, "
                "so such text in user input stays plain text");
  cmd->add_flag("--no-special", a->no_special, "treat special-token text as plain text (the default)");
  cmd->add_flag("--bos", a->bos, "prepend BOS");
  cmd->add_flag("--no-bos", a->no_bos, "with -m: do not add BOS even if the model asks for it");
  cmd->callback([a] { run_tokenize(*a); });

  auto* de = app.add_subcommand("detokenize", "Turn token ids into text");
  auto d = std::make_shared<DetokenizeArgs>();
  de->add_option("--tokenizer,-m,--model", d->tokenizer, "a GGUF file, a tokenizer.json or a model directory")
      ->required();
  de->add_option("ids", d->ids, "ids as 1,2,3 or [1, 2, 3] or space-separated, or - for stdin")->required();
  de->add_flag("--skip-special", d->skip_special,
               "leave out the text of control tokens (Hugging Face's skip_special_tokens)");
  de->callback([d] { run_detokenize(*d); });
}

}  // namespace moe::cli

// One entry point for "a tokenizer" as users name it: a GGUF model file, a Hugging Face
// tokenizer.json, or a Hugging Face model directory holding one.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace moe {

struct LoadedTokenizer {
  std::unique_ptr<Tokenizer> tokenizer;
  // The Jinja chat template (GGUF tokenizer.chat_template, or tokenizer_config.json beside a
  // tokenizer.json); empty when the source has none.
  std::string chat_template;
  std::string bos_token;  // texts the template sees as bos_token / eos_token
  std::string eos_token;
};

// Throws moe::Error naming path when it is none of the above or does not parse.
LoadedTokenizer load_tokenizer(const std::string& path);

}  // namespace moe

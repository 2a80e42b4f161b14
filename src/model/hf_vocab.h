// The tokenizer half of a Hugging Face directory read as GGUF (see hf_model.h): tokenizer.ggml.*
// and tokenizer.chat_template as llama.cpp's convert_hf_to_gguf.py writes them for a byte-level
// BPE tokenizer.json.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "formats/gguf.h"

namespace moe {

// Appends, in the converter's order: tokenizer.ggml.add_space_prefix (llama only, when
// tokenizer_config.json says), model = "gpt2", pre (recognised by the pre-tokenizer's regexes:
// deepseek-v3, qwen2 / deepseek-r1-qwen, llama-bpe, deepseek-llm, deepseek-coder, gpt-2),
// tokens (padded to n_vocab with "[PAD{i}]"), token_type (normal 1, control 3, user-defined 4,
// unused 5), merges, special token ids, add_{bos,eos,sep}_token and the chat template(s).
// Throws moe::Error naming the file: no tokenizer.json (or only a SentencePiece tokenizer.model),
// an unknown pre-tokenizer, more tokens than n_vocab, special ids outside the vocabulary.
void add_hf_bpe_vocab(const std::string& dir, int64_t n_vocab, bool llama_arch,
                      std::vector<std::pair<std::string, GgufValue>>* kv);

}  // namespace moe

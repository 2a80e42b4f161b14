// Reading the hyperparameters every GGUF transformer shares ({arch}.embedding_length, ...).
#pragma once

#include <string>

#include "formats/gguf.h"
#include "model/model.h"

namespace moe {

// Fills the shared fields of ModelConfig from `{arch}.*` keys; neox selects the RoPE pairing
// (llama.cpp: false for llama, true for qwen2). Throws naming the key when one is missing or
// the values are inconsistent.
ModelConfig read_transformer_config(const GgufFile& file, const std::string& arch, bool neox);

}  // namespace moe

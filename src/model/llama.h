#pragma once

#include <memory>
#include <string>

#include "formats/gguf.h"
#include "model/model.h"

namespace moe {

// Hyperparameters of the llama-like architectures (llama, qwen2): the shared transformer keys,
// n_vocab from token_embd, and the optional Mixtral-style expert keys.
ModelConfig read_llama_family_config(const GgufFile& file, const std::string& arch, bool neox);

std::unique_ptr<Model> make_llama(const GgufFile& file);

}  // namespace moe

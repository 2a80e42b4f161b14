#pragma once

#include <memory>

#include "formats/gguf.h"
#include "model/model.h"

namespace moe {

// DeepSeek-V2/V3/R1 hyperparameters from llama.cpp's `deepseek2.*` keys (either MLA layout).
ModelConfig read_deepseek2_config(const GgufFile& file);

std::unique_ptr<Model> make_deepseek2(const GgufFile& file);

}  // namespace moe

#pragma once

#include <memory>

#include "formats/gguf.h"
#include "model/model.h"

namespace moe {

std::unique_ptr<Model> make_qwen2(const GgufFile& file);

}  // namespace moe

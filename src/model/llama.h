#pragma once

#include <memory>

#include "model/model.h"

namespace moe {

std::unique_ptr<Model> make_llama(const GgufFile& file);

}  // namespace moe

// Qwen2 architecture (llama.cpp's `qwen2`; DeepSeek-R1-Distill-Qwen): Llama's block with
// biases on the q/k/v projections and RoPE on NeoX pairs (i, i + n_rot/2).
#include "model/qwen2.h"

#include "model/decoder.h"
#include "model/llama.h"

namespace moe {

std::unique_ptr<Model> make_qwen2(const GgufFile& file) {
  ModelConfig c = read_llama_family_config(file, "qwen2", /*neox=*/true);
  DecoderOptions opt;
  opt.qkv_bias = true;
  DecoderWeights w = load_decoder(file, c, opt);
  return std::make_unique<DecoderModel>(std::move(c), std::move(w));
}

}  // namespace moe

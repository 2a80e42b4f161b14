// A Hugging Face model directory (config.json + safetensors + tokenizer.json) presented as the
// GGUF file llama.cpp's convert_hf_to_gguf.py would make of it: the same general.architecture,
// metadata keys and values, tensor names, shapes and transforms, so that the rest of the engine
// (and `moe convert`) treats both alike.
//
//   LlamaForCausalLM    -> llama    (Q/K rows permuted for llama's interleaved RoPE; llama3
//                                    rope scaling becomes a rope_freqs tensor)
//   MixtralForCausalLM  -> llama    (+ expert_count/expert_used_count, ffn_gate_inp, experts
//                                    stacked into ffn_{gate,up,down}_exps)
//   Qwen2ForCausalLM    -> qwen2    (q/k/v biases)
//   DeepseekV2ForCausalLM, DeepseekV3ForCausalLM -> deepseek2 in the newer MLA layout:
//       attn_q or attn_q_a/attn_q_a_norm/attn_q_b, attn_kv_a_mqa, attn_kv_a_norm,
//       attn_k_b ne {qk_nope, kv_lora_rank, n_head} (kv_b_proj's key rows, transposed per head),
//       attn_v_b ne {kv_lora_rank, v_head_dim, n_head}, attn_output; dense ffn_{gate,up,down} in
//       the first first_k_dense_replace layers, then ffn_gate_inp, exp_probs_b.bias,
//       ffn_{gate,up}_exps ne {n_embd, n_ff_exp, n_expert}, ffn_down_exps ne {n_ff_exp, n_embd,
//       n_expert}, ffn_*_shexp. Multi-token-prediction layers (index >= num_hidden_layers) are
//       skipped. rope.scaling.yarn_log_multiplier is written as the converter does: 0.1 *
//       mscale_all_dim (newer llama.cpp divides it by 0.1 again on load).
//
// Weights: F32/F16/BF16 tensors point straight into the mapped safetensors (no copy) unless a
// transform (permute, split, stack) needs new bytes; FP8 e4m3 weights with a block-scaled
// weight_scale_inv are dequantized to BF16. Norms and biases keep their source type here
// (`moe convert` writes them as f32, as llama.cpp does).
//
// Tokenizer: byte-level BPE from tokenizer.json as tokenizer.ggml.model = "gpt2", the
// pre-tokenizer recognised by its Split regexes (deepseek-v3, deepseek-r1-qwen / qwen2, llama-bpe,
// deepseek-llm, deepseek-coder, gpt-2), tokens padded to config vocab_size with [PAD{i}],
// token types (normal 1, control 3, user-defined 4, unused 5), merges, special ids and
// add_bos/add_eos as gguf-py's SpecialVocab reads them, and tokenizer.chat_template.
#pragma once

#include <memory>
#include <string>

#include "formats/gguf.h"

namespace moe {

// Throws moe::Error naming the directory and the key or tensor at fault: unknown architecture,
// missing or mis-shaped tensors, inconsistent expert counts, bad config values, an unknown
// pre-tokenizer.
std::unique_ptr<GgufFile> open_hf_model(const std::string& dir);

// True when path is a directory holding a config.json (what open_hf_model reads).
bool is_hf_model_dir(const std::string& path);

}  // namespace moe

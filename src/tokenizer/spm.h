// SentencePiece-style tokenizer as llama.cpp runs it for tokenizer.ggml.model = "llama"
// (llm_tokenizer_spm in llama-vocab.cpp): greedy merging of adjacent pieces by vocabulary score,
// with byte fallback (<0xNN> tokens) for what no piece covers. Bit-exact with llama.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace moe {

class SpmTokenizer : public Tokenizer {
 public:
  // Reads the vocabulary from tokenizer.ggml.* metadata. llama.cpp's defaults for this family:
  // BOS 1, EOS 2, UNK 0, add_bos true, add_eos false, add_space_prefix true.
  explicit SpmTokenizer(const GgufFile& file);

  // Special-token texts are split out first (see partition_special); each text fragment that
  // follows the start of the input or a special token gets a leading space when
  // add_space_prefix() (llama.cpp's is_prev_special rule), spaces become U+2581, then pieces
  // are merged by score.
  std::vector<int32_t> encode(std::string_view text, bool parse_special) const override;
  std::string token_to_piece(int32_t id, bool special) const override;

 private:
  // Appends the tokens of one already escaped text fragment.
  void encode_fragment(std::string_view text, std::vector<int32_t>& out) const;
  struct Scratch;  // buffers reused across runs
  // The greedy merge on a run of text that no vocabulary entry crosses into or out of.
  void merge_run(std::string_view text, Scratch& scratch, std::vector<int32_t>& out) const;
  // Appends the token of piece, or its bytes' fallback tokens when it is not in the vocabulary.
  void emit(std::string_view piece, std::vector<int32_t>& out) const;

  std::vector<std::string> pieces_;      // token_to_piece(id, special = true), precomputed
  std::array<int32_t, 256> byte_ids_{};  // byte -> its fallback token, -1 when none
  // ASCII bytes that occur in no vocabulary entry longer than one byte: no merge can involve
  // them, so they cut a fragment into runs that merge independently (same result, smaller heaps).
  std::array<bool, 128> isolated_{};
};

}  // namespace moe

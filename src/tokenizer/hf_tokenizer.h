// Hugging Face tokenizer.json with a byte-level BPE model, encoded exactly as the tokenizers
// library (Rust) does: added tokens are split out first (leftmost-longest; lstrip, rstrip,
// single_word and normalized as the library applies them), the rest is normalized, then
// pre-tokenized (Split / ByteLevel / Digits, possibly in a Sequence) and merged by BPE.
//
// Special tokens. An added token is a control token when tokenizer.json marks it special or
// when it looks like one (<|...|>, <｜...｜>, <pad>, <mask>, <unused...>): the rule llama.cpp's
// convert_hf_to_gguf.py applies, so a GGUF made from the same directory behaves the same.
// encode(parse_special = true) is Hugging Face's encode: every added token is matched.
// encode(parse_special = false) matches only the other added tokens (user-defined ones such as
// Qwen's <think>), as llama.cpp does; the text of control tokens (<｜Assistant｜>,
// <|im_start|>) stays ordinary text, so a user cannot inject them.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"

namespace moe {

class HfBpeTokenizer : public BpeTokenizer {
 public:
  // path: a tokenizer.json, or a directory holding one. tokenizer_config.json beside it, when
  // present, gives bos_token / eos_token / add_bos_token / add_eos_token.
  explicit HfBpeTokenizer(const std::string& path);
  ~HfBpeTokenizer() override;

  std::vector<int32_t> encode(std::string_view text, bool parse_special) const override;
  // Hugging Face's ByteLevel decoder per token: the bytes the characters stand for, or the
  // token's text as is when one of its characters stands for no byte (as "<｜User｜>").
  // Control tokens give "" unless special.
  std::string token_to_piece(int32_t id, bool special) const override;

  struct AddedToken {
    int32_t id = -1;
    std::string content;
    bool special = false;  // as tokenizer.json says
    bool control = false;  // special, or looks special (see above)
    bool lstrip = false;
    bool rstrip = false;
    bool single_word = false;
    bool normalized = false;
  };
  const std::vector<AddedToken>& added_tokens() const { return added_; }

  struct Normalizer;  // one step of the normalizer (tokenizer.json "normalizer")
  class Matcher;      // leftmost-longest matching of added-token contents

 private:
  void load(const std::string& json_path, const std::string& config_path);
  std::string normalize(std::string_view s) const;
  template <class TextFn>
  void split_added(std::string_view s, const Matcher& m, std::vector<int32_t>* out, TextFn&& on_text) const;

  std::vector<AddedToken> added_;
  std::vector<Normalizer> normalizers_;
  // [normalized][parse_special]: the added tokens matched on raw / normalized text, all of
  // them or only the non-control ones.
  std::unique_ptr<Matcher> matchers_[2][2];
};

}  // namespace moe

// Byte-level BPE (GPT-2 style) as used by DeepSeek-V3/R1, Qwen2/2.5/3, Llama-3, GPT-2, DeepSeek
// LLM/Coder and StarCoder: text is split into words by regexes, each word's bytes become one
// character each (GPT-2's byte <-> unicode map) and adjacent symbols are merged by merge rank.
// Bit-exact with llama.cpp (GGUF, tokenizer.ggml.model = "gpt2") and with Hugging Face
// tokenizers (tokenizer.json, see hf_tokenizer.h).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace moe {

class GgufFile;

class BpeTokenizer : public Tokenizer {
 public:
  // llama.cpp's semantics: tokenizer.ggml.{tokens,token_type,merges,pre}. Defaults as llama.cpp:
  // BOS = EOS = 11 unless the file says otherwise, add_bos per pre-tokenizer (llama3: true).
  explicit BpeTokenizer(const GgufFile& file);
  ~BpeTokenizer() override;

  // Input that is not valid UTF-8 is first repaired (each ill-formed sequence -> U+FFFD, see
  // sanitize_utf8). Special tokens are split out as partition_special does (llama.cpp's
  // tokenizer_st_partition): control tokens only with parse_special, user-defined always.
  std::vector<int32_t> encode(std::string_view text, bool parse_special) const override;
  // llama.cpp's token_to_piece: control (and unknown) tokens give their text only with special;
  // user-defined tokens their text; normal tokens their bytes; other types nothing.
  std::string token_to_piece(int32_t id, bool special) const override;

  bool ignore_merges() const { return ignore_merges_; }

 protected:
  BpeTokenizer();

  // How words are turned into symbols and merged.
  struct BpeOptions {
    // Hugging Face rules: a later duplicate merge overrides an earlier one; merges naming text
    // that is no token are an error; a byte whose character is not a token becomes unk_id,
    // fused with unknown neighbours when fuse_unk, or <0xXX> with byte_fallback, or is dropped.
    // llama.cpp rules (false): the first duplicate wins; texts that are no token still merge
    // (by text) and symbols left that are no token are emitted byte by byte.
    bool hf = false;
    bool ignore_merges = false;  // a word that is itself a token skips merging
    int32_t unk_id = -1;
    bool fuse_unk = false;
    bool byte_fallback = false;
  };
  // Builds the merge table. lookup(text) gives the id of a BPE vocabulary entry (byte-level
  // text) or -1; merges are (left, right) texts in rank order. Throws moe::Error (hf rules) on
  // a merge of unknown tokens.
  using TokenLookup = std::function<int32_t(const std::string&)>;
  void init_bpe(const std::vector<std::pair<std::string, std::string>>& merges, const TokenLookup& lookup,
                const BpeOptions& options);
  // Appends the tokens of valid UTF-8 text that holds no special tokens: pre-tokenization, then
  // BPE of each word (memoized per word).
  void encode_plain(std::string_view text, std::vector<int32_t>* out) const;
  // Appends the BPE tokens of one word (raw bytes, not yet byte-level mapped).
  void encode_word(std::string_view word, std::vector<int32_t>* out) const;

  PreTokenizer pre_;
  std::vector<std::string> pieces_;  // what token_to_piece(id, true) returns
  bool ignore_merges_ = false;
  std::vector<uint8_t> is_model_token_;  // ids ignore_merges may emit (hf: the model's vocab)

 private:
  struct MergeTable;
  struct WordCache;
  void merge_word(std::string_view word, std::vector<int32_t>* out) const;
  int32_t model_token(std::string_view byte_level_text) const;

  BpeOptions options_;
  std::array<int32_t, 256> byte_ids_{};  // byte -> id of its character (virtual ids allowed)
  std::unique_ptr<MergeTable> merges_;
  std::unique_ptr<WordCache> cache_;
  // llama.cpp rules only: texts that merges name but the vocabulary lacks get ids from n_vocab()
  // upwards; virtual_texts_[id - n_vocab()] is their byte-level text.
  std::vector<std::string> virtual_texts_;
};

// The byte-level BPE tokenizer of a GGUF file with tokenizer.ggml.model = "gpt2".
std::unique_ptr<Tokenizer> bpe_tokenizer_from_gguf(const GgufFile& file);

// A Hugging Face tokenizer.json (BPE model with a ByteLevel pre-tokenizer), or a model directory
// that holds one (tokenizer_config.json beside it is read for BOS/EOS and add_bos/add_eos).
// Throws moe::Error naming the file and the field on anything unsupported or malformed.
std::unique_ptr<Tokenizer> tokenizer_from_hf(const std::string& path_to_json_or_dir);

}  // namespace moe

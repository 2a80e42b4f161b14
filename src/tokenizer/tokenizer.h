// Text <-> token ids. One interface for every vocabulary family (SentencePiece-style now,
// byte-level BPE next); a model file's metadata picks the implementation.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace moe {

class GgufFile;

// llama.cpp's token attribute types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// llama.cpp's token attribute bits (llama_token_attr): the type from the file plus the fix-ups
// llama.cpp applies at load time (EOG-looking tokens become control, "unused" control tokens get
// kAttrUnused, model-specific strip flags). Encoding and decoding go by these, not by TokenType.
enum TokenAttr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
  kAttrNormalized = 1u << 6,
  kAttrLstrip = 1u << 7,
  kAttrRstrip = 1u << 8,
  kAttrSingleWord = 1u << 9,
};

// Hash for string-keyed maps that can be probed with a std::string_view without a copy.
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using TokenIdMap = std::unordered_map<std::string, int32_t, StringViewHash, std::equal_to<>>;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of text, without BOS/EOS. With parse_special, the text of control and
  // user-defined tokens is matched as those tokens; without, it is ordinary text.
  virtual std::vector<int32_t> encode(std::string_view text, bool parse_special) const = 0;
  // The bytes a token stands for (byte tokens give their byte; SentencePiece's U+2581 a space;
  // control tokens give their text only when special is true, else ""). Throws on a bad id.
  virtual std::string token_to_piece(int32_t id, bool special) const = 0;

  // Ids -> text: concatenated pieces; drops the leading space the encoder added as prefix.
  std::string decode(const std::vector<int32_t>& ids, bool special = false) const;

  int32_t n_vocab() const { return static_cast<int32_t>(tokens_.size()); }
  const std::string& token_text(int32_t id) const;  // the vocabulary entry as stored
  TokenType token_type(int32_t id) const;
  int32_t bos_id() const { return bos_id_; }  // -1 when none
  int32_t eos_id() const { return eos_id_; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  bool add_space_prefix() const { return add_space_prefix_; }
  // True for ids that end generation (EOS, EOT and the like).
  bool is_eog(int32_t id) const;

  int32_t unk_id() const { return unk_id_; }  // -1 when none
  int32_t pad_id() const { return pad_id_; }
  int32_t eot_id() const { return eot_id_; }
  int32_t eom_id() const { return eom_id_; }
  const std::vector<int32_t>& eog_ids() const { return eog_ids_; }  // sorted
  // The id whose vocabulary entry is exactly text, or -1.
  int32_t find_token(std::string_view text) const;
  float token_score(int32_t id) const;
  uint32_t token_attr(int32_t id) const;  // TokenAttr bits

 protected:
  // What a vocabulary family assumes when the file does not say (llama.cpp's per-model defaults).
  struct VocabDefaults {
    int32_t bos_id = -1;
    int32_t eos_id = -1;
    int32_t unk_id = -1;
    bool add_bos = false;
    bool add_eos = false;
    bool add_space_prefix = false;
  };
  // Reads tokenizer.ggml.{tokens,scores,token_type,*_token_id,add_*} and applies llama.cpp's
  // load-time fix-ups (EOG detection, control overrides, special-token cache). Throws moe::Error
  // naming the key on missing, mistyped or inconsistent metadata.
  void load_vocab(const GgufFile& file, const VocabDefaults& defaults);
  // Throws moe::Error unless 0 <= id < n_vocab().
  void check_id(int32_t id) const;

  // A piece of the input after splitting out special-token texts: either a token (token >= 0)
  // or the raw text [offset, offset + length) of the input.
  struct Fragment {
    int32_t token;
    size_t offset;
    size_t length;
  };
  // llama.cpp's tokenizer_st_partition: for each special token (control, user-defined and
  // unknown, longest text first), split every raw-text fragment at its leftmost non-overlapping
  // occurrences. Control and unknown tokens take part only with parse_special; user-defined
  // tokens always do.
  std::vector<Fragment> partition_special(std::string_view text, bool parse_special) const;

  std::vector<float> scores_;
  std::vector<uint32_t> attrs_;          // TokenAttr bits per id
  TokenIdMap token_to_id_;               // vocabulary entry -> id
  std::vector<int32_t> special_tokens_;  // partition order (see partition_special)
  int32_t unk_id_ = -1;
  int32_t pad_id_ = -1;
  int32_t eot_id_ = -1;
  int32_t eom_id_ = -1;
  std::vector<std::string> tokens_;
  std::vector<TokenType> types_;
  std::vector<int32_t> eog_ids_;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  bool add_bos_ = false;
  bool add_eos_ = false;
  bool add_space_prefix_ = false;
};

// Builds the tokenizer described by a GGUF file's tokenizer.ggml.* metadata. Throws moe::Error
// naming the key when the metadata is missing, inconsistent or of an unsupported model.
std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GgufFile& file);

// Incremental decoding for streaming: push ids one at a time, get back only complete UTF-8
// text (never half a character), the leading prefix space dropped as decode() does.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool special = false) : tok_(tok), special_(special) {}
  std::string push(int32_t id);
  std::string flush();  // whatever bytes remain, invalid sequences included
  // Marks that text precedes the first pushed id (e.g. a printed prompt), so its leading space
  // is kept.
  void push_context() { first_ = false; }

 private:
  const Tokenizer& tok_;
  bool special_;
  bool first_ = true;
  std::string pending_;
};

}  // namespace moe

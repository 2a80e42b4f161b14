// Pre-tokenization: splitting text into the words that BPE merges within, with the regexes of
// Hugging Face tokenizers (Split, ByteLevel, Digits pre-tokenizers) or of llama.cpp
// (tokenizer.ggml.pre). Regexes run on PCRE2 in UTF + UCP mode with JIT.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct pcre2_real_code_8;

namespace moe {

// A compiled pattern. Immutable and safe to share between threads (match state is per thread).
class Regex {
 public:
  // Which engine's semantics the pattern was written for. Both treat \s as Unicode White_Space
  // (Oniguruma's and llama.cpp's definition, not PCRE2's, which adds U+180E).
  enum class Dialect {
    kOniguruma,  // Hugging Face tokenizers: ^ and $ also match at line breaks
    kStdRegex,   // llama.cpp (std::regex, ECMAScript): $ only at the end of the subject
  };
  // With unicode16, \p{L}, \p{M}, \p{N}, \p{P}, \p{S} and \p{Z} also match the code points
  // that Unicode 16.0 added to them (Hugging Face's Oniguruma knows Unicode 16.0, this PCRE2
  // only 14.0; see unicode16_additions).
  Regex(std::string_view pattern, Dialect dialect, bool unicode16 = true);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // The leftmost match in subject at or after byte offset start. subject must be valid UTF-8 and
  // is the whole world of the match: look-arounds do not see past its ends, as in Hugging Face
  // (which matches each piece as its own string). Throws moe::Error when PCRE2 gives up.
  bool find(std::string_view subject, size_t start, size_t* match_begin, size_t* match_end) const;
  const std::string& pattern() const { return pattern_; }
  bool widened() const { return widened_; }  // unicode16 changed the compiled pattern

 private:
  std::string pattern_;
  bool widened_ = false;
  pcre2_real_code_8* code_ = nullptr;
  bool jit_ = false;
};

// PCRE2 source for a literal string (Hugging Face's Split with a "String" pattern).
std::string regex_escape(std::string_view literal);

// Hugging Face's SplitDelimiterBehavior.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
// From the tokenizer.json name ("Isolated", ...); throws moe::Error on an unknown name.
SplitBehavior split_behavior_from_name(std::string_view name);

// GPT-2's pattern, which Hugging Face's ByteLevel pre-tokenizer applies when use_regex is set.
extern const char* const kGpt2Pattern;

// A sequence of steps, each applied to every piece the previous steps produced.
class PreTokenizer {
 public:
  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Splits each piece at the matches of pattern (invert: at the non-matches).
  void add_split(std::string_view pattern, Regex::Dialect dialect, SplitBehavior behavior,
                 bool invert = false);
  // Prepends a space to each piece that does not start with one (ByteLevel's add_prefix_space).
  void add_prefix_space();
  bool empty() const { return steps_.empty(); }

  using WordFn = std::function<void(std::string_view)>;
  // Calls fn with each non-empty word of text (valid UTF-8), in order. A word may be a view into
  // a temporary (after add_prefix_space); fn must not keep it.
  void split(std::string_view text, const WordFn& fn) const;
  std::vector<std::string> split(std::string_view text) const;

 private:
  struct Step;
  struct Span;
  void run(size_t step, std::string_view piece, bool wide, std::vector<std::vector<Span>>& scratch,
           const WordFn& fn) const;
  std::vector<std::unique_ptr<Step>> steps_;
};

// What llama.cpp does for a tokenizer.ggml.pre value (llama_vocab::impl::load and
// llm_tokenizer_bpe in llama-vocab.cpp).
struct LlamaPreTokenizer {
  std::vector<std::string> regexes;  // applied in order, each splitting into isolated pieces
  bool ignore_merges = false;        // words that are whole tokens skip BPE
  bool add_bos = false;              // default for tokenizer.ggml.add_bos_token
  bool no_bos = false;               // the family has no BOS (default id 11 does not apply)
};
// Unknown and empty names get llama.cpp's "default" regexes, as llama.cpp does; names whose
// llama.cpp splitter is hand-written code rather than regexes throw moe::Error.
LlamaPreTokenizer llama_pre_tokenizer(std::string_view pre);

}  // namespace moe

// Training a byte-level BPE tokenizer (GPT-2 / DeepSeek-V3 style) and writing it as a Hugging
// Face tokenizer.json that both Hugging Face tokenizers and moe.cpp's HfBpeTokenizer load.
//
// Text is pre-tokenized exactly as DeepSeek-V3's tokenizer.json does (its Split regexes, then
// ByteLevel without regex), after the special tokens are cut out of it (they are matched before
// pre-tokenization when encoding too). Each distinct word is counted; its bytes become GPT-2's
// byte-level symbols; then the most frequent adjacent pair is merged, again and again, with
// incremental pair counts (an index from each pair to the words holding it), until the
// vocabulary has vocab_size entries or the best pair is rarer than min_frequency.
//
// Ids: the special tokens first (0 .. k-1, in the order given), then the 256 byte symbols in
// byte order (k + byte), then one id per new merged text in the order it was learned. Two merges
// that spell the same text share its id, as in Hugging Face's trainer.
//
// Tie-breaking (deterministic): among pairs of equal count, the one whose (left text, right
// text) is smallest, texts compared bytewise as they appear in tokenizer.json, is merged first.
// A pair whose merged text would equal a special token's text is never merged. The result
// depends only on the multiset of words, so the same input always gives a byte-identical file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moe {

struct BpeTrainOptions {
  // Total number of ids: special tokens + 256 byte symbols + merged tokens. At least 256 + k.
  int32_t vocab_size = 0;
  // Texts of the special tokens (non-empty, valid UTF-8, distinct, none equal to a byte
  // symbol's text). They become added_tokens with "special": true.
  std::vector<std::string> specials;
  // Merging stops when the most frequent pair occurs fewer times than this.
  int64_t min_frequency = 2;
  // Threads that pre-tokenize and count (the merge loop is sequential); <= 0: the hardware's
  // (at most 8). The result does not depend on it.
  int threads = 0;
};

// What training learned.
struct BpeModel {
  std::vector<std::string> vocab;  // by id: specials as given, then byte-level texts
  int32_t n_special = 0;
  // In rank order, as byte-level texts ("Ġ" + "t"); left + right is always a vocab entry.
  std::vector<std::pair<std::string, std::string>> merges;
};

struct BpeTrainStats {
  uint64_t bytes = 0;         // input bytes seen (after UTF-8 repair)
  uint64_t words = 0;         // pre-tokenized words counted
  uint64_t unique_words = 0;  // distinct words
  double count_seconds = 0;   // reading and pre-tokenizing
  double merge_seconds = 0;   // the merge loop
};

class BpeTrainer {
 public:
  // Throws moe::Error naming the problem when options are unusable (vocab_size too small for the
  // byte symbols and specials, a bad special token, min_frequency < 1).
  explicit BpeTrainer(BpeTrainOptions options);
  ~BpeTrainer();
  BpeTrainer(const BpeTrainer&) = delete;
  BpeTrainer& operator=(const BpeTrainer&) = delete;

  // Counts the words of one document (any bytes: ill-formed UTF-8 is repaired to U+FFFD as
  // encoding does). Text on either side of a call boundary never forms one word.
  void add_text(std::string_view text);
  // Counts the words of a file, read in blocks (memory stays bounded by the block size and the
  // longest line). The file is one document. Throws moe::Error naming path if it cannot be read.
  void add_file(const std::string& path);

  // Runs the merge loop over everything added so far. May be called more than once.
  BpeModel train() const;
  // Counting and the last train()'s timings.
  const BpeTrainStats& stats() const { return stats_; }

 private:
  struct Impl;

  BpeTrainOptions options_;
  std::unique_ptr<Impl> impl_;
  mutable BpeTrainStats stats_;
};

// DeepSeek-V3's "pre_tokenizer" of tokenizer.json (a Sequence of three Split regexes and a
// ByteLevel step with use_regex false), as JSON text; the trainer splits words with it.
const std::string& deepseek_v3_pre_tokenizer_json();

// The Hugging Face tokenizer.json of a trained model (BPE model, DeepSeek-V3's pre-tokenizer,
// ByteLevel post-processor and decoder, specials as added_tokens), pretty-printed UTF-8.
std::string bpe_tokenizer_json(const BpeModel& model);
// Writes bpe_tokenizer_json(model) to path; throws moe::Error naming path on failure.
void write_bpe_tokenizer_json(const BpeModel& model, const std::string& path);

}  // namespace moe

// The synthetic-arithmetic source: small arithmetic questions and instruction/response pairs
// whose answers are computed here, so they are always right.
#include <algorithm>
#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/data.h"

namespace moe::train {

namespace {

uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct Rng {
  uint64_t state;
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(splitmix64(&state)) * n) >> 64);
  }
  int64_t range(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo + 1)));
  }
};

const char* const kWords[] = {"apple",  "river",  "garden", "pencil", "window", "rabbit", "orange", "castle",
                              "planet", "yellow", "summer", "kitten", "bridge", "forest", "candle", "dragon",
                              "rocket", "silver", "turtle", "basket", "cloud",  "music",  "tiger",  "lemon",
                              "ocean",  "paper",  "stone",  "table",  "water",  "zebra",  "banana", "school"};

const char* const kOnes[] = {"zero",     "one",     "two",     "three",     "four",     "five",    "six",
                             "seven",    "eight",   "nine",    "ten",       "eleven",   "twelve",  "thirteen",
                             "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"};
const char* const kTens[] = {"",      "",      "twenty",  "thirty", "forty",
                             "fifty", "sixty", "seventy", "eighty", "ninety"};

std::string number_words(int64_t n) {
  if (n < 20) return kOnes[n];
  return std::string(kTens[n / 10]) + (n % 10 ? std::string("-") + kOnes[n % 10] : "");
}

std::string synthetic_item(Rng& rng) {
  const std::string word = kWords[rng.below(std::size(kWords))];
  switch (rng.below(10)) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4: {
      const int64_t op = static_cast<int64_t>(rng.below(3));
      const int64_t digits = rng.range(1, 3);
      const int64_t hi = digits == 1 ? 9 : digits == 2 ? 99 : 999;
      const int64_t a = rng.range(0, op == 2 ? 99 : hi), b = rng.range(0, op == 2 ? 12 : hi);
      const int64_t r = op == 0 ? a + b : op == 1 ? a - b : a * b;
      return str_cat("What is ", a, op == 0 ? " + " : op == 1 ? " - " : " * ", b, "? ", r, ".");
    }
    case 5: {
      std::string rev(word.rbegin(), word.rend());
      return str_cat("Instruction: Write the word \"", word, "\" backwards.\nResponse: ", rev);
    }
    case 6: {
      std::vector<int64_t> v(static_cast<size_t>(rng.range(3, 5)));
      for (int64_t& x : v) x = rng.range(0, 99);
      std::string q, a;
      for (size_t i = 0; i < v.size(); ++i) q += (i ? ", " : "") + std::to_string(v[i]);
      std::sort(v.begin(), v.end());
      for (size_t i = 0; i < v.size(); ++i) a += (i ? ", " : "") + std::to_string(v[i]);
      return str_cat("Instruction: Sort these numbers from smallest to largest: ", q, ".\nResponse: ", a);
    }
    case 7:
      return str_cat("Instruction: How many letters are in the word \"", word,
                     "\"?\nResponse: ", word.size());
    case 8: {
      const int64_t a = rng.range(0, 999);
      int64_t b = rng.range(0, 998);
      if (b >= a) ++b;
      return str_cat("Instruction: Which number is larger, ", a, " or ", b, "?\nResponse: ", std::max(a, b));
    }
    default: {
      const int64_t n = rng.range(0, 99);
      return str_cat("Instruction: Write ", n, " in words.\nResponse: ", number_words(n));
    }
  }
}

}  // namespace

std::string synthetic_document(uint64_t seed, int64_t index) {
  uint64_t s = seed;
  Rng rng{splitmix64(&s) ^ (static_cast<uint64_t>(index) * 0xD6E8FEB86659FD93ull)};
  const int64_t n = rng.range(1, 6);
  std::string doc;
  for (int64_t i = 0; i < n; ++i) doc += (i ? "\n" : "") + synthetic_item(rng);
  return doc;
}

}  // namespace moe::train

#include "server/utf8.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace moe::server {
namespace {

std::string to_hex(std::string_view s) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (const char c : s) {
    out += kDigits[static_cast<unsigned char>(c) >> 4];
    out += kDigits[static_cast<unsigned char>(c) & 15];
  }
  return out;
}

std::string from_hex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2)
    out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return out;
}

struct PythonDecode {
  std::string replaced;  // bytes.decode("utf-8", "replace"), encoded back to UTF-8
  bool valid = false;    // bytes.decode("utf-8") succeeds
};

// One python3 process decodes all inputs (hex, one per line), so that the reference costs one start-up.
std::vector<PythonDecode> python_decode(const std::vector<std::string>& inputs) {
  char path[] = "/tmp/moe-utf8-test-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) ADD_FAILURE() << "mkstemp failed";
  std::string lines;
  for (const auto& s : inputs) lines += to_hex(s) + "\n";
  const bool written = write(fd, lines.data(), lines.size()) == static_cast<ssize_t>(lines.size());
  close(fd);
  EXPECT_TRUE(written);
  const std::string script =
      "import sys\n"
      "for line in sys.stdin:\n"
      "    b = bytes.fromhex(line.strip())\n"
      "    try:\n"
      "        b.decode(\"utf-8\")\n"
      "        valid = 1\n"
      "    except UnicodeDecodeError:\n"
      "        valid = 0\n"
      "    print(b.decode(\"utf-8\", \"replace\").encode(\"utf-8\").hex(), valid)\n";
  FILE* p = popen(("python3 -c '" + script + "' < " + path).c_str(), "r");
  std::string out;
  if (p) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int status = pclose(p);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "python3 failed (is python3 installed?)";
  }
  unlink(path);
  std::vector<PythonDecode> results;
  std::istringstream is(out);
  std::string line;
  while (std::getline(is, line)) {
    const size_t space = line.find(' ');
    if (space == std::string::npos) break;
    results.push_back({from_hex(line.substr(0, space)), line.substr(space + 1) == "1"});
  }
  EXPECT_EQ(results.size(), inputs.size()) << "python3 output:\n" << out;
  return results;
}

std::string decode_whole(std::string_view bytes) {
  Utf8Stream s;
  std::string out = s.push(bytes);
  return out + s.finish();
}

// Pushes `bytes` in pieces cut at random points (or byte by byte when every_byte), checking that every piece
// of output is well-formed on its own.
std::string decode_split(std::string_view bytes, std::mt19937& rng, bool every_byte) {
  Utf8Stream s;
  std::string out;
  size_t i = 0;
  while (i < bytes.size()) {
    const size_t n = every_byte ? 1 : std::uniform_int_distribution<size_t>(0, 5)(rng);
    const std::string piece = s.push(bytes.substr(i, std::min(n, bytes.size() - i)));
    EXPECT_TRUE(is_valid_utf8(piece)) << to_hex(bytes);
    out += piece;
    i += n;
  }
  return out + s.finish();
}

std::vector<std::string> tricky_inputs() {
  return {
      "",
      "plain ascii",
      // Well-formed: é, €, 😀, U+10FFFF, U+FFFD itself, just below and just above the surrogates.
      "\xC3\xA9",
      "\xE2\x82\xAC",
      "\xF0\x9F\x98\x80",
      "\xF4\x8F\xBF\xBF",
      "\xEF\xBF\xBD",
      "\xED\x9F\xBF",
      "\xEE\x80\x80",
      // Overlong 2-, 3- and 4-byte forms.
      "\xC0\x80",
      "\xC1\xBF",
      "\xC0\xAF",
      "\xE0\x80\x80",
      "\xE0\x9F\xBF",
      "\xF0\x80\x80\x80",
      "\xF0\x8F\xBF\xBF",
      // Surrogates, alone and as a CESU-8 style pair.
      "\xED\xA0\x80",
      "\xED\xBF\xBF",
      "\xED\xA0\x80\xED\xB0\x80",
      // Above U+10FFFF, the old 5- and 6-byte forms, bytes that never occur.
      "\xF4\x90\x80\x80",
      "\xF5\x80\x80\x80",
      "\xF7\xBF\xBF\xBF",
      "\xF8\x88\x80\x80\x80",
      "\xFC\x84\x80\x80\x80\x80",
      "\xFE",
      "\xFF",
      "\xFE\xFF",
      "a\xFFz",
      // Stray continuation bytes.
      "\x80",
      "\xBF",
      "\x80\x80\x80",
      "a\x80z",
      // Truncated at the end, in the middle, and right after a narrowed second byte.
      "\xC3",
      "\xE2\x82",
      "\xF0\x9F\x98",
      "a\xF0\x9F\x98z",
      "\xE2\x82\x41",
      "\xF0\x9F\x41\xE2\x82\xAC",
      "\xF0\x9F\x98\x80\xF0\x9F\x98",
      "\xE0\xA0",
      "\xF0\x90\x80",
      "\xF4\x8F\xBF",
      // A lead byte followed by a whole character.
      "\xC3\xC3\xA9",
      "\xE2\xE2\x82\xAC",
      "\xF0\xF0\x9F\x98\x80",
      std::string("nul\0inside", 10),
  };
}

TEST(ServerUtf8, TrickyBytesMatchPython) {
  const auto inputs = tricky_inputs();
  const auto reference = python_decode(inputs);
  ASSERT_EQ(reference.size(), inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    Utf8Stream s;
    std::string got = s.push(inputs[i]);
    got += s.finish();
    EXPECT_EQ(to_hex(got), to_hex(reference[i].replaced)) << "input " << to_hex(inputs[i]);
    EXPECT_EQ(is_valid_utf8(inputs[i]), reference[i].valid) << "input " << to_hex(inputs[i]);
    EXPECT_EQ(s.replacements() == 0, reference[i].valid) << "input " << to_hex(inputs[i]);
  }
}

TEST(ServerUtf8, RandomBytesMatchPythonAndIgnoreSplits) {
  std::mt19937 rng(20240607);
  // Bytes drawn mostly from the ranges that matter to a decoder, so that most strings are ill-formed in
  // varied ways; plus valid text cut at random points (the truncation a token boundary makes).
  auto random_byte = [&]() -> char {
    static const unsigned char kEdges[] = {0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1,
                                           0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF};
    switch (std::uniform_int_distribution<int>(0, 5)(rng)) {
      case 0:
        return static_cast<char>(std::uniform_int_distribution<int>(0x20, 0x7E)(rng));
      case 1:
      case 2:
        return static_cast<char>(std::uniform_int_distribution<int>(0x80, 0xBF)(rng));
      case 3:
        return static_cast<char>(std::uniform_int_distribution<int>(0xC0, 0xFF)(rng));
      default:
        return static_cast<char>(kEdges[std::uniform_int_distribution<size_t>(0, 17)(rng)]);
    }
  };
  const std::string valid_text = "héllo wörld € 😀 日本語 \xF4\x8F\xBF\xBF ok";
  std::vector<std::string> inputs;
  for (int i = 0; i < 400; ++i) {
    std::string s;
    const int len = std::uniform_int_distribution<int>(0, 24)(rng);
    for (int k = 0; k < len; ++k) s += random_byte();
    inputs.push_back(s);
  }
  for (int i = 0; i < 100; ++i) {
    const size_t a = std::uniform_int_distribution<size_t>(0, valid_text.size())(rng);
    const size_t b = std::uniform_int_distribution<size_t>(a, valid_text.size())(rng);
    inputs.push_back(valid_text.substr(a, b - a) + (i % 2 ? std::string(1, random_byte()) : ""));
  }
  const auto reference = python_decode(inputs);
  ASSERT_EQ(reference.size(), inputs.size());
  int invalid = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string whole = decode_whole(inputs[i]);
    ASSERT_EQ(to_hex(whole), to_hex(reference[i].replaced)) << "input " << to_hex(inputs[i]);
    ASSERT_EQ(is_valid_utf8(inputs[i]), reference[i].valid) << "input " << to_hex(inputs[i]);
    invalid += !reference[i].valid;
    for (int rep = 0; rep < 4; ++rep)
      ASSERT_EQ(to_hex(decode_split(inputs[i], rng, false)), to_hex(whole)) << "input " << to_hex(inputs[i]);
    ASSERT_EQ(to_hex(decode_split(inputs[i], rng, true)), to_hex(whole)) << "input " << to_hex(inputs[i]);
  }
  // Both kinds must be well represented for the comparison to mean anything.
  EXPECT_GT(invalid, 100);
  EXPECT_GT(static_cast<int>(inputs.size()) - invalid, 50);
}

TEST(ServerUtf8, HoldsIncompleteCharacterUntilItCompletes) {
  Utf8Stream s;
  EXPECT_EQ(s.push("a\xF0\x9F"), "a");
  EXPECT_EQ(s.push("\x98"), "");
  EXPECT_EQ(s.push("\x80!"), "\xF0\x9F\x98\x80!");
  EXPECT_EQ(s.finish(), "");
  EXPECT_EQ(s.replacements(), 0u);
  // A held sequence that the stream ends on is one replacement; the stream is usable again afterwards.
  EXPECT_EQ(s.push("\xE2\x82"), "");
  EXPECT_EQ(s.finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(s.replacements(), 1u);
  EXPECT_EQ(s.push("\xC3\xA9"), "\xC3\xA9");
  EXPECT_EQ(s.finish(), "");
}

TEST(ServerUtf8, ValidityOfWholeStrings) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("日本語 😀"));
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));
  EXPECT_FALSE(is_valid_utf8("\xC0\x80"));
  EXPECT_FALSE(is_valid_utf8("abc\xE2\x82"));
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));
}

}  // namespace
}  // namespace moe::server

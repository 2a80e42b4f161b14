// Request parsing of the completion endpoints: what OpenAI clients send is accepted with the
// documented meaning; anything else is a 400 that names the field. Random mutations of valid
// bodies never escape as anything but ApiError (run under ASan/UBSan).
#include "server/api.h"

#include <gtest/gtest.h>

#include <random>

namespace moe::server {
namespace {

const ApiLimits kLimits{};

// The param an invalid body is refused for ("" when it parses).
std::string refused(Route r, const std::string& body) {
  try {
    parse_request(r, body, kLimits);
    return "";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(e.body().find("invalid_request_error"), std::string::npos);
    return e.param().empty() ? "<body>" : e.param();
  }
}

TEST(ServerApi, ChatRequestAsTheOpenAiClientSendsIt) {
  const CompletionRequest r = parse_request(
      Route::kChat,
      R"({"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi "},{"type":"text","text":"there"}]}],
          "max_completion_tokens":64,"temperature":0,"top_p":0.5,"stop":"\n\n","seed":-3,"n":2,"stream":true,
          "stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":3,"user":"u","frequency_penalty":null})",
      kLimits);
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[1]["content"], "Hi there");
  EXPECT_EQ(r.max_tokens, 64);
  EXPECT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_TRUE(r.temperature_set);
  EXPECT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(r.stop, std::vector<std::string>{"\n\n"});
  EXPECT_EQ(*r.seed, static_cast<uint64_t>(-3));
  EXPECT_EQ(r.n, 2);
  EXPECT_TRUE(r.stream && r.include_usage);
  EXPECT_EQ(r.logprobs, 3);
  EXPECT_FALSE(r.raw_reasoning);
  EXPECT_TRUE(parse_request(Route::kChat,
                            R"({"messages":[{"role":"user","content":"x"}],"reasoning_format":"none"})",
                            kLimits)
                  .raw_reasoning);
}

TEST(ServerApi, GenerateAndCompletions) {
  const CompletionRequest g =
      parse_request(Route::kGenerate, R"({"prompt":"Hello","max_length":200,"top_k":5})", kLimits);
  EXPECT_EQ(g.prompt, "Hello");
  EXPECT_EQ(g.max_tokens, 200);
  EXPECT_EQ(g.sampling.top_k, 5);
  const CompletionRequest c =
      parse_request(Route::kCompletions, R"({"prompt":["one"],"logprobs":2,"max_tokens":3})", kLimits);
  EXPECT_EQ(c.prompt, "one");
  EXPECT_EQ(c.logprobs, 2);
}

TEST(ServerApi, InvalidFieldsAreNamed) {
  const std::string ok_msgs = R"("messages":[{"role":"user","content":"x"}])";
  auto chat = [&](const std::string& extra) { return refused(Route::kChat, "{" + ok_msgs + extra + "}"); };
  EXPECT_EQ(refused(Route::kChat, "{"), "<body>");
  EXPECT_EQ(refused(Route::kChat, "[1,2]"), "<body>");
  EXPECT_EQ(refused(Route::kChat, "{}"), "messages");
  EXPECT_EQ(refused(Route::kChat, R"({"messages":"hi"})"), "messages");
  EXPECT_EQ(refused(Route::kChat, R"({"messages":[]})"), "messages");
  EXPECT_EQ(refused(Route::kChat, R"({"messages":[{"role":"wizard","content":"x"}]})"), "messages[0].role");
  EXPECT_EQ(refused(Route::kChat, R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})"),
            "messages[0].content[0].type");
  EXPECT_EQ(chat(R"(,"max_tokens":"10")"), "max_tokens");
  EXPECT_EQ(chat(R"(,"max_tokens":-1)"), "max_tokens");
  EXPECT_EQ(chat(R"(,"max_tokens":0)"), "max_tokens");
  EXPECT_EQ(chat(R"(,"max_tokens":1e12)"), "max_tokens");
  EXPECT_EQ(chat(R"(,"max_tokens":18446744073709551615)"), "max_tokens");
  EXPECT_EQ(chat(R"(,"max_tokens":4097)"), "max_tokens");
  EXPECT_EQ(chat(R"(,"max_tokens":1.5)"), "max_tokens");
  EXPECT_EQ(chat(R"(,"temperature":"hot")"), "temperature");
  EXPECT_EQ(chat(R"(,"temperature":2.5)"), "temperature");
  EXPECT_EQ(chat(R"(,"top_p":-0.1)"), "top_p");
  EXPECT_EQ(chat(R"(,"stop":[1])"), "stop[0]");
  EXPECT_EQ(chat(R"(,"stop":[""])"), "stop[0]");
  EXPECT_EQ(chat(R"(,"stream":"yes")"), "stream");
  EXPECT_EQ(chat(R"(,"stream_options":{"include_usage":true})"), "stream_options");
  EXPECT_EQ(chat(R"(,"n":9)"), "n");
  EXPECT_EQ(chat(R"(,"top_logprobs":2)"), "top_logprobs");
  EXPECT_EQ(chat(R"(,"logit_bias":{"5":3})"), "logit_bias");
  EXPECT_EQ(chat(R"(,"tools":[])"), "tools");
  EXPECT_EQ(chat(R"(,"frobnicate":1)"), "frobnicate");
  EXPECT_EQ(chat(R"(,"reasoning_format":"xml")"), "reasoning_format");
  EXPECT_EQ(refused(Route::kGenerate, R"({"prompt":5})"), "prompt");
  EXPECT_EQ(refused(Route::kGenerate, R"({"prompt":"x","messages":[]})"), "messages");
  EXPECT_EQ(refused(Route::kCompletions, R"({"prompt":"x","echo":true})"), "echo");
  EXPECT_EQ(refused(Route::kCompletions, R"({"prompt":"x","logprobs":6})"), "logprobs");
  EXPECT_EQ(refused(Route::kChat, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xC3\x28\"}]}"),
            "<body>");  // invalid UTF-8
}

TEST(ServerApi, RandomMutationsOnlyEverGiveApiErrors) {
  const std::string seed_body =
      R"({"model":"m","messages":[{"role":"user","content":"hello"}],"max_tokens":16,"temperature":0.7,"stop":["a","b"],"stream":false,"n":1})";
  std::mt19937 rng(7);
  const std::string alphabet = "{}[]\":,0123456789.-+eE truefalsnul\\u\xC3\xA9\xFF";
  int parsed = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string b = seed_body;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % (b.size() + 1);
      switch (rng() % 3) {
        case 0:
          b.insert(b.begin() + static_cast<long>(at), alphabet[rng() % alphabet.size()]);
          break;
        case 1:
          if (at < b.size()) b.erase(at, 1);
          break;
        default:
          if (at < b.size()) b[at] = alphabet[rng() % alphabet.size()];
          break;
      }
    }
    try {
      parse_request(Route::kChat, b, kLimits);
      ++parsed;
    } catch (const ApiError& e) {
      EXPECT_GE(e.status(), 400);
    }
  }
  EXPECT_GT(parsed, 0);
}

}  // namespace
}  // namespace moe::server

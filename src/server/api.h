// The request side of moe serve's JSON APIs: strict parsing of /generate, /v1/completions and
// /v1/chat/completions bodies into one CompletionRequest, with 400 errors that name the field,
// and the error body OpenAI clients expect.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/sampler.h"

namespace moe::server {

// An HTTP error with the OpenAI error body: {"error": {"message", "type", "param", "code"}}.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string type = {})
      : std::runtime_error(message), status_(status), param_(std::move(param)), type_(std::move(type)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  std::string body() const;

 private:
  int status_;
  std::string param_;
  std::string type_;
};

enum class Route { kGenerate, kCompletions, kChat };

struct CompletionRequest {
  Route route = Route::kChat;
  std::string model;                // empty: the server's default model
  std::string prompt;               // kGenerate, kCompletions
  nlohmann::ordered_json messages;  // kChat: [{role, content: string}], validated
  int64_t max_tokens = -1;          // -1: not given (the server applies its default)
  SamplingParams sampling;          // temperature etc. as given, else the defaults below
  bool temperature_set = false, top_p_set = false;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  int n = 1;
  bool stream = false;
  bool include_usage = false;
  int logprobs = -1;           // -1: none; chat: top_logprobs (0..20); completions: 0..5
  bool echo = false;           // completions: not supported beyond false
  bool raw_reasoning = false;  // "reasoning_format": "none" keeps <think> in content
  bool ignore_eos = false;
};

struct ApiLimits {
  int64_t max_tokens_cap = 4096;     // largest max_tokens a request may ask for
  int64_t default_max_tokens = 256;  // when the request gives none
  int max_n = 8;
  int max_stop = 8;
};

// Parses and validates a request body. Throws ApiError (400) naming the field for invalid JSON,
// a wrong type, an out-of-range value, an unknown field or an unsupported feature.
CompletionRequest parse_request(Route route, const std::string& body, const ApiLimits& limits);

}  // namespace moe::server

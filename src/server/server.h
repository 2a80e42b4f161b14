// `moe serve`: the seed's POST /generate and an OpenAI-compatible API over one or more models,
// each with its own continuous batcher; API keys / JWTs, rate limits, input redaction and output
// moderation on every route; Prometheus metrics; a chat page.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "server/api.h"
#include "server/auth.h"
#include "server/batcher.h"
#include "server/rate_limit.h"

namespace moe::server {

struct ModelSpec {
  std::string id;             // the "model" requests name; default: the file or directory name
  std::string path;           // GGUF file or Hugging Face directory
  std::string chat_template;  // overrides the model's own (Jinja source)
  BatcherOptions batch;
};

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;                // 0: any free port (printed when listening)
  std::vector<ModelSpec> models;  // --model, repeatable
  std::string models_dir;         // --models-dir: every model in a folder (see models_in_dir)
  BatcherOptions batch;           // defaults for every model
  AuthConfig auth;
  std::vector<std::string> public_routes;  // paths served without credentials (e.g. /health)
  RateLimits rate;
  ApiLimits api;
  size_t max_body_bytes = 1 << 20;
  int read_timeout_s = 10;        // per read of a request; and the keep-alive idle time
  int request_deadline_s = 30;    // whole request (headers + body), and keep-alive idle time
  int write_timeout_s = 30;       // a client that stops reading a stream is dropped
  int http_threads = 128;         // connections served at once (each stream holds one)
  std::string filters_file;       // redaction and moderation rules (JSON)
  bool redact_inputs = true;      // the seed's SSN / e-mail redaction
  std::string ssl_cert, ssl_key;  // TLS when both are set
};

// Models of a model repository: each *.gguf file directly in dir (id = file name without
// .gguf), and each subdirectory holding a Hugging Face model or exactly one .gguf (id = the
// directory name). A subdirectory may carry moe-serve.json: {"id", "n_ctx", "max_seqs",
// "kv_budget_mb", "threads", "chat_template_file"}. Throws moe::Error naming the entry at fault.
std::vector<ModelSpec> models_in_dir(const std::string& dir, const BatcherOptions& defaults);

class Server {
 public:
  // Checks the configuration (key files, filter rules, certificates) and starts loading every
  // model in the background; throws moe::Error naming what is wrong.
  explicit Server(ServerConfig cfg);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket; returns the port (useful with port 0). Throws moe::Error.
  int bind();
  // Serves until stop(); call after bind().
  void listen();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moe::server

// `moe serve`: the HTTP server (src/server/server.h) from the command line.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "core/error.h"
#include "server/server.h"

namespace moe::cli {

namespace {

struct ServeArgs {
  std::vector<std::string> models;
  server::ServerConfig cfg;
  int64_t kv_budget_mb = 4096;
};

void run_serve(ServeArgs& a) {
  server::ServerConfig& c = a.cfg;
  c.batch.kv_budget_bytes = a.kv_budget_mb << 20;
  for (const std::string& path : a.models) {
    server::ModelSpec s;
    s.path = path;
    s.batch = c.batch;
    // "name=path" names a model; otherwise the file or folder name without .gguf does.
    if (const size_t eq = path.find('=');
        eq != std::string::npos && eq > 0 && !std::filesystem::exists(path)) {
      s.id = path.substr(0, eq);
      s.path = path.substr(eq + 1);
    } else {
      std::filesystem::path p(path);
      while (p.has_filename() == false && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
      s.id = p.extension() == ".gguf" ? p.stem().string() : p.filename().string();
    }
    MOE_CHECK(std::filesystem::exists(s.path), "--model: '", s.path, "' does not exist");
    c.models.push_back(s);
  }
  // Signals are taken by one thread with sigwait, so stopping the server happens outside a handler.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  server::Server srv(c);
  const int port = srv.bind();
  std::fprintf(stderr, "serve: listening on %s://%s:%d\n", c.ssl_cert.empty() ? "http" : "https",
               c.host.c_str(), port);
  std::fflush(stderr);
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig == 0) return;  // woken by the main thread after a normal stop
    std::fprintf(stderr, "serve: signal %d, stopping\n", sig);
    srv.stop();
    // Workers idling on keep-alive connections finish only at their read timeout; streams in
    // flight get a short grace period, then the process ends.
    std::this_thread::sleep_for(std::chrono::seconds(2));
    std::fflush(stderr);
    std::_Exit(0);
  });
  srv.listen();
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("serve", "Serve models over HTTP: /generate, the OpenAI API, metrics, a chat page");
  auto a = std::make_shared<ServeArgs>();
  server::ServerConfig& c = a->cfg;
  cmd->add_option("-m,--model", a->models, "model (GGUF file or HF folder; NAME=PATH names it); repeatable");
  cmd->add_option("--models-dir", c.models_dir,
                  "serve every model in this folder (one GGUF or HF folder each)");
  cmd->add_option("--host", c.host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", c.port, "port; 0 = any free port")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("-c,--ctx-size", c.batch.n_ctx, "most tokens of one sequence")
      ->capture_default_str()
      ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--max-seqs", c.batch.max_seqs, "sequences decoded together per model")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--max-queue", c.batch.max_queue, "waiting requests per model before 429")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--prefill-chunk", c.batch.prefill_chunk, "prompt tokens per batch step")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--kv-budget-mb", a->kv_budget_mb, "KV cache budget per model (MiB)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("-t,--threads", c.batch.threads, "compute threads per model; 0 = all cores")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--http-threads", c.http_threads, "connections served at once")
      ->capture_default_str()
      ->check(CLI::Range(4, 4096));
  cmd->add_option("--api-key", c.auth.api_keys, "API key granting every scope; repeatable");
  cmd->add_option("--api-key-file", c.auth.api_key_file, "file of API keys: 'KEY [scope,...]' per line");
  cmd->add_option("--jwt-secret", c.auth.jwt_secret, "accept HS256 JWTs signed with this secret");
  cmd->add_option("--jwt-public-key", c.auth.jwt_public_key_file,
                  "accept RS256/ES256 JWTs verified by this PEM key");
  cmd->add_option("--jwt-jwks", c.auth.jwt_jwks_file, "accept RS256/ES256 JWTs verified by this JWKS file");
  cmd->add_option("--jwt-issuer", c.auth.jwt_issuer, "required JWT iss");
  cmd->add_option("--jwt-audience", c.auth.jwt_audience, "required JWT aud");
  cmd->add_option("--public-route", c.public_routes,
                  "path served without credentials (e.g. /health); repeatable");
  cmd->add_option("--rate-requests", c.rate.requests_per_min, "requests per minute per key; 0 = unlimited")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--rate-tokens", c.rate.tokens_per_min, "tokens per minute per key; 0 = unlimited")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-body", c.max_body_bytes, "largest request body (bytes)")->capture_default_str();
  cmd->add_option("--max-tokens", c.api.max_tokens_cap, "largest max_tokens a request may ask for")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--default-max-tokens", c.api.default_max_tokens, "max_tokens when a request gives none")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--timeout", c.read_timeout_s, "seconds a client may take per read")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--request-timeout", c.request_deadline_s,
                  "seconds a client may take to send a whole request, or idle between requests")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--filters", c.filters_file, "redaction and moderation rules (JSON)");
  cmd->add_flag("!--no-redact", c.redact_inputs, "do not redact SSNs and e-mail addresses in prompts");
  cmd->add_option("--ssl-cert", c.ssl_cert, "TLS certificate (PEM)");
  cmd->add_option("--ssl-key", c.ssl_key, "TLS private key (PEM)");
  cmd->callback([a] { run_serve(*a); });
}

}  // namespace moe::cli

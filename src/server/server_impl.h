// Internals of moe serve shared by its translation units (server.cpp: configuration, routes,
// metrics; server_completion.cpp: the completion endpoints).
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runtime/chat.h"
#include "server/conn_watchdog.h"
#include "server/filters.h"
#include "server/metrics.h"
#include "server/server.h"

namespace moe::server {

using json = nlohmann::ordered_json;

inline const std::vector<double> kLatencyBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                    1,     2.5,  5,     10,   30,  60};

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline std::string random_id(const char* prefix) {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard<std::mutex> lock(mu);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return std::string(prefix) + buf;
}

inline std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

inline void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

inline void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  res.set_content(e.body(), "application/json");
}

// One served model: loads in the background; requests see it once ready.
struct ServedModel {
  ModelSpec spec;
  std::atomic<int> state{0};  // 0 loading, 1 ready, 2 failed
  std::string error;
  LoadedModel loaded;
  std::unique_ptr<ChatFormatter> chat;
  std::unique_ptr<Batcher> batcher;
  std::thread loader;
  std::vector<std::vector<int64_t>> experts_reported;  // what /metrics already counted
  std::mutex metrics_mu;
};

struct Server::Impl {
  ServerConfig cfg;
  Authenticator auth;
  RateLimiter limiter;
  std::optional<Redactor> redactor;
  Moderator moderator{ModerationConfig{}};
  Metrics metrics;
  std::vector<std::unique_ptr<ServedModel>> models;
  std::unique_ptr<httplib::Server> http;
  std::unique_ptr<ConnWatchdog> watchdog;
  std::set<std::string> public_routes;
  int port = 0;
  std::atomic<bool> stopping{false};

  explicit Impl(ServerConfig c);
  ~Impl();
  void load(ServedModel& m);
  ServedModel& find_model(const std::string& id);
  void routes();
  httplib::Server::HandlerResponse authorize(const httplib::Request& req, httplib::Response& res);
  void count_request(const std::string& route, int status);
  void handle_completion(Route route, const httplib::Request& req, const std::string& body,
                         httplib::Response& res);
  void handle_tokenize(const std::string& body, httplib::Response& res, bool detokenize);
  std::string render_metrics();
};

}  // namespace moe::server

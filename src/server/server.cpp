#include "server/server.h"

#include <httplib.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "core/error.h"
#include "model/hf_model.h"
#include "runtime/chat.h"
#include "runtime/generator.h"
#include "server/chat_page.h"
#include "server/completion.h"
#include "server/filters.h"
#include "server/metrics.h"
#include "server/server_impl.h"

namespace moe::server {

using json = nlohmann::ordered_json;
namespace fs = std::filesystem;

namespace {

// The R1 family's template; also the fallback for models without one is ChatML.
constexpr const char* kChatMlTemplate =
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% "
    "endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

}  // namespace

Server::Impl::Impl(ServerConfig c)
    : cfg(std::move(c)),
      auth(cfg.auth),
      limiter(cfg.rate),
      public_routes(cfg.public_routes.begin(), cfg.public_routes.end()) {
  FilterConfig fc;
  if (!cfg.filters_file.empty()) fc = load_filter_config(cfg.filters_file);
  std::vector<RedactRule> rules;
  if (cfg.redact_inputs && fc.keep_default_redaction) rules = Redactor::default_rules();
  rules.insert(rules.end(), fc.redact.begin(), fc.redact.end());
  if (!rules.empty()) redactor.emplace(rules);
  moderator = Moderator(fc.moderation);

  if (!cfg.models_dir.empty()) {
    auto more = models_in_dir(cfg.models_dir, cfg.batch);
    cfg.models.insert(cfg.models.end(), more.begin(), more.end());
  }
  MOE_CHECK(!cfg.models.empty(), "serve: no model given (use --model PATH or --models-dir DIR)");
  std::set<std::string> ids;
  for (const ModelSpec& s : cfg.models) {
    MOE_CHECK(ids.insert(s.id).second, "serve: two models are named '", s.id, "'");
    auto m = std::make_unique<ServedModel>();
    m->spec = s;
    models.push_back(std::move(m));
  }
  const bool tls = !cfg.ssl_cert.empty() || !cfg.ssl_key.empty();
  if (tls) {
    MOE_CHECK(!cfg.ssl_cert.empty() && !cfg.ssl_key.empty(),
              "serve: TLS needs both --ssl-cert and --ssl-key");
    for (const std::string& f : {cfg.ssl_cert, cfg.ssl_key})
      MOE_CHECK(std::ifstream(f).good(), "serve: cannot read '", f, "'");
    auto s = std::make_unique<httplib::SSLServer>(cfg.ssl_cert.c_str(), cfg.ssl_key.c_str());
    MOE_CHECK(s->is_valid(), "serve: the certificate '", cfg.ssl_cert, "' or key '", cfg.ssl_key,
              "' is not valid");
    http = std::move(s);
  } else {
    http = std::make_unique<httplib::Server>();
  }
  const int threads = std::max(4, cfg.http_threads);
  http->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http->set_payload_max_length(cfg.max_body_bytes);
  http->set_tcp_nodelay(true);  // SSE chunks and keep-alive replies go out at once, not after a delayed ACK
  http->set_read_timeout(cfg.read_timeout_s, 0);
  http->set_write_timeout(cfg.write_timeout_s, 0);
  http->set_keep_alive_timeout(cfg.read_timeout_s);
  watchdog = std::make_unique<ConnWatchdog>(cfg.request_deadline_s);
  routes();
  for (auto& m : models) {
    ServedModel* p = m.get();
    p->loader = std::thread([this, p] { load(*p); });
  }
}

Server::Impl::~Impl() {
  for (auto& m : models)
    if (m->loader.joinable()) m->loader.join();
}

void Server::Impl::load(ServedModel& m) {
  try {
    m.loaded = load_model(m.spec.path);
    std::string tmpl = m.spec.chat_template;
    if (tmpl.empty() && m.loaded.file->get_string("tokenizer.chat_template", "").empty())
      tmpl = kChatMlTemplate;
    m.chat = std::make_unique<ChatFormatter>(m.loaded, tmpl);
    BatcherOptions bo = m.spec.batch;
    const int64_t train = m.loaded.model->config().n_ctx_train;
    if (train > 0) bo.n_ctx = std::min(bo.n_ctx, train);
    m.batcher = std::make_unique<Batcher>(m.loaded, bo);
    m.state = 1;
    std::fprintf(stderr, "serve: model '%s' ready (%s)\n", m.spec.id.c_str(), m.spec.path.c_str());
  } catch (const std::exception& e) {
    m.error = e.what();
    m.state = 2;
    std::fprintf(stderr, "serve: model '%s' failed to load: %s\n", m.spec.id.c_str(), e.what());
  }
}

ServedModel& Server::Impl::find_model(const std::string& id) {
  ServedModel* m = nullptr;
  if (id.empty()) {
    m = models.front().get();
  } else {
    for (auto& x : models)
      if (x->spec.id == id) m = x.get();
  }
  if (!m) throw ApiError(404, "the model '" + id + "' does not exist", "model", "not_found_error");
  if (m->state == 0)
    throw ApiError(503, "the model '" + m->spec.id + "' is loading", "model", "server_error");
  if (m->state == 2)
    throw ApiError(503, "the model '" + m->spec.id + "' failed to load: " + m->error, "model");
  return *m;
}

void Server::Impl::count_request(const std::string& route, int status) {
  metrics.counter_add("moe_http_requests_total", "HTTP requests by route and status.",
                      {{"route", route}, {"status", std::to_string(status)}});
}

httplib::Server::HandlerResponse Server::Impl::authorize(const httplib::Request& req,
                                                         httplib::Response& res) {
  using HR = httplib::Server::HandlerResponse;
  if (!auth.enabled() || public_routes.count(req.path)) return HR::Unhandled;
  std::string scope = "generate";
  if (req.path == "/v1/models" || req.path.rfind("/v1/models/", 0) == 0) scope = "models";
  if (req.path == "/metrics" || req.path == "/health") scope = "metrics";
  const AuthResult a =
      auth.check(req.get_header_value("Authorization"), req.get_header_value("x-api-key"), scope, unix_now());
  if (a.status == 200) return HR::Unhandled;
  const ApiError e(a.status, a.error);
  if (a.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  send_error(res, e);
  metrics.counter_add("moe_auth_failures_total", "Requests refused by authentication or authorization.",
                      {{"status", std::to_string(a.status)}});
  return HR::Handled;
}

void Server::Impl::routes() {
  httplib::Server& s = *http;
  s.set_pre_routing_handler(
      [this](const httplib::Request& req, httplib::Response& res) { return authorize(req, res); });
  s.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    static const std::set<std::string> kRoutes = {
        "/",           "/generate", "/v1/completions", "/v1/chat/completions", "/v1/models", "/tokenize",
        "/detokenize", "/health",   "/metrics"};
    count_request(kRoutes.count(req.path) ? req.path : "other", res.status);
    watchdog->response_done(req.remote_addr, req.remote_port);
  });
  s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    // A request that could not be parsed or read leaves the stream in an unknown state.
    if (res.status == 400 || res.status == 408 || res.status == 413 || res.status == 414 || res.status == 431)
      res.set_header("Connection", "close");
    if (!res.body.empty()) return;
    const char* what = res.status == 413   ? "the request body is too large"
                       : res.status == 404 ? "no such route"
                       : res.status == 405 ? "method not allowed"
                                           : "bad request";
    send_error(res, ApiError(res.status, what));
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    try {
      std::rethrow_exception(ep);
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const Error& e) {
      send_error(res, ApiError(400, e.what()));
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, std::string("internal error: ") + e.what()));
    }
  });
  // POST bodies are read here, capped at max_body_bytes whatever the framing (httplib checks only
  // Content-Length, not chunked uploads); then the watchdog learns the request is in.
  auto post = [this](
                  const char* path,
                  std::function<void(const httplib::Request&, const std::string&, httplib::Response&)> fn) {
    http->Post(path, [this, fn](const httplib::Request& q, httplib::Response& r,
                                const httplib::ContentReader& reader) {
      std::string body;
      bool too_big = false;
      const bool ok = reader([&](const char* d, size_t n) {
        if (body.size() + n > cfg.max_body_bytes) {
          too_big = true;
          return false;
        }
        body.append(d, n);
        return true;
      });
      // httplib refuses a Content-Length over its limit before calling the receiver.
      too_big = too_big || (!ok && std::strtoull(q.get_header_value("Content-Length").c_str(), nullptr, 10) >
                                       cfg.max_body_bytes);
      if (too_big) {
        r.set_header("Connection", "close");
        throw ApiError(413,
                       "the request body is larger than " + std::to_string(cfg.max_body_bytes) + " bytes");
      }
      if (!ok) {
        r.set_header("Connection", "close");
        throw ApiError(400, "the request body could not be read");
      }
      watchdog->request_read(q.remote_addr, q.remote_port);
      fn(q, body, r);
    });
  };
  post("/generate", [this](const httplib::Request& q, const std::string& b, httplib::Response& r) {
    handle_completion(Route::kGenerate, q, b, r);
  });
  post("/v1/completions", [this](const httplib::Request& q, const std::string& b, httplib::Response& r) {
    handle_completion(Route::kCompletions, q, b, r);
  });
  post("/v1/chat/completions", [this](const httplib::Request& q, const std::string& b, httplib::Response& r) {
    handle_completion(Route::kChat, q, b, r);
  });
  post("/tokenize", [this](const httplib::Request&, const std::string& b, httplib::Response& r) {
    handle_tokenize(b, r, false);
  });
  post("/detokenize", [this](const httplib::Request&, const std::string& b, httplib::Response& r) {
    handle_tokenize(b, r, true);
  });
  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& r) {
    json data = json::array();
    for (auto& m : models) {
      json e = {{"id", m->spec.id}, {"object", "model"}, {"created", 0}, {"owned_by", "moe.cpp"}};
      e["status"] = m->state == 0 ? "loading" : m->state == 1 ? "ready" : "failed";
      data.push_back(e);
    }
    send_json(r, 200, {{"object", "list"}, {"data", data}});
  });
  s.Get("/", [](const httplib::Request&, httplib::Response& r) {
    r.set_header(
        "Content-Security-Policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src data:; base-uri 'none'; form-action 'none'");
    r.set_header("X-Content-Type-Options", "nosniff");
    const std::string_view page = chat_page_html();
    r.set_content(page.data(), page.size(), "text/html; charset=utf-8");
  });
  s.Get("/health", [this](const httplib::Request&, httplib::Response& r) {
    bool loading = false;
    json per = json::object();
    for (auto& m : models) {
      loading |= m->state == 0;
      per[m->spec.id] = m->state == 0 ? "loading" : m->state == 1 ? "ok" : "failed";
    }
    send_json(r, loading ? 503 : 200, {{"status", loading ? "loading" : "ok"}, {"models", per}});
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& r) {
    r.set_content(render_metrics(), "text/plain; version=0.0.4; charset=utf-8");
  });
}

std::string Server::Impl::render_metrics() {
  for (auto& mp : models) {
    ServedModel& m = *mp;
    const json::string_t& id = m.spec.id;
    metrics.gauge_set("moe_model_ready", "1 when the model is loaded and serving.", {{"model", id}},
                      m.state == 1 ? 1 : 0);
    if (m.state != 1) continue;
    const BatcherStats st = m.batcher->stats();
    metrics.gauge_set("moe_queue_depth", "Requests waiting for a batch slot.", {{"model", id}},
                      static_cast<double>(st.queued));
    metrics.gauge_set("moe_active_sequences", "Sequences in the running batch.", {{"model", id}},
                      static_cast<double>(st.active));
    metrics.gauge_set("moe_kv_cache_bytes", "KV cache held by active sequences.", {{"model", id}},
                      static_cast<double>(st.kv_bytes));
    metrics.gauge_set("moe_kv_cache_budget_bytes", "KV cache budget.", {{"model", id}},
                      static_cast<double>(st.kv_budget));
    metrics.gauge_set(
        "moe_kv_cache_usage_ratio", "Fraction of the KV cache budget in use.", {{"model", id}},
        st.kv_budget > 0 ? static_cast<double>(st.kv_bytes) / static_cast<double>(st.kv_budget) : 0.0);
    metrics.gauge_set("moe_batch_steps", "Batched forward passes run.", {{"model", id}},
                      static_cast<double>(st.steps));
    std::lock_guard<std::mutex> lock(m.metrics_mu);
    m.experts_reported.resize(st.expert_counts.size());
    for (size_t l = 0; l < st.expert_counts.size(); ++l) {
      auto& seen = m.experts_reported[l];
      seen.resize(st.expert_counts[l].size());
      for (size_t e = 0; e < seen.size(); ++e) {
        const int64_t d = st.expert_counts[l][e] - seen[e];
        if (st.expert_counts[l].empty()) continue;
        metrics.counter_add("moe_expert_activations_total",
                            "Routed token slots per expert and layer (MoE layers).",
                            {{"model", id}, {"layer", std::to_string(l)}, {"expert", std::to_string(e)}},
                            static_cast<double>(d));
        seen[e] += d;
      }
    }
  }
  return metrics.render();
}

void Server::Impl::handle_tokenize(const std::string& body, httplib::Response& res, bool detokenize) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    throw ApiError(400, std::string("the body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw ApiError(400, "the body must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    static const std::set<std::string> kTok = {"model", "content", "add_special", "parse_special",
                                               "with_pieces"};
    static const std::set<std::string> kDetok = {"model", "tokens"};
    if (!(detokenize ? kDetok : kTok).count(it.key()))
      throw ApiError(400, "'" + it.key() + "': unknown field", it.key());
  }
  std::string model;
  if (j.contains("model")) {
    if (!j["model"].is_string()) throw ApiError(400, "'model': expected a string", "model");
    model = j["model"].get<std::string>();
  }
  ServedModel& m = find_model(model);
  const Tokenizer& tok = *m.loaded.tokenizer;
  if (detokenize) {
    if (!j.contains("tokens") || !j["tokens"].is_array())
      throw ApiError(400, "'tokens': missing or not an array", "tokens");
    std::vector<int32_t> ids;
    for (size_t i = 0; i < j["tokens"].size(); ++i) {
      const json& v = j["tokens"][i];
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= tok.n_vocab())
        throw ApiError(400, "'tokens[" + std::to_string(i) + "]': not a token id of this model", "tokens");
      ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
    }
    send_json(res, 200, {{"content", tok.decode(ids)}});
    return;
  }
  if (!j.contains("content") || !j["content"].is_string())
    throw ApiError(400, "'content': missing or not a string", "content");
  auto flag = [&](const char* k) {
    if (!j.contains(k)) return false;
    if (!j[k].is_boolean()) throw ApiError(400, std::string("'") + k + "': expected a boolean", k);
    return j[k].get<bool>();
  };
  const std::string text = j["content"].get<std::string>();
  std::vector<int32_t> ids = tok.encode(text, flag("parse_special"));
  if (flag("add_special") && tok.add_bos() && tok.bos_id() >= 0) ids.insert(ids.begin(), tok.bos_id());
  json out = json::array();
  const bool pieces = flag("with_pieces");
  for (int32_t id : ids)
    out.push_back(pieces ? json{{"id", id}, {"piece", tok.token_to_piece(id, true)}} : json(id));
  send_json(res, 200, {{"tokens", out}});
}

}  // namespace moe::server

namespace moe::server {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MOE_CHECK(in.good(), "cannot read '", path, "'");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

std::vector<ModelSpec> models_in_dir(const std::string& dir, const BatcherOptions& defaults) {
  std::error_code ec;
  MOE_CHECK(fs::is_directory(dir, ec), "--models-dir: '", dir, "' is not a directory");
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(dir, ec)) entries.push_back(e.path());
  MOE_CHECK(!ec, "--models-dir: cannot list '", dir, "': ", ec.message());
  std::sort(entries.begin(), entries.end());
  std::vector<ModelSpec> out;
  for (const fs::path& p : entries) {
    ModelSpec s;
    s.batch = defaults;
    if (fs::is_regular_file(p) && p.extension() == ".gguf") {
      s.id = p.stem().string();
      s.path = p.string();
      out.push_back(s);
      continue;
    }
    if (!fs::is_directory(p)) continue;
    s.id = p.filename().string();
    if (is_hf_model_dir(p.string())) {
      s.path = p.string();
    } else {
      std::vector<fs::path> ggufs;
      for (const auto& e : fs::directory_iterator(p))
        if (e.path().extension() == ".gguf") ggufs.push_back(e.path());
      if (ggufs.empty()) continue;
      MOE_CHECK(ggufs.size() == 1, p.string(), ": holds ", ggufs.size(),
                " .gguf files; a model folder holds one");
      s.path = ggufs[0].string();
    }
    const fs::path conf = p / "moe-serve.json";
    if (fs::exists(conf)) {
      json j;
      try {
        j = json::parse(read_file(conf.string()));
      } catch (const json::parse_error& e) {
        fail(conf.string(), ": not valid JSON: ", e.what());
      }
      MOE_CHECK(j.is_object(), conf.string(), ": expected a JSON object");
      for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& k = it.key();
        auto num = [&](int64_t lo) {
          MOE_CHECK(it->is_number_integer() && it->get<int64_t>() >= lo, conf.string(), ": '", k,
                    "' must be an integer >= ", lo);
          return it->get<int64_t>();
        };
        if (k == "id") {
          MOE_CHECK(it->is_string() && !it->get<std::string>().empty(), conf.string(),
                    ": 'id' must be a non-empty string");
          s.id = it->get<std::string>();
        } else if (k == "n_ctx") {
          s.batch.n_ctx = num(2);
        } else if (k == "max_seqs") {
          s.batch.max_seqs = num(1);
        } else if (k == "max_queue") {
          s.batch.max_queue = num(0);
        } else if (k == "kv_budget_mb") {
          s.batch.kv_budget_bytes = num(1) << 20;
        } else if (k == "threads") {
          s.batch.threads = static_cast<int>(num(0));
        } else if (k == "chat_template_file") {
          MOE_CHECK(it->is_string(), conf.string(), ": 'chat_template_file' must be a string");
          s.chat_template = read_file((p / it->get<std::string>()).string());
        } else {
          fail(conf.string(), ": unknown key '", k, "'");
        }
      }
    }
    out.push_back(s);
  }
  MOE_CHECK(!out.empty(), "--models-dir: no model (*.gguf, or a folder with one) in '", dir, "'");
  return out;
}

Server::Server(ServerConfig cfg) : impl_(std::make_unique<Impl>(std::move(cfg))) {}
Server::~Server() { stop(); }

int Server::bind() {
  Impl& s = *impl_;
  if (s.cfg.port == 0) {
    s.port = s.http->bind_to_any_port(s.cfg.host);
    MOE_CHECK(s.port > 0, "serve: cannot bind to ", s.cfg.host);
  } else {
    MOE_CHECK(s.http->bind_to_port(s.cfg.host, s.cfg.port), "serve: cannot bind to ", s.cfg.host, ":",
              s.cfg.port, " (in use, or not an address of this machine)");
    s.port = s.cfg.port;
  }
  s.watchdog->set_port(s.port);
  return s.port;
}

void Server::listen() {
  Impl& s = *impl_;
  // cpp-httplib gives up listening on any accept() error but EMFILE; a failed accept must not end
  // the service, so listen again on the same port.
  while (!s.stopping) {
    s.http->listen_after_bind();
    if (s.stopping) break;
    std::fprintf(stderr, "serve: accept failed (%s); listening again\n", std::strerror(errno));
    for (int tries = 0; !s.stopping && !s.http->bind_to_port(s.cfg.host, s.port); ++tries) {
      MOE_CHECK(tries < 50, "serve: cannot bind to ", s.cfg.host, ":", s.port, " again");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

void Server::stop() {
  if (!impl_ || !impl_->http) return;
  impl_->stopping = true;
  impl_->http->stop();
}

}  // namespace moe::server

#include "server/metrics.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"

namespace moe::server {
namespace {

struct CommandResult {
  int exit_code = -1;  // -1: did not exit normally
  std::string output;  // stdout and stderr together
};

// Runs `cmd` through the shell with `input` on its stdin.
CommandResult run_with_stdin(const std::string& cmd, const std::string& input) {
  char path[] = "/tmp/moe-metrics-test-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return {-1, "mkstemp failed"};
  const bool written = write(fd, input.data(), input.size()) == static_cast<ssize_t>(input.size());
  close(fd);
  CommandResult r;
  if (written) {
    FILE* p = popen((cmd + " < " + path + " 2>&1").c_str(), "r");
    if (p) {
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
      const int status = pclose(p);
      r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
  }
  unlink(path);
  return r;
}

bool have_promtool() { return run_with_stdin("command -v promtool", "").exit_code == 0; }

// What a request-serving registry looks like: every type, several samples per family, label values that need
// escaping, values that need the special spellings. Returns its rendering.
std::string busy_registry() {
  Metrics m;
  const std::string req_help = "Requests handled, by endpoint and status.";
  m.counter_add("moe_requests_total", req_help, {{"endpoint", "/v1/chat/completions"}, {"status", "200"}}, 5);
  m.counter_add("moe_requests_total", req_help, {{"endpoint", "/v1/completions"}, {"status", "400"}});
  m.counter_add("moe_generated_tokens_total", "Tokens generated.", {{"model", "qwen \"3\"\nmoe\\a3b"}}, 1234);
  m.counter_add("moe_generated_tokens_total", "Tokens generated.", {{"model", "ünïcødé 模型"}}, 7);
  m.gauge_set("moe_requests_running", "Requests being generated.\nSecond line with a \\ backslash.", {}, 3);
  m.gauge_add("moe_requests_running", "Requests being generated.\nSecond line with a \\ backslash.", {}, -1);
  m.gauge_set("moe_kv_cache_usage_ratio", "KV cache in use.", {{"slot", "0"}}, 0.25);
  m.gauge_set("moe_kv_cache_usage_ratio", "KV cache in use.", {{"slot", "1"}}, std::nan(""));
  m.gauge_set("moe_odd_values", "Values with special spellings.", {{"v", "big"}}, 1e21);
  m.gauge_set("moe_odd_values", "Values with special spellings.", {{"v", "small"}}, 1.5e-7);
  m.gauge_set("moe_odd_values", "Values with special spellings.", {{"v", "inf"}}, INFINITY);
  m.gauge_set("moe_odd_values", "Values with special spellings.", {{"v", "-inf"}}, -INFINITY);
  const std::vector<double> buckets = {0.005, 0.01, 0.1, 1, 10};
  for (double v : {0.001, 0.01, 0.02, 0.5, 3.0, 100.0})
    m.histogram_observe("moe_time_to_first_token_seconds", "Time to first token.", buckets,
                        {{"model", "a\"b"}}, v);
  m.histogram_observe("moe_time_to_first_token_seconds", "Time to first token.", buckets, {{"model", "c"}},
                      0.2);
  m.histogram_observe("moe_request_prompt_tokens", "Prompt length.", {}, {}, 17);
  return m.render();
}

TEST(ServerMetrics, RendersExactText) {
  Metrics m;
  const Labels chat = {{"endpoint", "/v1/chat/completions"}, {"status", "200"}};
  m.counter_add("moe_requests_total", "Requests served.", chat);
  m.counter_add("moe_requests_total", "Requests served.", chat, 2);
  m.counter_add("moe_requests_total", "Requests served.",
                {{"endpoint", "/v1/completions"}, {"status", "400"}});
  m.gauge_set("moe_requests_running", "Requests being generated.", {}, 3);
  m.gauge_add("moe_requests_running", "Requests being generated.", {}, -1);
  // Binary-exact observations so that the sum's text is exact; 0.5 sits on a bound, which "le" includes.
  for (double v : {0.25, 0.5, 0.75, 3.0})
    m.histogram_observe("moe_ttft_seconds", "Time to first token.", {0.1, 0.5, 1}, {{"model", "m"}}, v);
  m.gauge_set("moe_escapes", "Help with a \\ and a\nnewline.", {{"v", "a\\b\"c\nd"}}, 1.5);

  EXPECT_EQ(m.render(),
            "# HELP moe_requests_total Requests served.\n"
            "# TYPE moe_requests_total counter\n"
            "moe_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 3\n"
            "moe_requests_total{endpoint=\"/v1/completions\",status=\"400\"} 1\n"
            "# HELP moe_requests_running Requests being generated.\n"
            "# TYPE moe_requests_running gauge\n"
            "moe_requests_running 2\n"
            "# HELP moe_ttft_seconds Time to first token.\n"
            "# TYPE moe_ttft_seconds histogram\n"
            "moe_ttft_seconds_bucket{model=\"m\",le=\"0.1\"} 0\n"
            "moe_ttft_seconds_bucket{model=\"m\",le=\"0.5\"} 2\n"
            "moe_ttft_seconds_bucket{model=\"m\",le=\"1\"} 3\n"
            "moe_ttft_seconds_bucket{model=\"m\",le=\"+Inf\"} 4\n"
            "moe_ttft_seconds_sum{model=\"m\"} 4.5\n"
            "moe_ttft_seconds_count{model=\"m\"} 4\n"
            "# HELP moe_escapes Help with a \\\\ and a\\nnewline.\n"
            "# TYPE moe_escapes gauge\n"
            "moe_escapes{v=\"a\\\\b\\\"c\\nd\"} 1.5\n");
}

TEST(ServerMetrics, HistogramWithoutLabelsAndSpecialValues) {
  Metrics m;
  m.histogram_observe("h", "H.", {1, 2, INFINITY}, {}, 2);
  m.histogram_observe("h", "H.", {1, 2, INFINITY}, {}, 1e30);
  m.gauge_set("g", "G.", {{"k", "nan"}}, std::nan(""));
  m.gauge_set("g", "G.", {{"k", "inf"}}, -INFINITY);
  m.gauge_set("g", "G.", {{"k", "big"}}, 1e21);
  EXPECT_EQ(m.render(),
            "# HELP h H.\n"
            "# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 0\n"
            "h_bucket{le=\"2\"} 1\n"
            "h_bucket{le=\"+Inf\"} 2\n"
            "h_sum 1e+30\n"
            "h_count 2\n"
            "# HELP g G.\n"
            "# TYPE g gauge\n"
            "g{k=\"nan\"} NaN\n"
            "g{k=\"inf\"} -Inf\n"
            "g{k=\"big\"} 1e+21\n");
}

TEST(ServerMetrics, PromtoolAcceptsRendering) {
  ASSERT_TRUE(have_promtool())
      << "promtool not found: install the Debian package prometheus (a declared test dependency)";
  const std::string text = busy_registry();
  const CommandResult r = run_with_stdin("promtool check metrics", text);
  EXPECT_EQ(r.exit_code, 0) << r.output << "\n--- input ---\n" << text;
  EXPECT_EQ(r.output, "") << text;
}

TEST(ServerMetrics, PromtoolRejectsBrokenEscaping) {
  // The reference must be able to fail: the same rendering with one label value left unescaped.
  ASSERT_TRUE(have_promtool())
      << "promtool not found: install the Debian package prometheus (a declared test dependency)";
  std::string text = busy_registry();
  const std::string escaped = "model=\"a\\\"b\"";
  const size_t at = text.find(escaped);
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, escaped.size(), "model=\"a\"b\"");
  const CommandResult r = run_with_stdin("promtool check metrics", text);
  EXPECT_NE(r.exit_code, 0) << r.output;
}

TEST(ServerMetrics, MisuseThrowsAndLeavesRegistryUnchanged) {
  Metrics m;
  m.counter_add("c_total", "C.", {{"a", "1"}});
  m.histogram_observe("h", "H.", {1, 2}, {}, 1);
  m.gauge_set("y_sum", "Y.", {}, 1);
  const std::string before = m.render();

  auto expect_error = [&](auto&& call, const std::string& needle) {
    try {
      call();
      ADD_FAILURE() << "no error; expected one mentioning " << needle;
    } catch (const moe::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_EQ(m.render(), before) << needle;
  };
  expect_error(
      [&] {
        m.gauge_set("c_total", "C.", {{"a", "1"}}, 1);
      },
      "declared as a counter, used as a gauge");
  expect_error([&] { m.histogram_observe("c_total", "C.", {1}, {}, 1); }, "c_total");
  expect_error([&] { m.counter_add("h", "H.", {}); }, "declared as a histogram");
  expect_error([&] { m.counter_add("c_total", "Other help.", {{"a", "1"}}); }, "help");
  expect_error([&] { m.counter_add("c_total", "C.", {{"a", "1"}}, -1); }, "counters only grow");
  expect_error([&] { m.counter_add("c_total", "C.", {{"a", "1"}}, std::nan("")); }, "counters only grow");
  expect_error([&] { m.counter_add("bad-name", "B.", {}); }, "invalid metric name \"bad-name\"");
  expect_error([&] { m.counter_add("0abc", "B.", {}); }, "invalid metric name");
  expect_error([&] { m.counter_add("", "B.", {}); }, "invalid metric name");
  expect_error([&] { m.counter_add("new_total", "N.", {{"1a", "x"}}); }, "invalid label name \"1a\"");
  expect_error([&] { m.counter_add("new_total", "N.", {{"__name__", "x"}}); }, "reserved");
  expect_error([&] { m.counter_add("new_total", "N.", {{"a", "x"}, {"a", "y"}}); }, "given twice");
  expect_error([&] { m.histogram_observe("h2", "H.", {1}, {{"le", "x"}}, 1); }, "\"le\" is reserved");
  expect_error([&] { m.histogram_observe("h2", "H.", {2, 1}, {}, 1); }, "strictly increasing");
  expect_error([&] { m.histogram_observe("h2", "H.", {1, 1}, {}, 1); }, "strictly increasing");
  expect_error([&] { m.histogram_observe("h2", "H.", {std::nan("")}, {}, 1); }, "not finite");
  expect_error([&] { m.histogram_observe("h", "H.", {1, 3}, {}, 1); }, "buckets different");
  expect_error([&] { m.histogram_observe("h", "H.", {1, 2}, {}, std::nan("")); }, "NaN");
  expect_error([&] { m.gauge_set("h_count", "X.", {}, 1); }, "h_count");
  expect_error([&] { m.counter_add("h_bucket", "X.", {}); }, "h_bucket");
  expect_error([&] { m.histogram_observe("y", "X.", {}, {}, 1); }, "which metric y_sum already renders");
  // An explicit trailing +Inf names the same buckets.
  m.histogram_observe("h", "H.", {1, 2, INFINITY}, {}, 5);
  EXPECT_NE(m.render().find("h_bucket{le=\"+Inf\"} 2\n"), std::string::npos) << m.render();
}

TEST(ServerMetrics, ConcurrentUpdatesAreAllCounted) {
  Metrics m;
  constexpr int kThreads = 4, kPerThread = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&m, t] {
      for (int i = 0; i < kPerThread; ++i) {
        m.counter_add("n_total", "N.", {{"shared", "yes"}});
        m.gauge_add("g", "G.", {}, t % 2 ? 1 : -1);
        m.histogram_observe("h", "H.", {0.5}, {}, i % 2);
        if (i % 500 == 0) (void)m.render();
      }
    });
  for (auto& th : threads) th.join();
  const std::string text = m.render();
  EXPECT_NE(text.find("n_total{shared=\"yes\"} 8000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("g 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("h_bucket{le=\"0.5\"} 4000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("h_bucket{le=\"+Inf\"} 8000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("h_sum 4000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("h_count 8000\n"), std::string::npos) << text;
}

}  // namespace
}  // namespace moe::server

// Tree-walking evaluator of a parsed template, with Jinja2's scoping: a for loop gives every
// iteration its own scope, macros see the scope they were defined in (at call time) plus their
// arguments, `if` opens no scope, and namespace() objects are the way to carry state out of a
// loop. Hostile templates are bounded: nesting depth, total work, output size and the size of
// strings and lists built during rendering all have limits that end rendering with moe::Error.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace moe::jinja {

// Bounds on one render. Real chat templates stay far below them: a 10,000-message conversation
// through Qwen3's template takes about 600,000 steps.
struct Limits {
  int max_depth = 400;                  // nested expressions, statements and macro calls
  size_t max_work = 10'000'000;         // evaluation steps (expressions, statements, iterations)
  size_t max_output_bytes = 64u << 20;  // everything rendered, captured blocks included
  size_t max_string_bytes = 64u << 20;  // one string built by an operation
  size_t max_list_items = 1u << 20;     // one list built by an operation
};

inline constexpr int64_t kMaxRange = 100'000;  // range() length, as in Jinja2's sandbox

// raise_exception(message) from a template: what() is exactly the template's message, so that
// callers can show it to the user unchanged.
class TemplateRaised : public Error {
 public:
  explicit TemplateRaised(const std::string& message) : Error(message) {}
};

struct Scope {
  std::vector<std::pair<std::string, Value>> vars;
  std::shared_ptr<Scope> parent;

  const Value* find(std::string_view name) const;
  void set(std::string_view name, Value v);
};
using ScopePtr = std::shared_ptr<Scope>;

class Evaluator {
 public:
  explicit Evaluator(const Body& program, Limits limits = {}) : program_(program), limits_(limits) {}
  ~Evaluator();
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  // Renders the program with the variables of `context` (a dict). Runtime errors name the line.
  std::string render(const Value& context);

  // Services for filters, tests, methods and globals.
  Value call(const Value& callee, CallArgs& args);
  Value getattr(const Value& obj, const std::string& name);
  Value getitem(const Value& obj, const Value& key);
  Value apply_filter(std::string_view name, const Value& subject, CallArgs& args);
  bool apply_test(std::string_view name, const Value& subject, CallArgs& args);
  Value new_namespace();
  void check_string_size(size_t bytes) const;
  void check_list_size(size_t items) const;
  void count_work(size_t n);
  // Charges the work of building a string of `bytes` (or a list of as many bytes of values), so
  // that quadratic string building in a loop ends at the work limit instead of running for long.
  void charge_bytes(size_t bytes) { count_work(bytes >> 8); }
  int line() const { return line_; }

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  struct DepthGuard;

  Flow exec_body(const Body& body, const ScopePtr& scope, std::string* out);
  Flow exec(const Stmt& s, const ScopePtr& scope, std::string* out);
  Flow exec_for(const Stmt& s, const ScopePtr& scope, std::string* out);
  void exec_call_block(const Stmt& s, const ScopePtr& scope, std::string* out);
  std::string render_body(const Body& body, const ScopePtr& scope);
  void assign(const Target& t, const Value& v, const ScopePtr& scope);
  Value make_macro(const Stmt& s, const ScopePtr& scope);
  Value call_macro(const Stmt& s, const std::weak_ptr<Scope>& def_scope, CallArgs& args);
  void append_output(std::string* out, std::string_view text);

  Value eval(const Expr& e, const ScopePtr& scope);
  Value eval_inner(const Expr& e, const ScopePtr& scope);
  Value eval_call(const Expr& e, const ScopePtr& scope, const Value* caller);
  Value eval_filter(const Expr& e, const ScopePtr& scope, const Value* piped);
  Value eval_item(const Expr& e, const ScopePtr& scope);
  Value eval_compare(const Expr& e, const ScopePtr& scope);
  void eval_args(const Expr& e, size_t first, const ScopePtr& scope, CallArgs* out);
  Value lookup(const std::string& name, const ScopePtr& scope);

  const Body& program_;
  const Limits limits_;
  int depth_ = 0;
  int line_ = 0;
  size_t work_ = 0;
  size_t emitted_ = 0;
  std::vector<std::weak_ptr<Namespace>> namespaces_;
};

}  // namespace moe::jinja

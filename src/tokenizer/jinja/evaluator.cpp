#include "tokenizer/jinja/evaluator.h"

#include <algorithm>
#include <optional>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/text.h"

namespace moe::jinja {

const Value* Scope::find(std::string_view name) const {
  for (const auto& [k, v] : vars)
    if (k == name) return &v;
  return nullptr;
}

void Scope::set(std::string_view name, Value v) {
  for (auto& [k, old] : vars) {
    if (k == name) {
      old = std::move(v);
      return;
    }
  }
  vars.emplace_back(std::string(name), std::move(v));
}

struct Evaluator::DepthGuard {
  explicit DepthGuard(Evaluator* ev) : ev_(ev) {
    if (ev_->depth_ >= ev_->limits_.max_depth)
      fail("template nesting too deep (more than ", ev_->limits_.max_depth, " levels; a recursive macro?)");
    ++ev_->depth_;
  }
  ~DepthGuard() { --ev_->depth_; }
  Evaluator* ev_;
};

namespace {

ScopePtr child_of(const ScopePtr& parent) {
  auto s = std::make_shared<Scope>();
  s->parent = parent;
  return s;
}

}  // namespace

Evaluator::~Evaluator() = default;

std::string Evaluator::render(const Value& context) {
  auto root = std::make_shared<Scope>();
  if (context.is_dict())
    for (const auto& [k, v] : context.dict().items)
      if (k.is_string()) root->set(k.as_string(), v);
  // Runs before `root` is destroyed: empties every namespace so that cycles through them are
  // broken and long chains of namespaces are released one at a time, not recursively.
  struct ReleaseNamespaces {
    ~ReleaseNamespaces() {
      std::vector<NamespacePtr> alive;
      std::vector<DictData> contents;
      for (auto& weak : ev->namespaces_) {
        if (NamespacePtr ns = weak.lock()) {
          contents.push_back(std::move(ns->attrs));
          ns->attrs.items.clear();
          alive.push_back(std::move(ns));
        }
      }
      ev->namespaces_.clear();
      alive.clear();
      while (!contents.empty()) contents.pop_back();
    }
    Evaluator* ev;
  } release{this};
  std::string out;
  try {
    exec_body(program_, root, &out);
  } catch (const TemplateRaised&) {
    throw;
  } catch (const Error& e) {
    fail("chat template error at line ", line_, ": ", e.what());
  }
  return out;
}

void Evaluator::count_work(size_t n) {
  work_ += n;
  if (work_ > limits_.max_work)
    fail("template evaluation exceeds the work limit (", limits_.max_work, " steps)");
}

void Evaluator::check_string_size(size_t bytes) const {
  if (bytes > limits_.max_string_bytes)
    fail("string of ", bytes, " bytes exceeds the limit of ", limits_.max_string_bytes);
}

void Evaluator::check_list_size(size_t items) const {
  if (items > limits_.max_list_items)
    fail("list of ", items, " items exceeds the limit of ", limits_.max_list_items);
}

void Evaluator::append_output(std::string* out, std::string_view text) {
  emitted_ += text.size();
  if (emitted_ > limits_.max_output_bytes)
    fail("template output exceeds ", limits_.max_output_bytes, " bytes");
  out->append(text);
}

Value Evaluator::new_namespace() {
  Value v = Value::make_namespace();
  namespaces_.emplace_back(v.namespace_ptr());
  return v;
}

// ---- statements ----

Evaluator::Flow Evaluator::exec_body(const Body& body, const ScopePtr& scope, std::string* out) {
  for (const StmtPtr& s : body) {
    const Flow f = exec(*s, scope, out);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

std::string Evaluator::render_body(const Body& body, const ScopePtr& scope) {
  std::string buf;
  exec_body(body, child_of(scope), &buf);
  return buf;
}

Evaluator::Flow Evaluator::exec(const Stmt& s, const ScopePtr& scope, std::string* out) {
  count_work(1);
  DepthGuard guard(this);
  line_ = s.line;
  switch (s.kind) {
    case StmtKind::kText:
      append_output(out, s.text);
      return Flow::kNormal;
    case StmtKind::kOutput:
      for (const ExprPtr& e : s.exprs) {
        const Value v = eval(*e, scope);
        if (v.is_string()) {
          append_output(out, v.as_string());
        } else {
          append_output(out, to_str(v));
        }
      }
      return Flow::kNormal;
    case StmtKind::kIf:
      for (const auto& [cond, body] : s.branches)
        if (truthy(eval(*cond, scope))) return exec_body(body, scope, out);
      return exec_body(s.else_body, scope, out);
    case StmtKind::kFor:
      return exec_for(s, scope, out);
    case StmtKind::kSet:
      assign(s.target, eval(*s.expr, scope), scope);
      return Flow::kNormal;
    case StmtKind::kSetBlock: {
      Value v(render_body(s.body, scope));
      if (s.expr) v = eval_filter(*s.expr, scope, &v);
      assign(s.target, v, scope);
      return Flow::kNormal;
    }
    case StmtKind::kMacro:
      scope->set(s.text, make_macro(s, scope));
      return Flow::kNormal;
    case StmtKind::kCallBlock:
      exec_call_block(s, scope, out);
      return Flow::kNormal;
    case StmtKind::kFilterBlock: {
      const Value body(render_body(s.body, scope));
      append_output(out, to_str(eval_filter(*s.expr, scope, &body)));
      return Flow::kNormal;
    }
    case StmtKind::kWith: {
      std::vector<Value> values;
      for (const ExprPtr& e : s.exprs) values.push_back(eval(*e, scope));
      ScopePtr inner = child_of(scope);
      for (size_t i = 0; i < values.size(); ++i) assign(s.targets[i], values[i], inner);
      return exec_body(s.body, inner, out);
    }
    case StmtKind::kBreak:
      return Flow::kBreak;
    case StmtKind::kContinue:
      return Flow::kContinue;
    case StmtKind::kScope:
      return exec_body(s.body, child_of(scope), out);
  }
  return Flow::kNormal;
}

Evaluator::Flow Evaluator::exec_for(const Stmt& s, const ScopePtr& scope, std::string* out) {
  std::vector<Value> items = iterate(eval(*s.expr, scope));
  if (s.cond) {
    // `for x in xs if cond` filters before the loop starts, so loop.length counts kept items.
    std::vector<Value> kept;
    for (Value& item : items) {
      ScopePtr probe = child_of(scope);
      assign(s.target, item, probe);
      if (truthy(eval(*s.cond, probe))) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  const size_t n = items.size();
  if (n == 0) return exec_body(s.else_body, child_of(scope), out);
  // One `loop` object per loop, updated in place each iteration like Jinja2's LoopContext.
  const auto len = static_cast<int64_t>(n);
  auto index = std::make_shared<size_t>(0);
  Value loop = Value::make_dict();
  DictData& info = loop.dict();
  info.items = {{"index", 1},
                {"index0", 0},
                {"revindex", len},
                {"revindex0", len - 1},
                {"first", true},
                {"last", n == 1},
                {"length", len},
                {"depth", 1},
                {"depth0", 0},
                {"previtem", Value::undefined("there is no previous item")},
                {"nextitem", Value::undefined("there is no next item")},
                {"cycle", Value::callable("cycle", [index](CallArgs& a) {
                   if (a.positional.empty()) fail("no items for cycling given");
                   return a.positional[*index % a.positional.size()];
                 })}};
  for (size_t i = 0; i < n; ++i) {
    count_work(1);
    const auto idx = static_cast<int64_t>(i);
    *index = i;
    info.items[0].second = Value(idx + 1);
    info.items[1].second = Value(idx);
    info.items[2].second = Value(len - idx);
    info.items[3].second = Value(len - idx - 1);
    info.items[4].second = Value(i == 0);
    info.items[5].second = Value(i + 1 == n);
    if (i > 0) info.items[9].second = items[i - 1];
    info.items[10].second = i + 1 < n ? items[i + 1] : Value::undefined("there is no next item");
    ScopePtr inner = child_of(scope);  // every iteration starts from a fresh scope, as in Jinja2
    inner->vars.reserve(2);
    assign(s.target, items[i], inner);
    inner->set("loop", loop);
    if (exec_body(s.body, inner, out) == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

void Evaluator::assign(const Target& t, const Value& v, const ScopePtr& scope) {
  if (!t.attr.empty()) {
    const Value ns = lookup(t.name, scope);
    if (ns.kind() != Value::Kind::kNamespace) fail("cannot assign attribute on non-namespace object");
    ns.ns().attrs.set(Value(t.attr), v);
    return;
  }
  if (t.is_tuple) {
    const std::vector<Value> items = iterate(v);
    if (items.size() < t.items.size())
      fail("not enough values to unpack (expected ", t.items.size(), ", got ", items.size(), ")");
    if (items.size() > t.items.size()) fail("too many values to unpack (expected ", t.items.size(), ")");
    for (size_t i = 0; i < items.size(); ++i) assign(t.items[i], items[i], scope);
    return;
  }
  scope->set(t.name, v);
}

Value Evaluator::make_macro(const Stmt& s, const ScopePtr& scope) {
  // The macro refers to its defining scope weakly: the scope holds the macro, so a strong
  // reference would be a cycle. Values never outlive the render, and loop scopes that define
  // macros stay alive while those macros can be called from them.
  std::weak_ptr<Scope> weak = scope;
  const Stmt* stmt = &s;
  return Value::callable(s.text, [this, stmt, weak](CallArgs& a) { return call_macro(*stmt, weak, a); });
}

Value Evaluator::call_macro(const Stmt& s, const std::weak_ptr<Scope>& def_scope, CallArgs& args) {
  const std::string name = s.kind == StmtKind::kMacro ? s.text : "caller";
  ScopePtr defined_in = def_scope.lock();
  if (!defined_in) fail("macro '", name, "' called after the scope that defined it ended");
  DepthGuard guard(this);
  const int saved_line = line_;
  ScopePtr scope = child_of(defined_in);
  const size_t np = s.params.size();
  std::vector<bool> bound(np, false);
  std::vector<Value> varargs;
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < np) {
      scope->set(s.params[i].name, args.positional[i]);
      bound[i] = true;
    } else if (s.uses_varargs) {
      varargs.push_back(args.positional[i]);
    } else {
      fail("macro '", name, "' takes not more than ", np, " argument(s)");
    }
  }
  DictData kwargs;
  Value caller = Value::undefined("No caller defined");
  for (auto& kw : args.keyword) {
    const std::string& key = kw.first;
    const Value& v = kw.second;
    const auto it =
        std::find_if(s.params.begin(), s.params.end(), [&](const Param& p) { return p.name == key; });
    if (it != s.params.end()) {
      const auto j = static_cast<size_t>(it - s.params.begin());
      if (bound[j]) fail("macro '", name, "' got multiple values for argument '", key, "'");
      scope->set(key, v);
      bound[j] = true;
    } else if (key == "caller" && s.uses_caller) {
      caller = v;
    } else if (s.uses_kwargs) {
      kwargs.set(Value(key), v);
    } else {
      fail("macro '", name, "' takes no keyword argument '", key, "'");
    }
  }
  for (size_t j = 0; j < np; ++j) {
    if (bound[j]) continue;
    const Param& p = s.params[j];
    scope->set(p.name, p.default_value ? eval(*p.default_value, scope)
                                       : Value::undefined("parameter '" + p.name + "' was not provided"));
  }
  if (s.uses_varargs) scope->set("varargs", Value::make_list(std::move(varargs), true));
  if (s.uses_kwargs) scope->set("kwargs", Value::make_dict(std::move(kwargs)));
  if (s.uses_caller) scope->set("caller", caller);
  std::string buf;
  exec_body(s.body, scope, &buf);
  line_ = saved_line;
  return Value(std::move(buf));
}

void Evaluator::exec_call_block(const Stmt& s, const ScopePtr& scope, std::string* out) {
  std::weak_ptr<Scope> weak = scope;
  const Stmt* stmt = &s;
  const Value caller =
      Value::callable("caller", [this, stmt, weak](CallArgs& a) { return call_macro(*stmt, weak, a); });
  const Value result = eval_call(*s.expr, scope, &caller);
  append_output(out, to_str(result));
}

// ---- expressions ----

Value Evaluator::lookup(const std::string& name, const ScopePtr& scope) {
  for (const Scope* s = scope.get(); s; s = s->parent.get())
    if (const Value* v = s->find(name)) return *v;
  Value g = global_function(*this, name);
  if (!g.is_undefined()) return g;
  return Value::undefined("'" + name + "' is undefined");
}

Value Evaluator::call(const Value& callee, CallArgs& args) {
  if (callee.kind() == Value::Kind::kCallable) return callee.callable().fn(args);
  if (callee.is_undefined()) fail_undefined(callee);
  fail("'", type_name(callee), "' object is not callable");
}

Value Evaluator::getattr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (obj.kind() == Value::Kind::kNamespace) {
    if (const Value* v = obj.ns().attrs.find(std::string_view(name))) return *v;
    return Value::undefined("'Namespace object' has no attribute '" + name + "'");
  }
  if (!name.empty() && name[0] != '_') {
    switch (method_kind(obj, name)) {
      case MethodKind::kSafe: {
        Value self = obj;
        return Value::callable(name,
                               [this, self, name](CallArgs& a) { return call_method(*this, self, name, a); });
      }
      case MethodKind::kUnsafe:
        return Value::undefined("access to attribute '" + name + "' of '" + type_name(obj) +
                                "' object is unsafe.");
      case MethodKind::kNone:
        break;
    }
    if (obj.is_dict())
      if (const Value* v = obj.dict().find(std::string_view(name))) return *v;
  }
  return Value::undefined("'" + std::string(type_name(obj)) + " object' has no attribute '" + name + "'");
}

Value Evaluator::getitem(const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      fail_undefined(obj);
    case Value::Kind::kDict:
      if (const Value* v = obj.dict().find(key)) return *v;
      break;
    case Value::Kind::kList:
      if (key.is_integral()) {
        const auto& items = obj.list().items;
        int64_t i = key.as_int();
        if (i < 0) i += static_cast<int64_t>(items.size());
        if (i >= 0 && i < static_cast<int64_t>(items.size())) return items[static_cast<size_t>(i)];
        return Value::undefined(std::string(type_name(obj)) + " object has no element " +
                                std::to_string(key.as_int()));
      }
      break;
    case Value::Kind::kString:
      if (key.is_integral()) {
        const auto chars = text::split_code_points(obj.as_string());
        int64_t i = key.as_int();
        if (i < 0) i += static_cast<int64_t>(chars.size());
        if (i >= 0 && i < static_cast<int64_t>(chars.size())) return Value(chars[static_cast<size_t>(i)]);
        return Value::undefined("str object has no element " + std::to_string(key.as_int()));
      }
      break;
    default:
      break;
  }
  if (key.is_string()) return getattr(obj, key.as_string());
  return Value::undefined("'" + std::string(type_name(obj)) + " object' has no attribute " + to_repr(key));
}

Value Evaluator::eval(const Expr& e, const ScopePtr& scope) {
  count_work(1);
  DepthGuard guard(this);
  if (e.line > 0) line_ = e.line;
  return eval_inner(e, scope);
}

void Evaluator::eval_args(const Expr& e, size_t first, const ScopePtr& scope, CallArgs* out) {
  for (size_t i = first; i < e.args.size(); ++i) out->positional.push_back(eval(*e.args[i], scope));
  for (const auto& [k, x] : e.kwargs) out->keyword.emplace_back(k, eval(*x, scope));
}

Value Evaluator::eval_inner(const Expr& e, const ScopePtr& scope) {
  switch (e.kind) {
    case ExprKind::kConst:
      return e.value;
    case ExprKind::kName:
      return lookup(e.name, scope);
    case ExprKind::kList:
    case ExprKind::kTuple: {
      std::vector<Value> items;
      items.reserve(e.args.size());
      for (const ExprPtr& x : e.args) items.push_back(eval(*x, scope));
      return Value::make_list(std::move(items), e.kind == ExprKind::kTuple);
    }
    case ExprKind::kDict: {
      DictData d;
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k = eval(*e.args[i], scope);
        if (k.is_list() && !k.list().is_tuple) fail("unhashable type: 'list'");
        if (k.is_dict()) fail("unhashable type: 'dict'");
        d.set(std::move(k), eval(*e.args[i + 1], scope));
      }
      return Value::make_dict(std::move(d));
    }
    case ExprKind::kAttr:
      return getattr(eval(*e.args[0], scope), e.name);
    case ExprKind::kItem:
      return eval_item(e, scope);
    case ExprKind::kSlice:
      fail("slice outside of a subscript");
    case ExprKind::kCall:
      return eval_call(e, scope, nullptr);
    case ExprKind::kFilter:
      return eval_filter(e, scope, nullptr);
    case ExprKind::kTest: {
      const Value subject = eval(*e.args[0], scope);
      CallArgs args;
      eval_args(e, 1, scope, &args);
      return Value(e.test(*this, subject, args));
    }
    case ExprKind::kNeg:
      return unary_op("-", eval(*e.args[0], scope));
    case ExprKind::kPos:
      return unary_op("+", eval(*e.args[0], scope));
    case ExprKind::kNot:
      return Value(!truthy(eval(*e.args[0], scope)));
    case ExprKind::kAnd: {
      Value a = eval(*e.args[0], scope);
      return truthy(a) ? eval(*e.args[1], scope) : a;
    }
    case ExprKind::kOr: {
      Value a = eval(*e.args[0], scope);
      return truthy(a) ? a : eval(*e.args[1], scope);
    }
    case ExprKind::kBinary: {
      const Value a = eval(*e.args[0], scope);
      const Value b = eval(*e.args[1], scope);
      if (e.name == "neg**") return unary_op("-", binary_op(*this, "**", unary_op("-", a), b));
      return binary_op(*this, e.name, a, b);
    }
    case ExprKind::kConcat: {
      std::string s;
      for (const ExprPtr& x : e.args) {
        s += to_str(eval(*x, scope));
        check_string_size(s.size());
      }
      charge_bytes(s.size());
      return Value(std::move(s));
    }
    case ExprKind::kCompare:
      return eval_compare(e, scope);
    case ExprKind::kCond:
      if (truthy(eval(*e.args[0], scope))) return eval(*e.args[1], scope);
      if (e.args[2]) return eval(*e.args[2], scope);
      return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                              " evaluated to false and no else section was defined.");
  }
  return Value();
}

Value Evaluator::eval_call(const Expr& e, const ScopePtr& scope, const Value* caller) {
  const Expr& callee = *e.args[0];
  if (callee.kind == ExprKind::kAttr) {
    // Method calls go straight to the method, without building a bound-method value.
    const Value obj = eval(*callee.args[0], scope);
    CallArgs args;
    eval_args(e, 1, scope, &args);
    if (caller) args.keyword.emplace_back("caller", *caller);
    if (obj.kind() != Value::Kind::kNamespace && !callee.name.empty() && callee.name[0] != '_' &&
        method_kind(obj, callee.name) == MethodKind::kSafe)
      return call_method(*this, obj, callee.name, args);
    return call(getattr(obj, callee.name), args);
  }
  const Value fn = eval(callee, scope);
  CallArgs args;
  eval_args(e, 1, scope, &args);
  if (caller) args.keyword.emplace_back("caller", *caller);
  return call(fn, args);
}

Value Evaluator::eval_filter(const Expr& e, const ScopePtr& scope, const Value* piped) {
  Value subject;
  if (!e.args[0]) {
    subject = *piped;
  } else if (e.args[0]->kind == ExprKind::kFilter && piped) {
    subject = eval_filter(*e.args[0], scope, piped);
  } else {
    subject = eval(*e.args[0], scope);
  }
  CallArgs args;
  eval_args(e, 1, scope, &args);
  return e.filter(*this, subject, args);
}

Value Evaluator::eval_item(const Expr& e, const ScopePtr& scope) {
  const Value obj = eval(*e.args[0], scope);
  const Expr& key = *e.args[1];
  if (key.kind != ExprKind::kSlice) return getitem(obj, eval(key, scope));
  if (obj.is_undefined()) fail_undefined(obj);
  std::optional<int64_t> bounds[3];
  for (int i = 0; i < 3; ++i) {
    if (!key.args[i]) continue;
    const Value v = eval(*key.args[i], scope);
    if (v.is_none()) continue;
    // Jinja2 turns the TypeError of a non-integer index into an undefined value.
    if (!v.is_integral()) return Value::undefined("slice indices must be integers or None");
    bounds[i] = v.as_int();
  }
  std::vector<Value> seq;
  if (obj.is_list()) {
    seq = obj.list().items;
  } else if (obj.is_string()) {
    seq = iterate(obj);
  } else {
    return Value::undefined(std::string(type_name(obj)) + " object is not subscriptable with a slice");
  }
  const int64_t n = static_cast<int64_t>(seq.size());
  const int64_t step = bounds[2].value_or(1);
  if (step == 0) fail("slice step cannot be zero");
  const int64_t lower = step > 0 ? 0 : -1;
  const int64_t upper = step > 0 ? n : n - 1;
  auto adjust = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t x = *v < 0 ? *v + n : *v;
    return std::clamp(x, lower, upper);
  };
  const int64_t start = adjust(bounds[0], step > 0 ? lower : upper);
  const int64_t stop = adjust(bounds[1], step > 0 ? upper : lower);
  std::vector<Value> picked;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
    picked.push_back(seq[static_cast<size_t>(i)]);
  if (obj.is_string()) {
    std::string s;
    for (const Value& c : picked) s += c.as_string();
    return Value(std::move(s));
  }
  return Value::make_list(std::move(picked), obj.list().is_tuple);
}

Value Evaluator::eval_compare(const Expr& e, const ScopePtr& scope) {
  Value left = eval(*e.args[0], scope);
  for (size_t i = 0; i < e.ops.size(); ++i) {
    Value right = eval(*e.args[i + 1], scope);
    const std::string& op = e.ops[i];
    bool ok;
    if (op == "==") {
      ok = equals(left, right);
    } else if (op == "!=") {
      ok = !equals(left, right);
    } else if (op == "in") {
      ok = contains(right, left);
    } else if (op == "notin") {
      ok = !contains(right, left);
    } else {
      const int c = compare(left, right, op);
      ok = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
    }
    if (!ok) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

Value Evaluator::apply_filter(std::string_view name, const Value& subject, CallArgs& args) {
  const FilterFn f = find_filter(name);
  if (!f) fail("No filter named '", name, "'.");
  return f(*this, subject, args);
}

bool Evaluator::apply_test(std::string_view name, const Value& subject, CallArgs& args) {
  const TestFn t = find_test(name);
  if (!t) fail("No test named '", name, "'.");
  return t(*this, subject, args);
}

}  // namespace moe::jinja

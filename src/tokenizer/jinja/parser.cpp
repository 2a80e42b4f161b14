#include "tokenizer/jinja/parser.h"

#include <algorithm>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "tokenizer/jinja/builtins.h"

namespace moe::jinja {
namespace {

using Names = std::initializer_list<std::string_view>;

bool in_names(std::string_view s, Names names) {
  return std::find(names.begin(), names.end(), s) != names.end();
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  Body parse_template() { return subparse({}); }

 private:
  struct DepthGuard {
    explicit DepthGuard(Parser* p) : p_(p) {
      if (++p_->depth_ > kMaxParseDepth) p_->error(p_->cur(), "template nested too deeply");
    }
    ~DepthGuard() { --p_->depth_; }
    Parser* p_;
  };

  // Each iteration of a left-associative loop (a + b + c, x.y.z, x|f|g) makes the tree one level
  // deeper, so it counts towards the nesting limit for as long as the loop runs.
  struct LoopDepth {
    explicit LoopDepth(Parser* p) : p_(p) {}
    void step() {
      ++n_;
      if (++p_->depth_ > kMaxParseDepth) p_->error(p_->cur(), "template nested too deeply");
    }
    ~LoopDepth() { p_->depth_ -= n_; }
    Parser* p_;
    int n_ = 0;
  };

  struct MacroFrame {
    bool varargs = false;
    bool kwargs = false;
    bool caller = false;
  };

  const Token& cur() const { return toks_[pos_]; }
  const Token& peek() const { return toks_[std::min(pos_ + 1, toks_.size() - 1)]; }
  const Token& next() {
    const Token& t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }
  bool is_op(std::string_view op) const { return cur().kind == TokenKind::kOp && cur().text == op; }
  bool is_name(std::string_view n) const { return cur().kind == TokenKind::kName && cur().text == n; }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(std::string_view n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }

  [[noreturn]] void error(const Token& t, const std::string& message) const {
    syntax_error(t.line, t.col, message);
  }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::kName:
      case TokenKind::kOp:
        return t.text;
      case TokenKind::kString:
        return "string";
      case TokenKind::kInt:
        return "integer";
      case TokenKind::kFloat:
        return "float";
      case TokenKind::kText:
        return "template data / text";
      case TokenKind::kVarBegin:
        return "begin of print statement";
      case TokenKind::kVarEnd:
        return "end of print statement";
      case TokenKind::kBlockBegin:
        return "begin of statement block";
      case TokenKind::kBlockEnd:
        return "end of statement block";
      case TokenKind::kEof:
        return "end of template";
    }
    return "token";
  }

  void expect_op(std::string_view op) {
    if (!skip_op(op))
      error(cur(), "unexpected '" + describe(cur()) + "', expected '" + std::string(op) + "'");
  }
  void expect_name(std::string_view n) {
    if (!skip_name(n))
      error(cur(), "unexpected '" + describe(cur()) + "', expected '" + std::string(n) + "'");
  }
  std::string expect_any_name() {
    if (cur().kind != TokenKind::kName) error(cur(), "unexpected '" + describe(cur()) + "', expected name");
    return next().text;
  }
  void expect_kind(TokenKind k, const char* what) {
    if (cur().kind != k) error(cur(), "unexpected '" + describe(cur()) + "', expected '" + what + "'");
    next();
  }

  ExprPtr node(ExprKind k, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = at.line;
    e->col = at.col;
    return e;
  }
  StmtPtr stmt(StmtKind k, const Token& at) {
    auto s = std::make_unique<Stmt>();
    s->kind = k;
    s->line = at.line;
    s->col = at.col;
    return s;
  }

  // ---- statements ----

  Body subparse(Names end_tokens) {
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.kind == TokenKind::kText) {
        auto s = stmt(StmtKind::kText, t);
        s->text = next().text;
        body.push_back(std::move(s));
      } else if (t.kind == TokenKind::kVarBegin) {
        auto s = stmt(StmtKind::kOutput, next());
        s->exprs.push_back(parse_tuple(true, {}, false));
        expect_kind(TokenKind::kVarEnd, "end of print statement");
        body.push_back(std::move(s));
      } else if (t.kind == TokenKind::kBlockBegin) {
        next();
        if (end_tokens.size() && cur().kind == TokenKind::kName && in_names(cur().text, end_tokens))
          return body;
        body.push_back(parse_statement(end_tokens));
        expect_kind(TokenKind::kBlockEnd, "end of statement block");
      } else if (t.kind == TokenKind::kEof) {
        return body;
      } else {
        error(t, "unexpected '" + describe(t) + "'");
      }
    }
  }

  static std::string tag_list(Names names) {
    std::string s;
    size_t i = 0;
    for (std::string_view n : names) {
      if (i++) s += " or ";
      s += "'" + std::string(n) + "'";
    }
    return s;
  }

  Body parse_statements(Names end_tokens, bool drop_needle) {
    DepthGuard guard(this);
    skip_op(":");
    expect_kind(TokenKind::kBlockEnd, "end of statement block");
    Body body = subparse(end_tokens);
    if (cur().kind == TokenKind::kEof) {
      std::string msg =
          "Unexpected end of template. Jinja was looking for the following tags: " + tag_list(end_tokens) +
          ".";
      if (!tag_stack_.empty())
        msg += " The innermost block that needs to be closed is '" + tag_stack_.back() + "'.";
      error(cur(), msg);
    }
    if (drop_needle) next();
    return body;
  }

  StmtPtr parse_statement(Names end_tokens) {
    const Token& t = cur();
    if (t.kind != TokenKind::kName) error(t, "tag name expected");
    const std::string tag = t.text;
    static const Names kBlockTags = {"for", "if", "set", "macro", "call", "filter", "with", "generation"};
    if (in_names(tag, kBlockTags)) tag_stack_.push_back(tag);
    StmtPtr s;
    if (tag == "for")
      s = parse_for();
    else if (tag == "if")
      s = parse_if();
    else if (tag == "set")
      s = parse_set();
    else if (tag == "macro" || tag == "call")
      s = parse_macro_or_call(tag == "call");
    else if (tag == "filter")
      s = parse_filter_block();
    else if (tag == "with")
      s = parse_with();
    else if (tag == "print")
      s = parse_print();
    else if (tag == "generation")
      s = parse_scope("endgeneration");
    else if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) error(t, "'" + tag + "' outside of a loop");
      s = stmt(tag == "break" ? StmtKind::kBreak : StmtKind::kContinue, next());
    } else if (in_names(tag, {"block", "extends", "include", "import", "from", "autoescape"})) {
      error(t, "tag '" + tag + "' is not supported in chat templates");
    } else {
      std::string msg = "Encountered unknown tag '" + tag + "'.";
      if (end_tokens.size())
        msg += " Jinja was looking for the following tags: " + tag_list(end_tokens) + ".";
      error(t, msg);
    }
    if (in_names(tag, kBlockTags)) tag_stack_.pop_back();
    return s;
  }

  StmtPtr parse_for() {
    auto s = stmt(StmtKind::kFor, next());
    s->target = parse_target_tuple({"in"}, false);
    expect_name("in");
    s->expr = parse_tuple(false, {"recursive"}, false);
    if (skip_name("if")) s->cond = parse_expression(true);
    if (is_name("recursive")) error(cur(), "recursive loops are not supported");
    ++loop_depth_;
    s->body = parse_statements({"endfor", "else"}, false);
    --loop_depth_;
    if (next().text == "else") s->else_body = parse_statements({"endfor"}, true);
    return s;
  }

  StmtPtr parse_if() {
    auto s = stmt(StmtKind::kIf, next());
    while (true) {
      ExprPtr cond = parse_tuple(false, {}, false);
      Body body = parse_statements({"elif", "else", "endif"}, false);
      s->branches.emplace_back(std::move(cond), std::move(body));
      const Token& t = next();
      if (t.text == "elif") continue;
      if (t.text == "else") s->else_body = parse_statements({"endif"}, true);
      return s;
    }
  }

  StmtPtr parse_set() {
    auto s = stmt(StmtKind::kSet, next());
    s->target = parse_target_tuple({}, true);
    if (skip_op("=")) {
      s->expr = parse_tuple(true, {}, false);
      return s;
    }
    s->kind = StmtKind::kSetBlock;
    if (is_op("|")) s->expr = parse_filter(nullptr, false);
    s->body = parse_statements({"endset"}, true);
    return s;
  }

  std::vector<Param> parse_signature() {
    std::vector<Param> params;
    expect_op("(");
    while (!is_op(")")) {
      if (!params.empty()) expect_op(",");
      Param p;
      p.name = expect_any_name();
      if (skip_op("=")) {
        p.default_value = parse_expression(true);
      } else if (!params.empty() && params.back().default_value) {
        error(cur(), "non-default argument follows default argument");
      }
      params.push_back(std::move(p));
    }
    expect_op(")");
    return params;
  }

  StmtPtr parse_macro_or_call(bool is_call) {
    auto s = stmt(is_call ? StmtKind::kCallBlock : StmtKind::kMacro, next());
    if (is_call) {
      if (is_op("(")) s->params = parse_signature();
      const Token& at = cur();
      s->expr = parse_expression(true);
      if (s->expr->kind != ExprKind::kCall) error(at, "expected call");
    } else {
      s->text = expect_any_name();
      s->params = parse_signature();
    }
    macro_frames_.emplace_back();
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_statements({is_call ? "endcall" : "endmacro"}, true);
    loop_depth_ = saved_loops;
    s->uses_varargs = macro_frames_.back().varargs;
    s->uses_kwargs = macro_frames_.back().kwargs;
    s->uses_caller = macro_frames_.back().caller;
    macro_frames_.pop_back();
    return s;
  }

  StmtPtr parse_filter_block() {
    auto s = stmt(StmtKind::kFilterBlock, next());
    s->expr = parse_filter(nullptr, true);
    s->body = parse_statements({"endfilter"}, true);
    return s;
  }

  StmtPtr parse_with() {
    auto s = stmt(StmtKind::kWith, next());
    while (cur().kind != TokenKind::kBlockEnd) {
      if (!s->targets.empty()) expect_op(",");
      s->targets.push_back(parse_target_tuple({}, false));
      expect_op("=");
      s->exprs.push_back(parse_expression(true));
    }
    s->body = parse_statements({"endwith"}, true);
    return s;
  }

  StmtPtr parse_print() {
    auto s = stmt(StmtKind::kOutput, next());
    while (cur().kind != TokenKind::kBlockEnd) {
      if (!s->exprs.empty()) expect_op(",");
      s->exprs.push_back(parse_expression(true));
    }
    return s;
  }

  StmtPtr parse_scope(std::string_view end) {
    auto s = stmt(StmtKind::kScope, next());
    s->body = parse_statements({end}, true);
    return s;
  }

  // ---- assignment targets ----

  bool is_tuple_end(Names extra_end) const {
    if (cur().kind == TokenKind::kVarEnd || cur().kind == TokenKind::kBlockEnd || is_op(")")) return true;
    return cur().kind == TokenKind::kName && in_names(cur().text, extra_end);
  }

  Target parse_target_tuple(Names extra_end, bool with_namespace) {
    std::vector<Target> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      items.push_back(parse_target_primary(with_namespace));
      if (!is_op(",")) break;
      is_tuple = true;
    }
    if (!is_tuple) {
      if (items.empty()) error(cur(), "Expected an expression, got '" + describe(cur()) + "'");
      return std::move(items[0]);
    }
    Target t;
    t.is_tuple = true;
    t.items = std::move(items);
    return t;
  }

  Target parse_target_primary(bool with_namespace) {
    const Token& t = cur();
    if (t.kind == TokenKind::kName) {
      if (in_names(t.text, {"true", "false", "True", "False", "none", "None"}))
        error(t, "can't assign to 'const'");
      Target target;
      target.name = next().text;
      if (with_namespace && skip_op(".")) target.attr = expect_any_name();
      return target;
    }
    if (skip_op("(")) {
      Target inner = parse_target_tuple({}, false);
      expect_op(")");
      return inner;
    }
    error(t, "can't assign to '" + describe(t) + "'");
  }

  // ---- expressions ----

  ExprPtr parse_tuple(bool with_condexpr, Names extra_end, bool explicit_parens) {
    const Token& at = cur();
    std::vector<ExprPtr> args;
    bool is_tuple = false;
    while (true) {
      if (!args.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      args.push_back(parse_expression(with_condexpr));
      if (!is_op(",")) break;
      is_tuple = true;
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parens) error(cur(), "Expected an expression, got '" + describe(cur()) + "'");
    }
    auto e = node(ExprKind::kTuple, at);
    e->args = std::move(args);
    return e;
  }

  ExprPtr parse_expression(bool with_condexpr) {
    DepthGuard guard(this);
    if (!with_condexpr) return parse_or();
    ExprPtr expr1 = parse_or();
    while (is_name("if")) {
      auto e = node(ExprKind::kCond, next());
      ExprPtr cond = parse_or();
      ExprPtr else_expr = skip_name("else") ? parse_expression(true) : nullptr;
      e->args.push_back(std::move(cond));
      e->args.push_back(std::move(expr1));
      e->args.push_back(std::move(else_expr));
      expr1 = std::move(e);
    }
    return expr1;
  }

  ExprPtr binary(ExprKind k, const Token& at, ExprPtr a, ExprPtr b, std::string op = {}) {
    auto e = node(k, at);
    e->name = std::move(op);
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    LoopDepth deep(this);
    while (is_name("or")) {
      deep.step();
      const Token& at = next();
      left = binary(ExprKind::kOr, at, std::move(left), parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    LoopDepth deep(this);
    while (is_name("and")) {
      deep.step();
      const Token& at = next();
      left = binary(ExprKind::kAnd, at, std::move(left), parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(this);
      auto e = node(ExprKind::kNot, next());
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token& at = cur();
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().kind == TokenKind::kOp && in_names(cur().text, {"==", "!=", "<", "<=", ">", ">="})) {
        op = next().text;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && peek().kind == TokenKind::kName && peek().text == "in") {
        next();
        next();
        op = "notin";
      } else {
        break;
      }
      if (!cmp) {
        cmp = node(ExprKind::kCompare, at);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    LoopDepth deep(this);
    while (is_op("+") || is_op("-")) {
      deep.step();
      const Token& at = next();
      left = binary(ExprKind::kBinary, at, std::move(left), parse_concat(), at.text);
    }
    return left;
  }

  ExprPtr parse_concat() {
    const Token& at = cur();
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    auto e = node(ExprKind::kConcat, at);
    e->args.push_back(std::move(first));
    while (skip_op("~")) e->args.push_back(parse_math2());
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    LoopDepth deep(this);
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      deep.step();
      const Token& at = next();
      left = binary(ExprKind::kBinary, at, std::move(left), parse_pow(), at.text);
    }
    return left;
  }

  // The number a constant operand folds to (a literal under any number of unary signs).
  static std::optional<double> folded_number(const Expr& e) {
    if (e.kind == ExprKind::kConst) {
      if (!e.value.is_number()) return std::nullopt;
      return e.value.as_double();
    }
    if ((e.kind == ExprKind::kNeg || e.kind == ExprKind::kPos) && e.args[0]) {
      const auto inner = folded_number(*e.args[0]);
      if (!inner) return std::nullopt;
      return e.kind == ExprKind::kNeg ? -*inner : *inner;
    }
    return std::nullopt;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    LoopDepth deep(this);
    while (is_op("**")) {
      deep.step();
      const Token& at = next();
      ExprPtr right = parse_unary(true);
      // Jinja2 folds `-3` to the constant -3 and writes `-3 ** x` into the Python code it
      // generates, which Python reads as -(3 ** x). A negative constant base with a
      // non-constant exponent therefore negates after the power ("neg**").
      const auto base = folded_number(*left);
      const bool quirk = base && *base < 0 && !folded_number(*right);
      left = binary(ExprKind::kBinary, at, std::move(left), std::move(right), quirk ? "neg**" : "**");
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(this);
    ExprPtr n;
    if (is_op("-") || is_op("+")) {
      n = node(is_op("-") ? ExprKind::kNeg : ExprKind::kPos, cur());
      next();
      n->args.push_back(parse_unary(false));
    } else {
      n = parse_primary();
    }
    n = parse_postfix(std::move(n));
    if (with_filter) n = parse_filter_expr(std::move(n));
    return n;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    switch (t.kind) {
      case TokenKind::kName: {
        next();
        auto e = node(ExprKind::kConst, t);
        if (t.text == "true" || t.text == "True") {
          e->value = Value(true);
        } else if (t.text == "false" || t.text == "False") {
          e->value = Value(false);
        } else if (t.text == "none" || t.text == "None") {
          e->value = Value::none();
        } else {
          e->kind = ExprKind::kName;
          e->name = t.text;
          if (!macro_frames_.empty()) {
            if (t.text == "varargs") macro_frames_.back().varargs = true;
            if (t.text == "kwargs") macro_frames_.back().kwargs = true;
            if (t.text == "caller") macro_frames_.back().caller = true;
          }
        }
        return e;
      }
      case TokenKind::kString: {
        auto e = node(ExprKind::kConst, t);
        std::string s;
        while (cur().kind == TokenKind::kString) s += next().text;
        e->value = Value(std::move(s));
        return e;
      }
      case TokenKind::kInt:
      case TokenKind::kFloat: {
        auto e = node(ExprKind::kConst, t);
        e->value = t.kind == TokenKind::kInt ? Value(t.int_value) : Value(t.float_value);
        next();
        return e;
      }
      case TokenKind::kOp:
        if (t.text == "(") {
          next();
          ExprPtr e = parse_tuple(true, {}, true);
          expect_op(")");
          return e;
        }
        if (t.text == "[") return parse_list();
        if (t.text == "{") return parse_dict();
        break;
      default:
        break;
    }
    error(t, "unexpected '" + describe(t) + "'");
  }

  ExprPtr parse_list() {
    auto e = node(ExprKind::kList, next());
    while (!is_op("]")) {
      if (!e->args.empty()) expect_op(",");
      if (is_op("]")) break;
      e->args.push_back(parse_expression(true));
    }
    expect_op("]");
    return e;
  }

  ExprPtr parse_dict() {
    auto e = node(ExprKind::kDict, next());
    while (!is_op("}")) {
      if (!e->args.empty()) expect_op(",");
      if (is_op("}")) break;
      e->args.push_back(parse_expression(true));
      expect_op(":");
      e->args.push_back(parse_expression(true));
    }
    expect_op("}");
    return e;
  }

  ExprPtr parse_postfix(ExprPtr n) {
    LoopDepth deep(this);
    while (true) {
      deep.step();
      if (is_op(".") || is_op("[")) {
        n = parse_subscript(std::move(n));
      } else if (is_op("(")) {
        n = parse_call(std::move(n));
      } else {
        return n;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr n) {
    LoopDepth deep(this);
    while (true) {
      deep.step();
      if (is_op("|")) {
        n = parse_filter(std::move(n), false);
      } else if (is_name("is")) {
        n = parse_test(std::move(n));
      } else if (is_op("(")) {
        n = parse_call(std::move(n));
      } else {
        return n;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj) {
    const Token& at = next();
    if (at.text == ".") {
      const Token& attr = next();
      if (attr.kind == TokenKind::kName) {
        auto e = node(ExprKind::kAttr, at);
        e->name = attr.text;
        e->args.push_back(std::move(obj));
        return e;
      }
      if (attr.kind != TokenKind::kInt) error(attr, "expected name or number");
      auto key = node(ExprKind::kConst, attr);
      key->value = Value(attr.int_value);
      auto e = node(ExprKind::kItem, at);
      e->args.push_back(std::move(obj));
      e->args.push_back(std::move(key));
      return e;
    }
    std::vector<ExprPtr> keys;
    while (!is_op("]")) {
      if (!keys.empty()) expect_op(",");
      keys.push_back(parse_subscribed());
    }
    expect_op("]");
    auto e = node(ExprKind::kItem, at);
    e->args.push_back(std::move(obj));
    if (keys.size() == 1) {
      e->args.push_back(std::move(keys[0]));
    } else {
      auto tuple = node(ExprKind::kTuple, at);
      tuple->args = std::move(keys);
      e->args.push_back(std::move(tuple));
    }
    return e;
  }

  ExprPtr parse_subscribed() {
    const Token& at = cur();
    ExprPtr start;
    if (!is_op(":")) {
      start = parse_expression(true);
      if (!is_op(":")) return start;
    }
    next();  // ':'
    auto slice = node(ExprKind::kSlice, at);
    slice->args.push_back(std::move(start));
    auto ends = [&] { return is_op("]") || is_op(","); };
    slice->args.push_back(is_op(":") || ends() ? nullptr : parse_expression(true));
    if (skip_op(":")) {
      slice->args.push_back(ends() ? nullptr : parse_expression(true));
    } else {
      slice->args.push_back(nullptr);
    }
    return slice;
  }

  void parse_call_args(Expr* e) {
    const Token& at = cur();
    expect_op("(");
    bool require_comma = false;
    while (!is_op(")")) {
      if (require_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*") || is_op("**")) error(cur(), "*args and **kwargs in calls are not supported");
      if (cur().kind == TokenKind::kName && peek().kind == TokenKind::kOp && peek().text == "=") {
        std::string key = next().text;
        next();
        e->kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!e->kwargs.empty()) error(at, "invalid syntax for function call expression");
        e->args.push_back(parse_expression(true));
      }
      require_comma = true;
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = node(ExprKind::kCall, cur());
    e->args.push_back(std::move(callee));
    parse_call_args(e.get());
    return e;
  }

  std::string parse_dotted_name() {
    std::string name = expect_any_name();
    while (skip_op(".")) name += "." + expect_any_name();
    return name;
  }

  ExprPtr parse_filter(ExprPtr subject, bool start_inline) {
    LoopDepth deep(this);
    while (is_op("|") || start_inline) {
      deep.step();
      if (!start_inline) next();
      start_inline = false;
      const Token& at = cur();
      auto e = node(ExprKind::kFilter, at);
      e->name = parse_dotted_name();
      e->filter = find_filter(e->name);
      if (!e->filter) error(at, "No filter named '" + e->name + "'.");
      e->args.push_back(std::move(subject));
      if (is_op("(")) parse_call_args(e.get());
      subject = std::move(e);
    }
    return subject;
  }

  ExprPtr parse_test(ExprPtr subject) {
    const Token& at = next();  // 'is'
    const bool negated = skip_name("not");
    const Token& name_tok = cur();
    auto e = node(ExprKind::kTest, at);
    e->name = parse_dotted_name();
    e->test = find_test(e->name);
    if (!e->test) error(name_tok, "No test named '" + e->name + "'.");
    e->args.push_back(std::move(subject));
    const Token& t = cur();
    const bool arg_start = t.kind == TokenKind::kName || t.kind == TokenKind::kString ||
                           t.kind == TokenKind::kInt || t.kind == TokenKind::kFloat ||
                           (t.kind == TokenKind::kOp && (t.text == "[" || t.text == "{"));
    if (is_op("(")) {
      parse_call_args(e.get());
    } else if (arg_start && !(t.kind == TokenKind::kName && in_names(t.text, {"else", "or", "and"}))) {
      if (is_name("is")) error(t, "You cannot chain multiple tests with is");
      e->args.push_back(parse_postfix(parse_primary()));
    }
    if (!negated) return e;
    auto n = node(ExprKind::kNot, at);
    n->args.push_back(std::move(e));
    return n;
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<std::string> tag_stack_;
  std::vector<MacroFrame> macro_frames_;
};

}  // namespace

Body parse(std::vector<Token> tokens) { return Parser(std::move(tokens)).parse_template(); }

}  // namespace moe::jinja

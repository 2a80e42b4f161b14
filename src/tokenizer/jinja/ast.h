// Syntax tree of a parsed template. Mirrors jinja2/nodes.py for the subset chat templates use.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace moe::jinja {

class Evaluator;
struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

// Filters and tests are resolved while parsing: an unknown name is a syntax error, as Jinja2
// reports it when compiling the template.
using FilterFn = Value (*)(Evaluator& ev, const Value& subject, CallArgs& args);
using TestFn = bool (*)(Evaluator& ev, const Value& subject, CallArgs& args);

enum class ExprKind : uint8_t {
  kConst,    // value
  kName,     // name
  kList,     // args
  kTuple,    // args
  kDict,     // args: key, value, key, value, ...
  kAttr,     // args[0].name
  kItem,     // args[0][args[1]]
  kSlice,    // args: start, stop, step (each may be null); only as the key of kItem
  kCall,     // args[0](args[1:], kwargs)
  kFilter,   // args[0] | name(args[1:], kwargs); args[0] is null inside {% filter %} / {% set %} blocks
  kTest,     // args[0] is name(args[1:], kwargs)
  kNeg,      // -args[0]
  kPos,      // +args[0]
  kNot,      // not args[0]
  kAnd,      // args[0] and args[1]
  kOr,       // args[0] or args[1]
  kBinary,   // args[0] name args[1], name one of + - * / // % **
  kConcat,   // args joined with ~
  kCompare,  // args[0] ops[0] args[1] ops[1] args[2] ... (chained like Python)
  kCond,     // args[1] if args[0] else args[2] (args[2] may be null)
};

struct Expr {
  ExprKind kind = ExprKind::kConst;
  int line = 0;
  int col = 0;
  Value value;
  std::string name;
  std::vector<std::string> ops;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  FilterFn filter = nullptr;
  TestFn test = nullptr;
};

// Left-hand side of set/for/with: a name, a namespace attribute (name.attr) or a tuple.
struct Target {
  std::string name;
  std::string attr;  // non-empty: assignment to namespace attribute name.attr
  bool is_tuple = false;
  std::vector<Target> items;
};

struct Param {
  std::string name;
  ExprPtr default_value;  // null: none given
};

enum class StmtKind : uint8_t {
  kText,         // text
  kOutput,       // exprs printed in order
  kIf,           // branches (if and elifs), else_body
  kFor,          // target in expr [if cond]: body, else_body
  kSet,          // target = expr
  kSetBlock,     // target = rendered body, through expr (filter chain) when set
  kMacro,        // text = name, params, body
  kCallBlock,    // expr = the call; params, body = caller()
  kFilterBlock,  // expr = filter chain applied to the rendered body
  kWith,         // targets = exprs, body in a new scope
  kBreak,
  kContinue,
  kScope,  // body in a new scope ({% generation %} of transformers' AssistantTracker)
};

struct Stmt {
  StmtKind kind = StmtKind::kText;
  int line = 0;
  int col = 0;
  std::string text;
  std::vector<ExprPtr> exprs;
  ExprPtr expr;
  ExprPtr cond;
  Target target;
  std::vector<Target> targets;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
  std::vector<Param> params;
  // Whether a macro (or call block) body refers to these names; Jinja2 decides from this
  // whether extra positional / keyword arguments are accepted.
  bool uses_varargs = false;
  bool uses_kwargs = false;
  bool uses_caller = false;
};

}  // namespace moe::jinja

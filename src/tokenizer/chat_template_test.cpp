#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "testdata.h"
#include "tokenizer/jinja/evaluator.h"
#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/parser.h"

namespace moe {
namespace {

using Json = nlohmann::ordered_json;

std::string render(const std::string& source, const Json& ctx = Json::object()) {
  return ChatTemplate(source).render(ctx);
}

// The message of the moe::Error that rendering (or parsing) throws; "" when none is thrown.
std::string error_of(const std::string& source, const Json& ctx = Json::object()) {
  try {
    render(source, ctx);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Renders through the interpreter directly, with the given limits.
std::string error_with_limits(const std::string& source, const jinja::Limits& limits) {
  try {
    const jinja::Body body = jinja::parse(jinja::tokenize(source));
    jinja::Evaluator ev(body, limits);
    ev.render(jinja::Value::make_dict());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// ---- reference renderings (scripts/chat-template-refs.mjs, @huggingface/jinja, cross-checked
// with Python Jinja2) ----

TEST(ChatTemplateReference, MatchesHuggingFaceRenderingExactly) {
  const std::filesystem::path dir = std::filesystem::path(MOE_SOURCE_DIR) / "tests/data/chat_templates";
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 8u) << "reference files missing in " << dir;
  size_t checked = 0;
  for (const auto& file : files) {
    const Json doc = Json::parse(test::read_file(file.string()));
    const std::string template_file = doc["template_file"].get<std::string>();
    const std::string bos = doc["bos_token"].get<std::string>();
    const std::string eos = doc["eos_token"].get<std::string>();
    std::string source;
    if (template_file.size() > 5 && template_file.substr(template_file.size() - 5) == ".json") {
      const TokenizerConfigTemplate cfg = read_tokenizer_config(test::testdata(template_file));
      EXPECT_EQ(cfg.bos_token, bos) << template_file;
      EXPECT_EQ(cfg.eos_token, eos) << template_file;
      source = cfg.chat_template;
    } else {
      source = test::read_file(test::testdata(template_file));
    }
    const ChatTemplate tpl(source);
    for (const Json& c : doc["cases"]) {
      SCOPED_TRACE(file.filename().string() + " / " + c["name"].get<std::string>());
      const std::string expected = c["expected"].get<std::string>();
      std::string got;
      ASSERT_NO_THROW(got = render_chat(tpl, c["messages"], c["add_generation_prompt"].get<bool>(), bos, eos,
                                        c["extra"]));
      if (got != expected) {
        size_t at = 0;
        while (at < got.size() && at < expected.size() && got[at] == expected[at]) ++at;
        ADD_FAILURE() << "first difference at byte " << at << "\n--- expected ---\n"
                      << expected << "\n--- got ---\n"
                      << got;
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 130u);
}

// ---- expressions and printing ----

TEST(Jinja, ArithmeticAndPrecedenceFollowJinja2) {
  EXPECT_EQ(render("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }}"),
            "7 9 3 -4 2 1024");
  EXPECT_EQ(render("{{ 3 / 2 }} {{ 4 / 2 }} {{ 2 ** -1 }} {{ 7.5 // 2 }} {{ -2 ** 2 }}"),
            "1.5 2.0 0.5 3.0 4");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none ~ true ~ 1.0 }} {{ 'x' * 3 }} {{ [1] + [2] }}"),
            "a1NoneTrue1.0 xxx [1, 2]");
  EXPECT_EQ(render("{{ not 1 == 2 }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ true == 1 }}"),
            "True True False True True");
  EXPECT_EQ(render("{{ true and 'x' }}|{{ false or 'y' }}|{{ 0 or '' }}|{{ none and 1 }}"), "x|y||None");
  EXPECT_EQ(render("{{ 'a' in 'cab' }} {{ 1 in [1] }} {{ 'k' in {'k': 1} }} {{ 2 not in [1] }}"),
            "True True True True");
  EXPECT_EQ(render("{{ 'y' if true else 'z' }}|{{ 'x' if false }}|{{ 1 if 0 else 2 if 0 else 3 }}"), "y||3");
  EXPECT_NE(error_of("{{ 2 ~ 3 + 4 }}").find("can only concatenate str"),
            std::string::npos);  // + binds looser than ~
  EXPECT_NE(error_of("{{ 1 / 0 }}").find("division by zero"), std::string::npos);
}

TEST(Jinja, PrintsValuesLikePython) {
  EXPECT_EQ(render("{{ x }}|{{ [1, 'a', None, True, 1.5, \"it's\"] }}|{{ {'a': 1} }}|{{ (1,) }}",
                   Json{{"x", nullptr}}),
            "None|[1, 'a', None, True, 1.5, \"it's\"]|{'a': 1}|(1,)");
  EXPECT_EQ(render("{{ 1e20 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ -0.0 }}"),
            "1e+20 0.30000000000000004 1e+16 1000000000000000.0 0.0001 1e-05 -0.0");
  EXPECT_EQ(render("{{ ['a\\nb', 'q\"'] }}"), "['a\\nb', 'q\"']");
  EXPECT_EQ(render("{{ 'a\\tb\\x41\\u00e9\\'\\q' }}"), "a\tbAé'\\q");
  EXPECT_EQ(render("{{ x }}", Json{{"x", Json::parse("1.25")}}), "1.25");
}

TEST(Jinja, StringMethodsAndSlicing) {
  EXPECT_EQ(render("{{ 'a,b,,c'.split(',', 1) }} {{ ' a  b '.split() }} {{ 'xxhixx'.strip('x') }}"),
            "['a', 'b,,c'] ['a', 'b'] hi");
  EXPECT_EQ(render("{{ 'abc'.startswith(('x', 'a')) }} {{ 'abc'.endswith('bc') }} {{ 'héc'.find('c') }}"),
            "True True 2");
  EXPECT_EQ(
      render(
          "{{ 'hello world'.title() }} {{ 'Hi'.upper() }} {{ 'ÀÉ'.lower() }} {{ 'a-b'.replace('-', '+') }}"),
      "Hello World HI àé a+b");
  EXPECT_EQ(
      render("{{ [1,2,3][1:] }} {{ [1,2,3][-1] }} {{ [1,2,3][::2] }} {{ [1,2,3][::-1] }} {{ 'héllo'[1:3] }}"),
      "[2, 3] 3 [1, 3] [3, 2, 1] él");
  EXPECT_EQ(render("{{ '{} {name}'.format(1, name='n') }} {{ '%s-%05.1f' % ('a', 2.25) }}"), "1 n a-002.2");
  const std::string think = "<think>\nreasoning\n</think>\n\nanswer";
  EXPECT_EQ(render("{{ c.split('</think>')[-1].lstrip('\\n') }}", Json{{"c", think}}), "answer");
}

TEST(Jinja, DictsAndUndefined) {
  const Json ctx = {{"m", {{"role", "user"}}}};
  EXPECT_EQ(
      render("{{ m.role }}|{{ m['role'] }}|{{ m.content }}|{{ m.content is defined }}|{{ m.get('x', 5) }}",
             ctx),
      "user|user||False|5");
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"), "a=1;b=2;");
  EXPECT_EQ(render("{{ u }}|{{ u|length }}|{{ u is defined }}|{{ u is undefined }}|{{ 'x' if u else 'y' "
                   "}}|{{ u ~ 'z' }}"),
            "|0|False|True|y|z");
  // Attribute access on an undefined value is an error, as with Jinja2's default Undefined.
  EXPECT_NE(error_of("{{ u.x }}").find("'u' is undefined"), std::string::npos);
  EXPECT_NE(error_of("{{ m.content.x }}", ctx).find("has no attribute 'content'"), std::string::npos);
  EXPECT_NE(error_of("{{ u + 1 }}").find("'u' is undefined"), std::string::npos);
}

// ---- filters and tests ----

TEST(Jinja, Filters) {
  EXPECT_EQ(
      render(
          "{{ ' x '|trim }}|{{ 'abc'|upper }}|{{ 'ABC'|lower }}|{{ 'hELLO'|capitalize }}|{{ 'a b'|title }}"),
      "x|ABC|abc|Hello|A B");
  EXPECT_EQ(render("{{ [1,2,3]|length }} {{ 'héllo'|count }} {{ [1,2]|first }} {{ [1,2]|last }} {{ "
                   "[1,2]|join('-') }}"),
            "3 5 1 2 1-2");
  EXPECT_EQ(render("{{ u|default('d') }} {{ none|default('d') }} {{ ''|default('d', true) }} {{ 3|string }}"),
            "d None d 3");
  EXPECT_EQ(render("{{ '3'|int + 1 }} {{ 'x'|int }} {{ 3.7|int }} {{ '2.5'|float }} {{ -3|abs }} {{ "
                   "2.5|round }} {{ 3.14159|round(2) }}"),
            "4 0 3 2.5 3 2.0 3.14");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2}|items|list }} {{ {'b': 1, 'a': 2}|dictsort }} {{ 'abc'|list }}"),
            "[('b', 1), ('a', 2)] [('a', 2), ('b', 1)] ['a', 'b', 'c']");
  EXPECT_EQ(
      render(
          "{{ ['b', 'A', 'a']|sort }} {{ [3, 1, 2]|sort(reverse=true) }} {{ ['b', 'A', 'a']|unique|list }}"),
      "['A', 'a', 'b'] [3, 2, 1] ['b', 'A']");
  EXPECT_EQ(render("{{ [1, 2, 3]|reverse|list }} {{ 'abc'|reverse }} {{ [1, 2, 3]|sum }} {{ [1, 5, 3]|max }} "
                   "{{ [4, 2]|min }}"),
            "[3, 2, 1] cba 6 5 2");
  const Json ctx = {
      {"ms", Json::parse(R"([{"role": "system", "n": 1}, {"role": "user", "n": 2}, {"role": "user"}])")}};
  EXPECT_EQ(render("{{ ms|selectattr('role', 'equalto', 'user')|list|length }} {{ ms|rejectattr('n')|list }} "
                   "{{ ms|map(attribute='n')|list }} {{ ms|map(attribute='n', default=0)|sum }} "
                   "{{ ms|selectattr('n', 'defined')|selectattr('n', '>', 1)|first }}",
                   ctx),
            "2 [{'role': 'user'}] [1, 2, Undefined] 3 {'role': 'user', 'n': 2}");
  EXPECT_EQ(render("{{ ['a', 'b']|map('upper')|join }} {{ [1, 2, 3]|select('odd')|list }} {{ 'Hello "
                   "World'|replace('o', '0') }}"),
            "AB [1, 3] Hell0 W0rld");
  EXPECT_EQ(render("{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'x'|indent(2, true) }}|{{ '<a>'|e }}|{{ '<a>'|safe }}"),
            "a\n  b\n\n  c|  x|&lt;a&gt;|<a>");
}

TEST(Jinja, TojsonIsTransformersJsonDumps) {
  const Json ctx = {{"x", Json::parse(R"({"a": "é\n\"", "b": [1, 2.0, null, true], "c": {}})")}};
  EXPECT_EQ(render("{{ x|tojson }}", ctx), R"({"a": "é\n\"", "b": [1, 2.0, null, true], "c": {}})");
  EXPECT_EQ(render("{{ x.b|tojson(indent=2) }}", ctx), "[\n  1,\n  2.0,\n  null,\n  true\n]");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2}|tojson(sort_keys=true, separators=(',', ':')) }}"),
            R"({"a":2,"b":1})");
  EXPECT_EQ(render("{{ 'é😀'|tojson(ensure_ascii=true) }}"), R"("\u00e9\ud83d\ude00")");
  // map() returns a list (as in llama.cpp's and @huggingface/jinja's renderers), so this works;
  // Python Jinja2 would fail here because its map() is a generator.
  const Json tools = {{"tools", Json::parse(R"([{"function": {"name": "f"}}])")}};
  EXPECT_EQ(render("{{ tools|map(attribute='function')|tojson }}", tools), R"([{"name": "f"}])");
  EXPECT_NE(error_of("{{ u|tojson }}").find("not JSON serializable"), std::string::npos);
}

TEST(Jinja, Tests) {
  EXPECT_EQ(
      render(
          "{{ x is none }} {{ x is not none }} {{ 1 is number }} {{ true is number }} {{ true is integer }} "
          "{{ 'a' is string }} {{ {} is mapping }} {{ [] is iterable }} {{ 'a' is sequence }}",
          Json{{"x", nullptr}}),
      "True False True True False True True True True");
  EXPECT_EQ(
      render("{{ true is true }} {{ 1 is true }} {{ false is false }} {{ true is boolean }} {{ 5 is odd }} "
             "{{ 9 is divisibleby 3 }} {{ 1 is equalto 1 }} {{ 2 is eq(3) }} {{ 'a' is in 'abc' }}"),
      "True False True True True True True False True");
  EXPECT_EQ(render("{{ f is defined }} {{ f is callable }} {{ 'ab' is lower }}", Json{{"f", 1}}),
            "True False True");
}

// ---- whitespace control and the transformers environment ----

TEST(Jinja, WhitespaceControlTrimAndLstripBlocks) {
  EXPECT_EQ(render("  {% if true %}\n  x\n  {% endif %}\n  y\n"), "  x\n  y");  // trailing newline dropped
  EXPECT_EQ(render("a\n  {# c #}\nb {{ 1 }}\n  {{ 2 }}\n"), "a\nb 1\n  2");
  EXPECT_EQ(render("{%- if true -%}  a  {%- endif -%}  b  "), "ab  ");
  EXPECT_EQ(render("{% if true %}  x  {%+ endif %}  y"), "  x    y");
  EXPECT_EQ(render("a  {%- if true %}  b  {% endif -%}  c"), "a  b  c");
  EXPECT_EQ(render("{{- ' x ' -}}  {{ 'y' }}"), " x y");
  EXPECT_EQ(render("x {% if true %}\ny{% endif %}"), "x y");  // lstrip only at a line start
  EXPECT_EQ(render("{% raw %}{{ not parsed }}{% endraw %}"), "{{ not parsed }}");
  EXPECT_EQ(render("{% for i in [1, 2] %}\n  {{ i }}\n{% endfor %}"), "  1\n  2\n");
  EXPECT_EQ(render("{% generation %}g{{ 1 }}{% endgeneration %}"), "g1");
}

// ---- statements ----

TEST(Jinja, LoopsAndScoping) {
  EXPECT_EQ(
      render(
          "{% for x in [1, 2, 3] if x > 1 %}{{ loop.index }}/{{ loop.length }}{{ loop.first }}{{ loop.last }}"
          "{{ loop.previtem }},{% else %}none{% endfor %}"),
      "1/2TrueFalse,2/2FalseTrue2,");
  EXPECT_EQ(render("{% for x in [] %}a{% else %}none{% endfor %}"), "none");
  EXPECT_EQ(render("{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break "
                   "%}{% endif %}"
                   "{{ i }}{% endfor %}"),
            "02");
  EXPECT_EQ(render("{% for x in 'ab' %}{{ loop.index0 }}{{ x }}{{ loop.revindex }}{{ loop.cycle('o', 'e') "
                   "}}{% endfor %}"),
            "0a2o1b1e");
  // A set inside a loop does not leak out of it, nor into the next iteration.
  EXPECT_EQ(render("{% set x = 0 %}{% for i in [1, 2] %}{{ x }}{% set x = i %}{{ x }}{% endfor %}{{ x }}"),
            "01020");
  // namespace() carries state out of loops.
  EXPECT_EQ(render("{% set ns = namespace(a=1, l=[]) %}{% for i in [1, 2] %}{% set ns.a = ns.a + i %}"
                   "{% set ns.l = ns.l + [i] %}{% endfor %}{{ ns.a }} {{ ns.l }}"),
            "4 [1, 2]");
  EXPECT_EQ(render("{% if true %}{% set y = 'leaks' %}{% endif %}{{ y }}"), "leaks");
  EXPECT_EQ(render("{% set a, b = 1, 2 %}{{ a }}{{ b }} {% with c = 3 %}{{ c }}{% endwith %}{{ c }}"),
            "12 3");
  EXPECT_EQ(render("{% set x %}  hi {{ 1 }}\n{% endset %}[{{ x }}] {% set y | upper %}b{% endset %}{{ y }}"),
            "[  hi 1\n] B");
  EXPECT_EQ(render("{% filter upper %}hello {{ 'x' }}{% endfilter %}"), "HELLO X");
}

TEST(Jinja, MacrosAndCall) {
  EXPECT_EQ(render("{% macro m(a, b='x') %}{{ a }}{{ b }}{{ varargs }}{% endmacro %}{{ m(1) }} {{ m(1, 2, 3) "
                   "}} {{ m(b=3, a=4) }}"),
            "1x() 12(3,) 43()");
  EXPECT_EQ(
      render("{% macro m(a) %}[{{ caller(a) }}]{% endmacro %}{% call(x) m(5) %}got {{ x }}{% endcall %}"),
      "[got 5]");
  // Macros see top-level variables at call time, not the caller's loop variables.
  EXPECT_EQ(render("{% set x = 1 %}{% macro m() %}{{ x }}{{ message }}{% endmacro %}{% set x = 2 %}"
                   "{% for message in [9] %}{{ m() }}{% endfor %}"),
            "2");
  EXPECT_EQ(
      render(
          "{% set ns = namespace(open=true) %}{% macro flush() %}{% if ns.open %}F{% set ns.open = false %}"
          "{% endif %}{% endmacro %}{{ flush() }}{{ flush() }}"),
      "F");
  EXPECT_NE(error_of("{% macro m() %}x{% endmacro %}{{ m(1) }}").find("takes not more than 0"),
            std::string::npos);
}

// ---- errors and limits ----

TEST(Jinja, SyntaxErrorsNameLineAndColumn) {
  try {
    ChatTemplate("line one\nline two\n{% if %}");
    FAIL() << "expected a syntax error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 3, column 7"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Expected an expression"), std::string::npos) << e.what();
  }
  EXPECT_NE(error_of("a\n{{ foo( }}").find("line 2"), std::string::npos);
  EXPECT_NE(error_of("{% for x in y %}").find("looking for the following tags: 'endfor' or 'else'"),
            std::string::npos);
  EXPECT_NE(error_of("{% endif %}").find("unknown tag 'endif'"), std::string::npos);
  EXPECT_NE(error_of("{{ 'abc }}").find("string literal"), std::string::npos);
  EXPECT_NE(error_of("{# never closed").find("Missing end of comment tag"), std::string::npos);
  EXPECT_NE(error_of("{% break %}").find("outside of a loop"), std::string::npos);
  EXPECT_NE(error_of("{% include 'x' %}").find("not supported"), std::string::npos);
}

TEST(Jinja, UnknownFilterOrTestIsASyntaxError) {
  // Rejected when the template is parsed, even in a branch that never runs (as Jinja2 does).
  EXPECT_THROW(ChatTemplate("{% if false %}{{ 1|nosuchfilter }}{% endif %}"), Error);
  EXPECT_NE(error_of("\n{{ 1|nosuchfilter }}").find("line 2"), std::string::npos);
  EXPECT_NE(error_of("{{ 1|nosuchfilter }}").find("No filter named 'nosuchfilter'"), std::string::npos);
  EXPECT_NE(error_of("{{ 1 is nosuchtest }}").find("No test named 'nosuchtest'"), std::string::npos);
}

TEST(Jinja, RaiseExceptionGivesTheTemplatesMessage) {
  const std::string tpl =
      "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}"
      "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}ok";
  EXPECT_EQ(render(tpl, Json{{"messages", Json::parse(R"([{"role": "user"}])")}}), "ok");
  try {
    render(tpl, Json{{"messages", Json::parse(R"([{"role": "tool"}])")}});
    FAIL() << "expected raise_exception to throw";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "Only user and assistant roles are supported!");
  }
}

TEST(Jinja, RuntimeErrorsNameTheLine) {
  const std::string msg = error_of("a\nb\n{{ 'x' + 1 }}");
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
  EXPECT_NE(error_of("{{ [].append(1) }}").find("unsafe"), std::string::npos);
  EXPECT_NE(error_of("{% set x = 1 %}{% set x.a = 2 %}").find("non-namespace"), std::string::npos);
  EXPECT_NE(error_of("{% for a, b in [[1, 2, 3]] %}{% endfor %}").find("too many values to unpack"),
            std::string::npos);
}

TEST(Jinja, HostileTemplatesHitLimitsNotTheStack) {
  // Deep nesting in the source is a syntax error.
  EXPECT_NE(error_of("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}")
                .find("nested too deeply"),
            std::string::npos);
  std::string chain = "{{ x";
  std::string filters = "{{ x";
  std::string sums = "{{ 1";
  for (int i = 0; i < 20000; ++i) {
    chain += ".a";
    filters += "|trim";
    sums += " + 1";
  }
  EXPECT_NE(error_of(chain + " }}").find("nested too deeply"), std::string::npos);
  EXPECT_NE(error_of(filters + " }}").find("nested too deeply"), std::string::npos);
  EXPECT_NE(error_of(sums + " }}").find("nested too deeply"), std::string::npos);
  std::string blocks;
  for (int i = 0; i < 2000; ++i) blocks += "{% if true %}";
  EXPECT_NE(error_of(blocks).find("nested too deeply"), std::string::npos);
  // Unbounded recursion through a macro.
  EXPECT_NE(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").find("nesting too deep"),
            std::string::npos);
  // Output, string and list sizes, and total work (with small limits to keep the test quick; the
  // defaults are checked by the last two).
  jinja::Limits small;
  small.max_work = 200'000;
  small.max_output_bytes = 1 << 20;
  small.max_string_bytes = 1 << 20;
  small.max_list_items = 1000;
  EXPECT_NE(error_with_limits("{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}", small)
                .find("output exceeds"),
            std::string::npos);
  EXPECT_NE(error_with_limits(
                "{% set ns = namespace(s='xx') %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}"
                "{% endfor %}",
                small)
                .find("exceeds the limit"),
            std::string::npos);
  EXPECT_NE(error_with_limits("{{ [0] * 5000 }}", small).find("exceeds the limit"), std::string::npos);
  EXPECT_NE(error_with_limits(
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", small)
                .find("work limit"),
            std::string::npos);
  // Quadratic string building is charged by size, so it ends at the work limit too.
  EXPECT_NE(error_with_limits(
                "{% set ns = namespace(s='') %}{% for i in range(100000) %}{% set ns.s = ns.s ~ 'x' %}"
                "{% endfor %}",
                small)
                .find("work limit"),
            std::string::npos);
  EXPECT_NE(error_of("{{ range(100001) }}").find("Range too big"), std::string::npos);
  EXPECT_NE(error_of("{{ 'ab' * 9223372036854775807 }}").find("too large"), std::string::npos);
  EXPECT_NE(error_of("{{ 'a'.center(1000000000) }}").find("too large"), std::string::npos);
  // Deeply nested values built in a loop are refused when built; cycles through namespaces are
  // refused when printed (and released after rendering).
  EXPECT_NE(
      error_of("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}")
          .find("nested too deeply"),
      std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}").find("nested too deeply"),
            std::string::npos);
}

// ---- render_chat and tokenizer_config.json ----

TEST(ChatTemplate, RenderChatPassesWhatTransformersPasses) {
  const ChatTemplate t(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}|{{ tools is defined }}{{ tools is none }}"
      "{{ documents is none }}|{{ enable_thinking }}");
  const Json messages = Json::parse(R"([{"role": "user", "content": "hi"}])");
  EXPECT_EQ(render_chat(t, messages, true, "<s>", "</s>"), "<s><user>hi</s><assistant>|TrueTrueTrue|");
  EXPECT_EQ(
      render_chat(t, messages, false, "", "", Json{{"enable_thinking", false}, {"tools", Json::array()}}),
      "<user>hi|TrueFalseTrue|False");
  EXPECT_EQ(t.source().substr(0, 15), "{{ bos_token }}");
}

TEST(ChatTemplate, ReadsTokenizerConfigVariants) {
  const std::string dir = test::temp_dir("chat-template");
  auto write = [&](const std::string& name, const std::string& body) {
    std::ofstream(dir + "/" + name) << body;
    return dir + "/" + name;
  };
  const auto a = read_tokenizer_config(write("a.json", R"({"chat_template": "{{ x }}", "bos_token": "<s>",
      "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": false}})"));
  EXPECT_EQ(a.chat_template, "{{ x }}");
  EXPECT_EQ(a.bos_token, "<s>");
  EXPECT_EQ(a.eos_token, "</s>");
  const auto b =
      read_tokenizer_config(write("b.json", R"({"chat_template": [{"name": "tool_use", "template": "T"},
      {"name": "default", "template": "D"}], "bos_token": null})"));
  EXPECT_EQ(b.chat_template, "D");
  EXPECT_EQ(b.bos_token, "");
  EXPECT_EQ(b.eos_token, "");
  EXPECT_THROW(read_tokenizer_config(write("c.json", R"({"bos_token": "<s>"})")), Error);
  EXPECT_THROW(read_tokenizer_config(write("d.json", "{not json")), Error);
  EXPECT_THROW(read_tokenizer_config(dir + "/missing.json"), Error);
  std::filesystem::remove_all(dir);

  const auto qwen = read_tokenizer_config(test::testdata("tokenizers/qwen3/tokenizer_config.json"));
  EXPECT_EQ(qwen.bos_token, "");
  EXPECT_EQ(qwen.eos_token, "<|im_end|>");
  const auto ds = read_tokenizer_config(test::testdata("tokenizers/deepseek-v3/tokenizer_config.json"));
  EXPECT_EQ(ds.bos_token, "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(ds.eos_token, "<｜end▁of▁sentence｜>");
}

// Other families' templates (Llama-3, Gemma, Mistral), expected outputs from Python Jinja2 with
// transformers' environment.
TEST(ChatTemplate, OtherFamiliesMatchPythonJinja2) {
  const Json messages = Json::parse(R"([{"role": "user", "content": " Hi there \n"},
      {"role": "assistant", "content": "Hello!  "}, {"role": "user", "content": "日本語?"}])");
  const ChatTemplate llama3(
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
      "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content "
      "}}"
      "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
      "{% endif %}");
  EXPECT_EQ(
      render_chat(llama3, messages, true, "<s>", "</s>"),
      "<s><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant"
      "<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n日本語?<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n");
  const ChatTemplate gemma(
      "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
      "supported') }}"
      "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
      "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif "
      "%}"
      "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = "
      "message['role'] %}"
      "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
      "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}");
  EXPECT_EQ(render_chat(gemma, messages, true, "<s>", "</s>"),
            "<s><start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
            "<start_of_turn>user\n日本語?<end_of_turn>\n<start_of_turn>model\n");
  const ChatTemplate mistral(
      "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == "
      "0) %}"
      "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif "
      "%}"
      "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
      "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
      "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor "
      "%}");
  EXPECT_EQ(render_chat(mistral, messages, true, "<s>", "</s>"),
            "<s>[INST]  Hi there \n [/INST]Hello!  </s>[INST] 日本語? [/INST]");
  try {
    render_chat(mistral, Json::parse(R"([{"role": "assistant", "content": "x"}])"), true, "<s>", "</s>");
    FAIL() << "expected raise_exception";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "Conversation roles must alternate user/assistant/user/assistant/...");
  }
}

TEST(ChatTemplate, DeepSeekR1DistillDropsEarlierReasoningAndPromptsThinking) {
  const ChatTemplate t(
      test::read_file(test::testdata("templates/deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja")));
  const Json messages = Json::parse(R"([
      {"role": "user", "content": "2+2?"},
      {"role": "assistant", "content": "<think>\nsimple\n</think>\n\n4"},
      {"role": "user", "content": "3+3?"}])");
  EXPECT_EQ(render_chat(t, messages, true, "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
            "<｜begin▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜>\n\n4<｜end▁of▁sentence｜><｜User｜>3+3?"
            "<｜Assistant｜><think>\n");
}

}  // namespace
}  // namespace moe

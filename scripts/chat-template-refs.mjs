#!/usr/bin/env node
// Reference renderings of chat templates for moe.cpp's Jinja interpreter
// (src/tokenizer/chat_template_test.cpp checks every case byte for byte).
//
//   node scripts/chat-template-refs.mjs [OUT_DIR]      (default tests/data/chat_templates)
//
// Renders a fixed set of conversations through every template in
// $MOE_TESTDATA/templates/*.jinja and the chat_template of $MOE_TESTDATA/tokenizers/*/
// tokenizer_config.json ($MOE_TESTDATA defaults to ../shared/testdata) with @huggingface/jinja,
// the JavaScript Jinja implementation Hugging Face ships for chat templates (its Template applies
// trim_blocks and lstrip_blocks and drops one trailing newline, as transformers' environment
// does). The context is what transformers' apply_chat_template passes: messages, tools and
// documents (None unless given), add_generation_prompt, bos_token, eos_token, then the extras.
//
// When a Python with jinja2 is on PATH (python3), every case is rendered again with Python
// Jinja2 configured like transformers (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
// loopcontrols, json.dumps-based tojson, raise_exception), and any disagreement is reported;
// cases where the two disagree are not written.
//
// Install the peer first (git-ignored): scripts/install-peers.sh
// (= npm install --prefix .cache/peers @huggingface/jinja)
import { createRequire } from "node:module";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(process.env.MOE_PEERS ?? join(root, ".cache/peers"), "package.json"));
const { Template } = require("@huggingface/jinja");

const testdata = process.env.MOE_TESTDATA ?? join(root, "../shared/testdata");
const outDir = process.argv[2] ?? join(root, "tests/data/chat_templates");

const DEEPSEEK = { bos: "<｜begin▁of▁sentence｜>", eos: "<｜end▁of▁sentence｜>" };
const QWEN = { bos: "", eos: "<|im_end|>" };

// ---- conversations ----

const sys = { role: "system", content: "You are a helpful assistant." };
const u1 = { role: "user", content: "Hello! Who are you?" };
const a1 = { role: "assistant", content: "I am an AI assistant. How can I help you today?" };
const u2 = { role: "user", content: "What is 17 * 23?" };
const a2Think = {
  role: "assistant",
  content: "<think>\nLet me compute: 17 * 20 = 340, 17 * 3 = 51, total 391.\n</think>\n\n17 * 23 = **391**.",
};
const u3 = { role: "user", content: "And 391 / 17?" };
const a3Think = { role: "assistant", content: "<think>\n391 / 17 = 23.\n</think>\n\nIt is 23." };
const unicode = {
  role: "user",
  content:
    "Ünïcödé: 日本語のテキスト, 中文, العربية, emoji 😀🚀, quotes \"double\" and 'single', a backslash \\ and " +
    "braces {{ not a tag }} {% neither %}.\n  Indented line\n\nTrailing spaces   ",
};

const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Get the current weather in a city.",
      parameters: {
        type: "object",
        properties: {
          city: { type: "string", description: "City name, e.g. Paris" },
          unit: { type: "string", enum: ["celsius", "fahrenheit"] },
        },
        required: ["city"],
      },
    },
  },
  {
    type: "function",
    function: {
      name: "get_time",
      description: "Current local time in a time zone.",
      parameters: { type: "object", properties: { tz: { type: "string" } }, required: ["tz"] },
    },
  },
];

// Tool calls as each family's template expects them: Qwen renders `arguments | tojson` from an
// object and wants content "" on the calling turn; DeepSeek concatenates a JSON string and tests
// `content is none`.
function toolConversation(family) {
  const qwen = family === "qwen";
  const args1 = { city: "Paris", unit: "celsius" };
  const args2 = { tz: "Europe/Paris" };
  const call = (id, name, args) => ({
    id,
    type: "function",
    function: { name, arguments: qwen ? args : JSON.stringify(args) },
  });
  return [
    { role: "system", content: "You can call tools." },
    { role: "user", content: "What's the weather and the time in Paris?" },
    {
      role: "assistant",
      content: qwen ? "" : null,
      tool_calls: [call("call_1", "get_weather", args1), call("call_2", "get_time", args2)],
    },
    { role: "tool", tool_call_id: "call_1", content: '{"temperature": 21, "sky": "sunny"}' },
    { role: "tool", tool_call_id: "call_2", content: '{"time": "14:05"}' },
    { role: "assistant", content: "It is sunny and 21 °C in Paris, and the local time is 14:05." },
    { role: "user", content: "Thanks!" },
  ];
}

function cases(family) {
  const list = [
    { name: "single_turn", messages: [u1], add_generation_prompt: true },
    { name: "single_turn_no_generation_prompt", messages: [u1], add_generation_prompt: false },
    { name: "system_single_turn", messages: [sys, u1], add_generation_prompt: true },
    { name: "multi_turn", messages: [u1, a1, u2], add_generation_prompt: true },
    { name: "multi_turn_system", messages: [sys, u1, a1, u2], add_generation_prompt: true },
    { name: "multi_turn_ends_with_assistant", messages: [sys, u1, a1], add_generation_prompt: false },
    { name: "reasoning_in_history", messages: [u1, a1, u2, a2Think, u3], add_generation_prompt: true },
    { name: "reasoning_in_last_turn", messages: [u2, a2Think], add_generation_prompt: false },
    { name: "reasoning_two_turns", messages: [sys, u2, a2Think, u3, a3Think], add_generation_prompt: false },
    {
      name: "reasoning_content_field",
      messages: [u2, { role: "assistant", content: "It is 391.", reasoning_content: "17 * 23 = 391." }, u3],
      add_generation_prompt: true,
    },
    {
      name: "two_system_messages",
      messages: [sys, { role: "system", content: "Answer briefly." }, u1],
      add_generation_prompt: true,
    },
    { name: "unicode", messages: [sys, unicode, { role: "assistant", content: "Got it: 日本語 😀." }, unicode], add_generation_prompt: true },
    { name: "enable_thinking_false", messages: [u1, a1, u2], add_generation_prompt: true, extra: { enable_thinking: false } },
    { name: "enable_thinking_true", messages: [u1], add_generation_prompt: true, extra: { enable_thinking: true } },
    { name: "thinking_true", messages: [u1], add_generation_prompt: true, extra: { thinking: true } },
    { name: "tool_calls", messages: toolConversation(family), add_generation_prompt: true, extra: { tools } },
    { name: "tool_calls_no_tool_list", messages: toolConversation(family), add_generation_prompt: false },
  ];
  return list.map((c) => ({ extra: {}, ...c }));
}

// ---- rendering ----

function context(c, bos, eos) {
  return { messages: c.messages, tools: null, documents: null, add_generation_prompt: c.add_generation_prompt,
           bos_token: bos, eos_token: eos, ...c.extra };
}

function renderJs(source, c, bos, eos) {
  try {
    return { out: new Template(source).render(structuredClone(context(c, bos, eos))) };
  } catch (e) {
    return { err: String(e.message ?? e) };
  }
}

const PYTHON = String.raw`
import json, sys
try:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.exceptions import TemplateError
except ImportError:
    print("null"); sys.exit(0)
def raise_exception(message): raise TemplateError(message)
def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
jobs = json.load(sys.stdin)
out = []
for job in jobs:
    try:
        out.append({"out": env.from_string(job["source"]).render(**job["context"])})
    except Exception as e:
        out.append({"err": type(e).__name__ + ": " + str(e)})
print(json.dumps(out))
`;

function renderPython(jobs) {
  const r = spawnSync(process.env.PYTHON ?? "python3", ["-c", PYTHON], { input: JSON.stringify(jobs), maxBuffer: 1 << 28 });
  if (r.status !== 0 || r.error) {
    console.error("python3 with jinja2 not usable; skipping the Python cross-check");
    return null;
  }
  return JSON.parse(r.stdout.toString());
}

// ---- templates ----

function templates() {
  const list = [];
  const tdir = join(testdata, "templates");
  for (const f of readdirSync(tdir).filter((f) => f.endsWith(".jinja")).sort()) {
    const family = /deepseek/i.test(f) ? DEEPSEEK : /qwen/i.test(f) ? QWEN : null;
    if (!family) throw new Error(`no bos/eos family known for ${f}`);
    list.push({
      name: basename(f, ".jinja"),
      file: `templates/${f}`,
      source: readFileSync(join(tdir, f), "utf8"),
      bos: family.bos,
      eos: family.eos,
      family: family === QWEN ? "qwen" : "deepseek",
    });
  }
  const kdir = join(testdata, "tokenizers");
  for (const d of readdirSync(kdir).sort()) {
    const path = join(kdir, d, "tokenizer_config.json");
    if (!existsSync(path)) continue;
    const cfg = JSON.parse(readFileSync(path, "utf8"));
    let source = cfg.chat_template;
    if (Array.isArray(source)) source = source.find((t) => t.name === "default")?.template;
    if (typeof source !== "string") continue;
    const tok = (t) => (t == null ? "" : typeof t === "string" ? t : t.content);
    list.push({
      name: `tokenizer_config-${d}`,
      file: `tokenizers/${d}/tokenizer_config.json`,
      source,
      bos: tok(cfg.bos_token),
      eos: tok(cfg.eos_token),
      family: /qwen/i.test(d) ? "qwen" : "deepseek",
    });
  }
  return list;
}

const all = templates();
const jobs = [];
for (const t of all) {
  t.cases = cases(t.family);
  for (const c of t.cases) {
    c.js = renderJs(t.source, c, t.bos, t.eos);
    jobs.push({ source: t.source, context: context(c, t.bos, t.eos) });
  }
}
const py = renderPython(jobs);

mkdirSync(outDir, { recursive: true });
let written = 0;
let skipped = 0;
let k = 0;
for (const t of all) {
  const out = [];
  for (const c of t.cases) {
    const p = py ? py[k] : null;
    ++k;
    const tag = `${t.name} / ${c.name}`;
    if (c.js.err !== undefined) {
      console.error(`skip ${tag}: @huggingface/jinja error: ${c.js.err}`);
      ++skipped;
      continue;
    }
    if (p && p.out !== c.js.out) {
      console.error(`skip ${tag}: Python Jinja2 disagrees: ${p.err ?? JSON.stringify(p.out)}`);
      ++skipped;
      continue;
    }
    out.push({ name: c.name, messages: c.messages, add_generation_prompt: c.add_generation_prompt, extra: c.extra,
               expected: c.js.out });
  }
  const doc = { template_file: t.file, bos_token: t.bos, eos_token: t.eos, cases: out };
  writeFileSync(join(outDir, `${t.name}.json`), JSON.stringify(doc, null, 1) + "\n");
  written += out.length;
  console.error(`${t.name}: ${out.length}/${t.cases.length} cases`);
}
console.error(`${written} cases written to ${outDir}, ${skipped} skipped` +
              (py ? "; every written case renders identically in Python Jinja2" : "; no Python cross-check"));

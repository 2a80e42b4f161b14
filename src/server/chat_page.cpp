#include "server/chat_page.h"

namespace moe::server {

namespace {

// Edited as HTML; tests/mock_openai_server.mjs serves the text between this raw string's delimiters, so the
// delimiter MOEHTML must occur nowhere else in this file. Model text reaches the DOM only via text nodes.
constexpr std::string_view kChatPageHtml = R"MOEHTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>moe chat</title>
<style>
:root{--bg:#f6f6f8;--card:#fff;--fg:#1d1d1f;--muted:#6b6b74;--line:#dedee4;--user:#e7efff;--accent:#2f62d8;
  --onaccent:#fff;--err:#a61b1b;--errbg:#fdeeee;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#16171a;--card:#1f2126;--fg:#e7e7ea;--muted:#9a9aa4;--line:#32343c;
  --user:#1e2b47;--accent:#6c9cff;--onaccent:#0d1626;--err:#ffb4b4;--errbg:#3a1e1f}}
*{box-sizing:border-box}
html,body{height:100%;margin:0}
body{display:flex;flex-direction:column;background:var(--bg);color:var(--fg);
  font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
input,select,textarea,button{font:inherit;color:inherit}
header{display:flex;flex-wrap:wrap;align-items:center;gap:8px 16px;padding:10px 18px;background:var(--card);
  border-bottom:1px solid var(--line)}
header h1{margin:0 6px 0 0;font-size:17px;letter-spacing:.5px}
header label{display:flex;align-items:center;gap:6px;font-size:13px;color:var(--muted)}
header input,header select{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:3px 8px}
#model{max-width:260px}#apikey{width:150px}#temperature,#max_tokens{width:80px}
button{border:1px solid var(--line);background:var(--card);border-radius:7px;padding:5px 14px;cursor:pointer}
button:disabled{opacity:.45;cursor:default}
#clear{margin-left:auto}
#messages{flex:1;overflow-y:auto;padding:18px}
#messages:empty::before{content:"Ask something to start a conversation.";display:block;text-align:center;
  color:var(--muted);margin-top:18vh}
.msg{max-width:820px;margin:0 auto 14px;padding:10px 14px;border-radius:10px;background:var(--card);
  border:1px solid var(--line)}
.msg.user{background:var(--user);border-color:transparent;white-space:pre-wrap;overflow-wrap:anywhere;
  width:fit-content;max-width:min(700px,85%);margin-left:auto;margin-right:max(calc((100% - 820px) / 2),0px)}
.role{font-size:12px;font-weight:600;color:var(--muted);margin-bottom:3px}
.content{white-space:pre-wrap;overflow-wrap:anywhere}
.reasoning{margin:2px 0 8px;border-left:3px solid var(--line);padding-left:10px;color:var(--muted);font-size:14px}
.reasoning summary{cursor:pointer;user-select:none;font-size:13px}
.reasoning-text{white-space:pre-wrap;overflow-wrap:anywhere;margin-top:4px}
.streaming .content:empty::after,.streaming .reasoning[open] .reasoning-text:empty::after{content:"\2026"}
.meta{margin-top:6px;font-size:12px;color:var(--muted)}
.meta:empty{display:none}
.note{color:var(--err)}.stopped .note{color:var(--muted);font-style:italic}
#error{max-width:820px;margin:0 auto 8px;padding:8px 12px;border-radius:8px;background:var(--errbg);
  color:var(--err);white-space:pre-wrap}
footer{padding:0 18px 16px}
#composer{display:flex;gap:8px;max-width:820px;margin:0 auto;align-items:flex-end}
#input{flex:1;resize:none;min-height:44px;max-height:220px;padding:10px 12px;border:1px solid var(--line);
  border-radius:10px;background:var(--card)}
#input:focus{outline:2px solid var(--accent);outline-offset:-1px}
#send{background:var(--accent);border-color:var(--accent);color:var(--onaccent);font-weight:600;height:44px}
#stop{height:44px}
</style>
</head>
<body data-state="idle" data-models="loading">
<header>
  <h1>moe</h1>
  <label>Model <select id="model" aria-label="Model"></select></label>
  <label>API key <input id="apikey" type="password" placeholder="optional" autocomplete="off"></label>
  <label>Temperature <input id="temperature" type="number" min="0" max="2" step="0.1" placeholder="default">
  </label>
  <label>Max tokens <input id="max_tokens" type="number" min="1" step="1" placeholder="default"></label>
  <button id="clear" type="button" title="Start a new conversation">New chat</button>
</header>
<main id="messages" aria-live="polite"></main>
<footer>
  <div id="error" role="alert" hidden></div>
  <form id="composer">
    <textarea id="input" rows="1" placeholder="Message (Enter sends, Shift+Enter for a new line)"></textarea>
    <button id="send" type="submit">Send</button>
    <button id="stop" type="button" disabled>Stop</button>
  </form>
</footer>
<script>
"use strict";
const $ = (sel) => document.querySelector(sel);
const ui = {model: $("#model"), apikey: $("#apikey"), temperature: $("#temperature"), maxTokens: $("#max_tokens"),
  input: $("#input"), send: $("#send"), stop: $("#stop"), messages: $("#messages"), error: $("#error"),
  composer: $("#composer"), clear: $("#clear")};
const store = {
  get: (k) => { try { return localStorage.getItem("moe." + k) || ""; } catch { return ""; } },
  set: (k, v) => { try { v ? localStorage.setItem("moe." + k, v) : localStorage.removeItem("moe." + k); } catch {} },
};
// The conversation as sent to the server; assistant turns keep only their answer.
let history = [];
let controller = null;
let modelsSeq = 0;

function setState(state) {
  document.body.dataset.state = state;
  ui.send.disabled = state !== "idle";
  ui.stop.disabled = state !== "streaming";
}
function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}
function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const key = ui.apikey.value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}
async function httpError(res) {
  let detail = "";
  try {
    const text = await res.text();
    try {
      const j = JSON.parse(text);
      detail = (j && j.error && (j.error.message || (typeof j.error === "string" && j.error))) || "";
    } catch { detail = text.trim().slice(0, 300); }
  } catch {}
  const names = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
    500: "Internal Server Error", 503: "Service Unavailable"};
  let msg = `${res.status} ${res.statusText || names[res.status] || "Error"}` + (detail ? `: ${detail}` : "");
  const retry = res.headers.get("Retry-After");
  if (res.status === 429 && retry) msg += ` (retry after ${retry} s)`;
  return new Error(msg);
}
function nearBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 60;
}
function scrollDown(stick) { if (stick) ui.messages.scrollTop = ui.messages.scrollHeight; }
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text) e.textContent = text;
  return e;
}

async function loadModels() {
  const seq = ++modelsSeq;
  document.body.dataset.models = "loading";
  try {
    const res = await fetch("v1/models", {headers: headers(false)});
    if (!res.ok) throw await httpError(res);
    const body = await res.json();
    const ids = (Array.isArray(body.data) ? body.data : []).map((m) => m && m.id).filter((id) => typeof id === "string");
    if (seq !== modelsSeq) return;
    const want = ui.model.value || store.get("model");
    ui.model.replaceChildren(...ids.map((id) => { const o = el("option", "", id); o.value = id; return o; }));
    if (ids.includes(want)) ui.model.value = want;
    if (!ids.length) throw new Error("the server lists no models");
    if (ui.error.dataset.source === "models") showError("");
    document.body.dataset.models = "ready";
  } catch (e) {
    if (seq !== modelsSeq) return;
    showError("Could not load models: " + e.message);
    ui.error.dataset.source = "models";
    document.body.dataset.models = "error";
  }
}

// Yields the data of each server-sent event (multi-line data joined with "\n").
async function* sseData(stream) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "", data = [];
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += value;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length) yield data.join("\n");
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let v = colon < 0 ? "" : line.slice(colon + 1);
          if (v.startsWith(" ")) v = v.slice(1);
          if (field === "data") data.push(v);
        }
      }
    }
    if (buf.startsWith("data:")) data.push(buf.slice(5).trimStart());
    if (data.length) yield data.join("\n");
  } finally {
    reader.cancel().catch(() => {});
  }
}

function addUser(text) {
  const m = el("div", "msg user", text);
  ui.messages.append(m);
  return m;
}
function addAssistant() {
  const m = el("div", "msg assistant streaming");
  const details = el("details", "reasoning");
  details.hidden = true;
  const summary = el("summary", "", "Thinking\u2026");
  const rtext = el("div", "reasoning-text");
  details.append(summary, rtext);
  const content = el("div", "content");
  const meta = el("div", "meta");
  m.append(el("div", "role", "Assistant"), details, content, meta);
  ui.messages.append(m);
  return {m, details, summary, rtext, content, meta};
}
const secs = (ms) => (ms / 1000).toFixed(1) + " s";

async function send() {
  const text = ui.input.value;
  if (!text.trim() || controller) return;
  showError("");
  const conv = history;  // "New chat" mid-stream swaps history; this turn stays in its own.
  const userView = addUser(text);
  conv.push({role: "user", content: text});
  ui.input.value = "";
  autoGrow();
  const v = addAssistant();
  scrollDown(true);
  const req = {model: ui.model.value, messages: conv, stream: true, stream_options: {include_usage: true}};
  if (!req.model) delete req.model;
  const temp = parseFloat(ui.temperature.value);
  if (Number.isFinite(temp)) req.temperature = temp;
  const maxTokens = parseInt(ui.maxTokens.value, 10);
  if (maxTokens > 0) req.max_tokens = maxTokens;
  controller = new AbortController();
  setState("streaming");
  const t0 = performance.now();
  let tFirst = 0, tReasonEnd = 0, answer = "", reasoning = "", usage = null, finish = null, done = false;
  let error = null, stopped = false;
  try {
    const res = await fetch("v1/chat/completions", {method: "POST", headers: headers(true), body: JSON.stringify(req),
      signal: controller.signal});
    if (!res.ok) throw await httpError(res);
    const type = res.headers.get("Content-Type") || "";
    if (!type.startsWith("text/event-stream")) throw new Error(`expected an event stream, the server sent "${type}"`);
    for await (const data of sseData(res.body)) {
      if (data === "[DONE]") { done = true; break; }
      let chunk;
      try { chunk = JSON.parse(data); } catch { throw new Error("bad stream event: " + data.slice(0, 120)); }
      if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices && chunk.choices[0];
      if (!choice) continue;
      const delta = choice.delta || {};
      const stickNow = nearBottom();
      if (typeof delta.reasoning_content === "string" && delta.reasoning_content) {
        if (!tFirst) tFirst = performance.now();
        if (!reasoning) { v.details.hidden = false; v.details.open = true; }
        reasoning += delta.reasoning_content;
        v.rtext.append(delta.reasoning_content);
      }
      if (typeof delta.content === "string" && delta.content) {
        if (!tFirst) tFirst = performance.now();
        if (!answer && reasoning) {
          tReasonEnd = performance.now();
          v.details.open = false;
        }
        answer += delta.content;
        v.content.append(delta.content);
      }
      if (choice.finish_reason) finish = choice.finish_reason;
      scrollDown(stickNow);
    }
  } catch (e) {
    if (e.name === "AbortError") stopped = true;
    else error = e;
  }
  const tEnd = performance.now();
  controller = null;
  v.m.classList.remove("streaming");
  if (reasoning) {
    v.summary.textContent = `Reasoning (${secs((tReasonEnd || tEnd) - (tFirst || t0))})`;
    if (answer) v.details.open = false;
  }
  if (error && !answer && !reasoning) {
    // Nothing came back: undo the turn and give the text back, so retrying is one keypress.
    v.m.remove();
    userView.remove();
    conv.pop();
    if (!ui.input.value) { ui.input.value = text; autoGrow(); }
  } else {
    conv.push({role: "assistant", content: answer});
    const parts = [];
    if (usage) {
      parts.push(`${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`);
      const genMs = tEnd - (tFirst || t0);
      if (usage.completion_tokens > 0 && genMs > 0) parts.push(`${(usage.completion_tokens * 1000 / genMs).toFixed(1)} tokens/s`);
    }
    if (tFirst) parts.push(`first token ${secs(tFirst - t0)}`);
    parts.push(`total ${secs(tEnd - t0)}`);
    v.meta.textContent = parts.join(" \u00b7 ");
    let note = "";
    if (stopped) { note = "Stopped."; v.m.classList.add("stopped"); }
    else if (error) note = "Error: " + error.message;
    else if (finish === "length") note = "Cut off at the token limit.";
    else if (!done) note = "The stream ended without [DONE].";
    if (note) v.meta.prepend(el("span", "note", note + " "));
  }
  if (error) { showError(error.message); ui.error.dataset.source = "chat"; }
  setState("idle");
  ui.input.focus();
}

function autoGrow() {
  ui.input.style.height = "auto";
  ui.input.style.height = Math.min(ui.input.scrollHeight + 2, 220) + "px";
}

ui.composer.addEventListener("submit", (e) => { e.preventDefault(); send(); });
ui.input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  else if (e.key === "Escape" && controller) controller.abort();
});
ui.input.addEventListener("input", autoGrow);
ui.stop.addEventListener("click", () => { if (controller) controller.abort(); });
ui.clear.addEventListener("click", () => {
  if (controller) controller.abort();
  history = [];
  ui.messages.replaceChildren();
  showError("");
  ui.input.focus();
});
let keyTimer = 0;
ui.apikey.addEventListener("input", () => {
  store.set("apikey", ui.apikey.value.trim());
  document.body.dataset.models = "loading";
  clearTimeout(keyTimer);
  keyTimer = setTimeout(loadModels, 300);
});
ui.model.addEventListener("change", () => store.set("model", ui.model.value));
for (const [k, input] of [["temperature", ui.temperature], ["max_tokens", ui.maxTokens]]) {
  input.value = store.get(k);
  input.addEventListener("change", () => store.set(k, input.value));
}
ui.apikey.value = store.get("apikey");
setState("idle");
loadModels();
ui.input.focus();
</script>
</body>
</html>
)MOEHTML";

}  // namespace

std::string_view chat_page_html() { return kChatPageHtml; }

}  // namespace moe::server

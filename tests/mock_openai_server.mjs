// A stand-in for `moe serve` that needs no model: serves the chat page (taken from
// src/server/chat_page.cpp), GET /v1/models and a streamed R1-style reply to POST /v1/chat/completions
// (reasoning_content chunks, then content chunks, MOCK_CHUNK_MS apart, then a usage chunk and [DONE]).
//
//   node tests/mock_openai_server.mjs [PORT=8123] [API_KEY]
//
// With API_KEY, /v1/* require "Authorization: Bearer API_KEY" (401 with an OpenAI error body otherwise).
// A last user message containing "long" gets a reply of kLongChunks answer chunks (for testing Stop), one
// containing "fail midway" an error event after five chunks; max_tokens caps the reply (finish_reason
// "length"). Requests are validated as the real server should, so a malformed body gets a 400 the page has
// to show. MOCK_CHUNK_MS sets the pace (default 30). Plain Node, no dependencies.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

const kChunkMs = Number(process.env.MOCK_CHUNK_MS || 30);
const kLongChunks = 400;
const kModels = ['mock-r1', 'mock-r1-small'];

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export function chatPageHtml() {
  const src = fs.readFileSync(path.join(repo, 'src/server/chat_page.cpp'), 'utf8');
  const open = 'R"MOEHTML(', close = ')MOEHTML"';
  const a = src.indexOf(open), b = src.indexOf(close);
  if (a < 0 || b < a || src.indexOf(open, a + 1) >= 0) {
    throw new Error('chat_page.cpp: expected exactly one R"MOEHTML( ... )MOEHTML" raw string');
  }
  return src.slice(a + open.length, b);
}

// Same CSP a careful server would send: the page must not need anything but itself and same-origin fetches.
const kCsp = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; " +
  "img-src data:; base-uri 'none'; form-action 'none'";

function sendJson(res, status, body, extra = {}) {
  res.writeHead(status, {'Content-Type': 'application/json', ...extra});
  res.end(JSON.stringify(body));
}
function sendError(res, status, message, type, extra) {
  sendJson(res, status, {error: {message, type, param: null, code: null}}, extra);
}

function words(n, seed) {
  const vocab = ('the a model token stream reasoning answer mixture expert router weight layer cache ' +
    'attention batch latency prompt decode sample').split(' ');
  const out = [];
  for (let i = 0; i < n; i++) out.push(vocab[(seed * 7 + i * 13) % vocab.length]);
  return out;
}

function validate(body) {
  if (!body || typeof body !== 'object') return 'body must be a JSON object';
  if (body.model !== undefined && !kModels.includes(body.model)) return `model '${body.model}' does not exist`;
  if (!Array.isArray(body.messages) || !body.messages.length) return "'messages' must be a non-empty array";
  for (const [i, m] of body.messages.entries()) {
    if (!m || !['system', 'user', 'assistant'].includes(m.role)) return `messages[${i}].role is invalid`;
    if (typeof m.content !== 'string') return `messages[${i}].content must be a string`;
  }
  if (body.stream !== undefined && typeof body.stream !== 'boolean') return "'stream' must be a boolean";
  if (body.max_tokens !== undefined && !(Number.isInteger(body.max_tokens) && body.max_tokens > 0))
    return "'max_tokens' must be a positive integer";
  if (body.temperature !== undefined && !(typeof body.temperature === 'number' && body.temperature >= 0 &&
      body.temperature <= 2)) return "'temperature' must be a number in [0, 2]";
  return null;
}

function chat(req, res, body) {
  const problem = validate(body);
  if (problem) return sendError(res, 400, problem, 'invalid_request_error');
  const last = body.messages[body.messages.length - 1].content;
  const turns = body.messages.filter((m) => m.role === 'user').length;
  const long = /long/i.test(last);
  const reasoning = words(long ? 60 : 16, turns).map((w, i) => (i ? ' ' : '') + w);
  reasoning.unshift(`The user sent ${body.messages.length} message(s); turn ${turns}. `);
  const answer = [`Turn ${turns}: you said "${last.slice(0, 60)}". `, ...words(long ? kLongChunks : 24, turns + 1)
    .map((w, i) => (i ? ' ' : '') + w)];
  const pieces = [...reasoning.map((r) => ({reasoning_content: r})), ...answer.map((c) => ({content: c}))];
  const limit = body.max_tokens ?? Infinity;
  const sent = pieces.slice(0, Math.min(pieces.length, limit));
  const finish = sent.length < pieces.length ? 'length' : 'stop';
  const id = 'chatcmpl-mock' + Date.now();
  const created = Math.floor(Date.now() / 1000);
  const model = body.model ?? kModels[0];
  const base = {id, object: 'chat.completion.chunk', created, model};
  const promptTokens = body.messages.reduce((n, m) => n + m.content.split(/\s+/).length + 4, 0);
  const usage = {prompt_tokens: promptTokens, completion_tokens: sent.length,
    total_tokens: promptTokens + sent.length};

  if (!body.stream) {
    const text = (k) => sent.filter((p) => p[k]).map((p) => p[k]).join('');
    return sendJson(res, 200, {id, object: 'chat.completion', created, model, usage, choices: [{index: 0,
      finish_reason: finish, message: {role: 'assistant', content: text('content'),
        reasoning_content: text('reasoning_content')}}]});
  }
  res.writeHead(200, {'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'Connection': 'keep-alive'});
  const event = (obj) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
  event({...base, choices: [{index: 0, delta: {role: 'assistant', content: ''}, finish_reason: null}]});
  // "fail midway" in the last message: an error event after a few chunks, as a server reports a failure
  // once the 200 and the first tokens are already out.
  const failAt = /fail midway/i.test(last) ? 5 : -1;
  let i = 0, closed = false;
  res.on('close', () => {
    if (!res.writableFinished) console.error(`mock: client closed the stream after ${i}/${sent.length} chunks`);
    closed = true;
  });
  const tick = () => {
    if (closed) return;
    if (i === failAt) {
      event({error: {message: 'mock failure in the middle of the stream', type: 'server_error'}});
      return void res.end();
    }
    if (i < sent.length) {
      event({...base, choices: [{index: 0, delta: sent[i++], finish_reason: null}]});
      return void setTimeout(tick, kChunkMs);
    }
    event({...base, choices: [{index: 0, delta: {}, finish_reason: finish}]});
    if (body.stream_options?.include_usage) event({...base, choices: [], usage});
    res.end('data: [DONE]\n\n');
  };
  setTimeout(tick, kChunkMs);
}

export function createServer(apiKey) {
  return http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (req.method === 'GET' && url.pathname === '/') {
      res.writeHead(200, {'Content-Type': 'text/html; charset=utf-8', 'Content-Security-Policy': kCsp});
      return res.end(chatPageHtml());
    }
    if (!url.pathname.startsWith('/v1/')) return sendError(res, 404, `no route for ${req.method} ${url.pathname}`,
      'invalid_request_error');
    if (apiKey && req.headers.authorization !== `Bearer ${apiKey}`) {
      return sendError(res, 401, req.headers.authorization ? 'Incorrect API key provided.' :
        'Missing API key (Authorization: Bearer <key>).', 'invalid_request_error');
    }
    if (req.method === 'GET' && url.pathname === '/v1/models') {
      return sendJson(res, 200, {object: 'list', data: kModels.map((id) => ({id, object: 'model', created: 0,
        owned_by: 'moe'}))});
    }
    if (req.method === 'POST' && url.pathname === '/v1/chat/completions') {
      let raw = '';
      req.setEncoding('utf8');
      req.on('data', (d) => { raw += d; });
      req.on('end', () => {
        let body;
        try { body = JSON.parse(raw); } catch (e) {
          return sendError(res, 400, `request body is not JSON: ${e.message}`, 'invalid_request_error');
        }
        chat(req, res, body);
      });
      return;
    }
    sendError(res, 404, `no route for ${req.method} ${url.pathname}`, 'invalid_request_error');
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const port = Number(process.argv[2] || 8123);
  const key = process.argv[3] || '';
  chatPageHtml();  // fail at start, not on the first GET, if the page cannot be extracted
  createServer(key).listen(port, '127.0.0.1', () => {
    console.error(`mock OpenAI server on http://127.0.0.1:${port}${key ? ' (API key required)' : ''}`);
  });
}

// moe serve through the official OpenAI Node client: models, chat (reasoning split, streaming,
// usage, logprobs, n), completions (stop, length), seeds, /generate, error classes, and 32
// concurrent greedy streams equal to each run alone.
//
//   node tests/serve_openai.mjs MOE_BINARY FIXDIR
//
// FIXDIR holds r1.gguf (greedy output "Sure</think>Yes" then EOS, DeepSeek-R1 chat template),
// loop.gguf ("Cat</think>Dog" forever) and stories.gguf (stories260K); see tests/serve_e2e_test.cpp.
import crypto from 'node:crypto';
import { Checks, eq, ok, parseArgs, postJson, requirePeer, startServer } from './serve_util.mjs';

const { moe, fixdir } = parseArgs();
const openaiMod = requirePeer('openai');
const OpenAI = openaiMod.OpenAI ?? openaiMod.default ?? openaiMod;

const SCRIPT = 'Sure</think>Yes';
const checks = new Checks('serve_openai');
const apiKey = 'sk-moe-' + crypto.randomBytes(18).toString('hex');
const auth = { Authorization: `Bearer ${apiKey}` };

let srv;
try {
  srv = await startServer(moe, [
    '--model', `r1=${fixdir}/r1.gguf`,
    '--model', `loop=${fixdir}/loop.gguf`,
    '--model', `stories=${fixdir}/stories.gguf`,
    '--api-key', apiKey,
  ], { headers: auth });
} catch (e) {
  checks.fail('start server', e.message);
  await checks.finish();
}
const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey, maxRetries: 0, timeout: 30000 });
const hello = [{ role: 'user', content: 'Hello' }];

// 1. models
await checks.run('1 models.list lists r1, loop, stories', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  eq([...ids].sort(), ['loop', 'r1', 'stories'], 'model ids');
  return ids.join(', ');
});

// 2. chat, not streaming
let scriptTokens = -1;
let chatUsage = null;
await checks.run('2 chat non-streaming: reasoning split and usage', async () => {
  const t = await postJson(`${srv.url}/tokenize`, { model: 'r1', content: SCRIPT }, auth);
  eq(t.status, 200, 'POST /tokenize status');
  ok(Array.isArray(t.body.tokens) && t.body.tokens.length > 0, `/tokenize gave no tokens: ${JSON.stringify(t.body)}`);
  scriptTokens = t.body.tokens.length;
  const r = await client.chat.completions.create({ model: 'r1', messages: hello, temperature: 0 });
  const c = r.choices[0];
  eq(r.object, 'chat.completion', 'object');
  eq(r.choices.length, 1, 'choices.length');
  eq(c.message.role, 'assistant', 'message.role');
  eq(c.message.reasoning_content, 'Sure', 'message.reasoning_content');
  eq(c.message.content, 'Yes', 'message.content');
  eq(c.finish_reason, 'stop', 'finish_reason');
  const u = r.usage;
  ok(u && u.prompt_tokens > 0, `usage.prompt_tokens > 0: ${JSON.stringify(u)}`);
  eq(u.completion_tokens, scriptTokens, `usage.completion_tokens (= tokens of ${JSON.stringify(SCRIPT)} per /tokenize)`);
  const rt = u.completion_tokens_details?.reasoning_tokens;
  ok(rt > 0 && rt < u.completion_tokens, `0 < reasoning_tokens < completion_tokens: ${JSON.stringify(u)}`);
  eq(u.total_tokens, u.prompt_tokens + u.completion_tokens, 'usage.total_tokens');
  chatUsage = u;
  return `usage ${JSON.stringify(u)}; script = ${scriptTokens} tokens`;
});

// 3. chat, streaming
await checks.run('3 chat streaming: deltas, one finish, usage chunk', async () => {
  const stream = await client.chat.completions.create({
    model: 'r1', messages: hello, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const ch of stream) chunks.push(ch);
  ok(chunks.length >= 3, `only ${chunks.length} chunks`);
  let reasoning = '';
  let content = '';
  const finishes = [];
  for (const ch of chunks) {
    eq(ch.object, 'chat.completion.chunk', 'chunk.object');
    for (const c of ch.choices) {
      const d = c.delta ?? {};
      if (d.reasoning_content != null) reasoning += d.reasoning_content;
      if (d.content != null) {
        ok(!d.content.includes('<think>') && !d.content.includes('</think>'), `delta.content holds a think tag: ${JSON.stringify(d.content)}`);
        content += d.content;
      }
      if (c.finish_reason != null) finishes.push(c.finish_reason);
    }
  }
  eq(chunks[0].choices[0]?.delta?.role, 'assistant', 'first chunk delta.role');
  eq(reasoning, 'Sure', 'concatenated delta.reasoning_content');
  eq(content, 'Yes', 'concatenated delta.content');
  eq(finishes, ['stop'], 'finish_reasons over all chunks');
  const last = chunks[chunks.length - 1];
  eq(last.choices, [], 'last chunk choices');
  ok(last.usage, 'last chunk has usage');
  ok(chatUsage, 'no non-streaming usage to compare with (check 2 failed)');
  eq(last.usage, chatUsage, 'streamed usage vs non-streaming usage');
  return `${chunks.length} chunks`;
});

// 4. reasoning_format none
await checks.run('4 reasoning_format none keeps the raw text', async () => {
  const r = await client.chat.completions.create({ model: 'r1', messages: hello, temperature: 0, reasoning_format: 'none' });
  const m = r.choices[0].message;
  eq(m.content, SCRIPT, 'message.content');
  ok(m.reasoning_content === undefined || m.reasoning_content === null || m.reasoning_content === '',
    `reasoning_content should be absent, got ${JSON.stringify(m.reasoning_content)}`);
});

// 5. completions
await checks.run('5 completions: text, streaming, stop, length', async () => {
  const r = await client.completions.create({ model: 'r1', prompt: 'Hello', temperature: 0 });
  eq(r.object, 'text_completion', 'object');
  eq(r.choices[0].text, SCRIPT, 'text');
  eq(r.choices[0].finish_reason, 'stop', 'finish_reason');
  eq(r.usage.completion_tokens, scriptTokens, 'usage.completion_tokens');

  const s = await client.completions.create({ model: 'r1', prompt: 'Hello', temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = '';
  const finishes = [];
  let usage = null;
  for await (const ch of s) {
    for (const c of ch.choices) {
      text += c.text ?? '';
      if (c.finish_reason != null) finishes.push(c.finish_reason);
    }
    if (ch.usage) usage = ch.usage;
  }
  eq(text, SCRIPT, 'streamed text');
  eq(finishes, ['stop'], 'streamed finish_reasons');
  eq(usage, r.usage, 'streamed usage vs non-streaming usage');

  const st = await client.completions.create({ model: 'r1', prompt: 'Hello', temperature: 0, stop: ['</think>'] });
  eq(st.choices[0].text, 'Sure', 'text with stop ["</think>"]');
  eq(st.choices[0].finish_reason, 'stop', 'finish_reason with stop');

  const ss = await client.completions.create({ model: 'r1', prompt: 'Hello', temperature: 0, stop: ['</think>'], stream: true });
  let stext = '';
  for await (const ch of ss) for (const c of ch.choices) stext += c.text ?? '';
  eq(stext, 'Sure', 'streamed text with stop ["</think>"]');

  const len = await client.completions.create({ model: 'r1', prompt: 'Hello', temperature: 0, max_tokens: 3 });
  eq(len.choices[0].finish_reason, 'length', 'finish_reason with max_tokens 3');
  eq(len.usage.completion_tokens, 3, 'completion_tokens with max_tokens 3');
  ok(SCRIPT.startsWith(len.choices[0].text) && len.choices[0].text.length > 0, `max_tokens 3 text is a prefix of the script: ${JSON.stringify(len.choices[0].text)}`);
});

// 6. logprobs
await checks.run('6 chat logprobs with top_logprobs 2', async () => {
  const r = await client.chat.completions.create({ model: 'r1', messages: hello, temperature: 0, logprobs: true, top_logprobs: 2 });
  const entries = r.choices[0].logprobs?.content;
  ok(Array.isArray(entries), `logprobs.content missing: ${JSON.stringify(r.choices[0].logprobs)}`);
  eq(entries.length, r.usage.completion_tokens, 'logprobs.content entries vs completion_tokens');
  let minLp = 0;
  entries.forEach((e, i) => {
    ok(typeof e.token === 'string', `entry ${i}: token not a string`);
    ok(e.logprob <= 0, `entry ${i} (${JSON.stringify(e.token)}): logprob ${e.logprob} > 0`);
    ok(e.logprob > -0.01, `entry ${i} (${JSON.stringify(e.token)}): logprob ${e.logprob} <= -0.01 for a scripted model`);
    ok(Array.isArray(e.top_logprobs) && e.top_logprobs.length === 2, `entry ${i}: top_logprobs has ${e.top_logprobs?.length} entries, want 2`);
    eq(e.top_logprobs[0].token, e.token, `entry ${i}: top_logprobs[0].token`);
    ok(Math.abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6, `entry ${i}: top_logprobs[0].logprob ${e.top_logprobs[0].logprob} != logprob ${e.logprob}`);
    ok(e.top_logprobs[1].logprob <= e.top_logprobs[0].logprob, `entry ${i}: top_logprobs not sorted`);
    minLp = Math.min(minLp, e.logprob);
  });
  return `${entries.length} entries, min logprob ${minLp.toExponential(2)}`;
});

// 7. n and seed
await checks.run('7 n=2 equal at temperature 0; seeds reproduce and vary', async () => {
  const r = await client.chat.completions.create({ model: 'r1', messages: hello, temperature: 0, n: 2 });
  eq(r.choices.length, 2, 'choices.length with n 2');
  eq(r.choices.map((c) => c.index), [0, 1], 'choice indices');
  eq(r.choices[1].message.content, r.choices[0].message.content, 'choice 1 content vs choice 0');
  eq(r.choices[1].message.reasoning_content, r.choices[0].message.reasoning_content, 'choice 1 reasoning vs choice 0');
  eq(r.choices[0].message.content, 'Yes', 'content with n 2');

  const gen = async (seed) => (await client.completions.create({
    model: 'stories', prompt: 'Once upon a time', temperature: 1, seed, max_tokens: 32,
  })).choices[0].text;
  const a = await gen(1234);
  const b = await gen(1234);
  eq(b, a, 'text for seed 1234, second request vs first');
  ok(a.length > 0, 'seeded text is empty');
  const others = [];
  for (const seed of [1, 2, 3, 4, 5]) {
    const t = await gen(seed);
    others.push(t);
    if (t !== a) return `seed 1234 reproduced; seed ${seed} differs`;
  }
  throw new Error(`seeds 1..5 all gave the same text as seed 1234: ${JSON.stringify(a)}`);
});

// 8. /generate
await checks.run('8 POST /generate on stories', async () => {
  const r = await postJson(`${srv.url}/generate`, { model: 'stories', prompt: 'Once upon a time', max_length: 20 }, auth);
  eq(r.status, 200, `/generate status (body ${JSON.stringify(r.body)})`);
  ok(typeof r.body.text === 'string' && r.body.text.length > 0, `text empty: ${JSON.stringify(r.body)}`);
  ok(r.body.usage && r.body.usage.completion_tokens > 0 && r.body.usage.completion_tokens <= 20,
    `usage.completion_tokens should be in 1..20: ${JSON.stringify(r.body.usage)}`);
  return `${r.body.usage.completion_tokens} tokens, finish ${r.body.finish_reason}`;
});

// 9. error classes
await checks.run('9 errors: 404 NotFound, 400 BadRequest naming max_tokens, 401 Authentication', async () => {
  const expectError = async (what, cls, status, fn) => {
    try {
      await fn();
    } catch (e) {
      ok(e instanceof cls, `${what}: expected ${cls.name}, got ${e?.constructor?.name}: ${e?.message}`);
      eq(e.status, status, `${what}: status`);
      return e;
    }
    throw new Error(`${what}: the request succeeded`);
  };
  await expectError('unknown model', OpenAI.NotFoundError, 404, () =>
    client.chat.completions.create({ model: 'no-such-model', messages: hello }));
  const bad = await expectError('max_tokens -5', OpenAI.BadRequestError, 400, () =>
    client.chat.completions.create({ model: 'r1', messages: hello, max_tokens: -5 }));
  ok(bad.message.includes('max_tokens'), `400 message does not name max_tokens: ${bad.message}`);
  eq(bad.param, 'max_tokens', 'error.param');
  const wrong = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: apiKey + 'x', maxRetries: 0, timeout: 30000 });
  await expectError('wrong api key', OpenAI.AuthenticationError, 401, () =>
    wrong.chat.completions.create({ model: 'r1', messages: hello }));
});

// 10. 32 concurrent greedy streams
await checks.run('10 32 concurrent greedy streams equal each alone', async () => {
  const subjects = ['a cat', 'a dog', 'a bird', 'a fish', 'a frog', 'a bear', 'a girl', 'a boy', 'a king', 'a queen',
    'a tree', 'a ball', 'a car', 'a boat', 'a mouse', 'a duck', 'a lion', 'a cow', 'a pig', 'a horse', 'a bee',
    'a bug', 'a star', 'a moon', 'a cake', 'a toy', 'a hat', 'a sun', 'a kid', 'a mom', 'a dad', 'a fox'];
  const prompts = subjects.map((s, i) => (i % 2 ? `Once upon a time, there was ${s}` : `One day, ${s} went to the park`));
  ok(new Set(prompts).size === 32, 'prompts not distinct');
  const params = { model: 'stories', max_tokens: 24, temperature: 0 };
  let t0 = Date.now();
  const alone = [];
  for (const prompt of prompts) alone.push((await client.completions.create({ ...params, prompt })).choices[0].text);
  const tAlone = Date.now() - t0;
  ok(alone.every((t) => t.length > 0), 'an alone text is empty');
  t0 = Date.now();
  const together = await Promise.all(prompts.map(async (prompt) => {
    const s = await client.completions.create({ ...params, prompt, stream: true });
    let text = '';
    for await (const ch of s) for (const c of ch.choices) text += c.text ?? '';
    return text;
  }));
  const tTogether = Date.now() - t0;
  const diffs = [];
  together.forEach((t, i) => {
    if (t !== alone[i]) diffs.push(`#${i} ${JSON.stringify(prompts[i])}: alone ${JSON.stringify(alone[i])} vs concurrent ${JSON.stringify(t)}`);
  });
  ok(diffs.length === 0, `${diffs.length}/32 streams differ from their alone text:\n    ${diffs.join('\n    ')}`);
  return `sequential alone ${tAlone} ms, 32 concurrent streams ${tTogether} ms`;
});

await checks.finish();

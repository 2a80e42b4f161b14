// moe serve's chat page (GET /) in headless Chromium against the real server: tests/chat_page.mjs (page loads
// clean, a wrong key's 401 is shown, the key survives a reload, a reply streams, Stop keeps the partial text)
// on the loop model, then an R1 reply whose reasoning and answer land in their own places; the server frees
// the stopped sequence.
//
//   node tests/serve_chat_page.mjs MOE_BINARY FIXDIR [SCREENSHOT.png]
//
// The server runs with --public-route /: a browser cannot send the API key when it opens the page, so with
// keys configured the page is only reachable as a public route (the API calls it makes carry the key).
// loop is listed first, so it is the page's default model: R1's 12-token reply is over in a few
// milliseconds, too fast for chat_page.mjs to see it grow, while loop streams until max_tokens or Stop.
// Screenshots: SCREENSHOT.png (chat_page.mjs: the loop conversation, the second reply stopped) and
// SCREENSHOT-r1.png (the R1 reply with its reasoning opened).
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';

import { Checks, eq, ok, parseArgs, repoDir, requirePeer, startServer } from './serve_util.mjs';

const { moe, fixdir, extra } = parseArgs();
const shot = path.resolve(extra[0] || path.join(os.tmpdir(), 'moe-chat-page.png'));
const shotR1 = shot.replace(/(\.png)?$/i, '-r1.png');
const KEY = 'sk-moe-chat-page-key';
// loop makes ~500 tokens/s here. The first reply (the server's --default-max-tokens) must stream long enough
// for the page's 15 ms sampler to see it grow even on a loaded machine; the second, long enough to be stopped,
// and short if Stop does not work.
const FIRST_MAX_TOKENS = 800;
const LONG_MAX_TOKENS = 1500;
const checks = new Checks('serve_chat_page');

function runNode(args, env) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    const kill = setTimeout(() => p.kill('SIGKILL'), 50000);
    p.on('close', (code, signal) => { clearTimeout(kill); resolve({ code, signal, out }); });
  });
}

async function metric(url, name, labels) {
  const r = await fetch(`${url}/metrics`, { headers: { Authorization: `Bearer ${KEY}` } });
  const text = await r.text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] || '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

async function main() {
  const srv = await startServer(moe, ['--model', `loop=${path.join(fixdir, 'loop.gguf')}`,
    '--model', `r1=${path.join(fixdir, 'r1.gguf')}`, '--api-key', KEY, '--public-route', '/',
    '--default-max-tokens', String(FIRST_MAX_TOKENS)]);

  await checks.run('GET / is public, the API behind it is not', async () => {
    const page = await fetch(`${srv.url}/`);
    eq(page.status, 200, 'GET / without a key');
    ok(/text\/html/.test(page.headers.get('content-type') || ''), 'GET / is not text/html');
    await page.text();
    const models = await fetch(`${srv.url}/v1/models`);
    await models.text();
    eq(models.status, 401, 'GET /v1/models without a key');
  });

  await checks.run('tests/chat_page.mjs on loop: streams, shows a wrong key\'s 401, Stop keeps the partial reply', async () => {
    const r = await runNode([path.join(repoDir, 'tests', 'chat_page.mjs'), `${srv.url}/`, KEY, shot],
      { MOE_CHAT_MAX_TOKENS: String(LONG_MAX_TOKENS), MOE_CHAT_TIMEOUT_MS: '20000' });
    const line = r.out.split('\n').find((l) => l.startsWith('{'));
    ok(r.code === 0 && line, `chat_page.mjs exited ${r.code ?? r.signal}: ${r.out.trim().slice(-600)}`);
    const s = JSON.parse(line);
    eq(s.models, ['loop', 'r1'], 'models in the picker');
    eq(s.model, 'loop', 'the model the page used');
    ok(s.auth_checked, 'the wrong-key 401 was not observed');
    return `${s.stream_observations} stream observations, stopped at ${s.stopped_partial_chars} chars, ${s.ms} ms; ${shot}`;
  });

  await checks.run('the stopped reply freed its sequence and did not run to max_tokens', async () => {
    let active = -1;
    for (let i = 0; i < 40; i++) {
      active = await metric(srv.url, 'moe_active_sequences', { model: 'loop' });
      if (active === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    eq(active, 0, 'moe_active_sequences{model="loop"} after Stop');
    const tokens = await metric(srv.url, 'moe_completion_tokens_total', { model: 'loop' });
    ok(tokens > FIRST_MAX_TOKENS && tokens < FIRST_MAX_TOKENS + LONG_MAX_TOKENS, `moe_completion_tokens_total{model="loop"} = ` +
      `${tokens}: want the first reply (${FIRST_MAX_TOKENS}) plus part of the second`);
    return `${tokens} loop tokens delivered`;
  });

  await checks.run('an R1 reply in the page: reasoning "Sure" (collapsed), answer "Yes", usage line', async () => {
    const { chromium } = requirePeer('playwright-core');
    const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
      args: ['--no-sandbox'] });
    try {
      const page = await (await browser.newContext({ viewport: { width: 1100, height: 600 } })).newPage();
      const problems = [];
      page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
      // Before the key is typed in, the page's model list request gets a 401, which the browser logs.
      page.on('console', (m) => {
        if (m.type() === 'error' && !/status of 401/.test(m.text())) problems.push(`console error: ${m.text()}`);
      });
      await page.goto(`${srv.url}/`);
      await page.fill('#apikey', KEY);
      await page.waitForFunction(() => document.body.dataset.models === 'ready', null, { timeout: 10000 });
      await page.selectOption('#model', 'r1');
      await page.fill('#input', 'Is the sky blue?');
      await page.press('#input', 'Enter');
      await page.waitForFunction(() => document.querySelectorAll('.msg.assistant').length === 1 &&
        document.body.dataset.state === 'idle', null, { timeout: 10000 });
      const got = await page.evaluate(() => {
        const m = document.querySelector('.msg.assistant');
        const d = m.querySelector('details.reasoning');
        return { reasoning: m.querySelector('.reasoning-text')?.textContent, content: m.querySelector('.content')?.textContent,
          open: d ? d.open : null, hidden: d ? d.hidden || getComputedStyle(d).display === 'none' : null,
          meta: m.querySelector('.meta')?.textContent, error: document.querySelector('#error').hidden ? '' : document.querySelector('#error').textContent };
      });
      eq(got.error, '', 'error shown');
      eq(got.reasoning, 'Sure', 'reasoning text');
      eq(got.content, 'Yes', 'answer text');
      eq(got.open, false, 'details.reasoning open after the answer');
      eq(got.hidden, false, 'details.reasoning hidden');
      ok(/prompt/.test(got.meta || '') && /12 completion/.test(got.meta || ''), `usage line: ${JSON.stringify(got.meta)}`);
      await page.click('details.reasoning summary');
      await page.screenshot({ path: shotR1, fullPage: true });
      ok(!problems.length, problems.join('; '));
      return `${got.meta}; ${shotR1}`;
    } finally {
      await browser.close();
    }
  });
}

try {
  await main();
} catch (e) {
  checks.fail('setup', (e && e.stack) || String(e));
}
await checks.finish();

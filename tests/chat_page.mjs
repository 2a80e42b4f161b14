// Drives the chat page of a running `moe serve` (or tests/mock_openai_server.mjs) in headless Chromium:
//
//   node tests/chat_page.mjs BASE_URL [API_KEY|-] [SCREENSHOT.png]
//
// Checks: the page loads with no script error, no console error and no request off its origin; with a key,
// a wrong key's 401/403 (when the server checks keys) is shown in the page, and the key survives a reload
// (localStorage); Shift+Enter adds a newline without sending; a reply to Send really streams (the text grows
// across observations while data-state is "streaming"), ends idle with non-empty text, a usage line and no
// error; Stop, pressed during a second, long reply sent with Enter, returns to idle and keeps the partial
// text, which then stops growing. Prints one JSON line; exits 1 with a message on the first failure.
// Env: MOE_PEERS (folder with node_modules/playwright-core; default <repo>/.cache/peers), CHROMIUM
// (default /usr/bin/chromium), MOE_CHAT_TIMEOUT_MS (per reply, default 180000), MOE_CHAT_MAX_TOKENS (for
// the long reply, default 2048).
import {createRequire} from 'node:module';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const peers = process.env.MOE_PEERS || path.join(repo, '.cache/peers');
const timeoutMs = Number(process.env.MOE_CHAT_TIMEOUT_MS || 180000);
const longMaxTokens = process.env.MOE_CHAT_MAX_TOKENS || '2048';

const [baseArg, keyArg, shotPath] = process.argv.slice(2);
const key = keyArg && keyArg !== '-' ? keyArg : '';
const fail = (msg) => { throw new Error(msg); };

let chromium;
try {
  ({chromium} = createRequire(path.join(peers, 'node_modules', 'x.js'))('playwright-core'));
} catch (e) {
  console.error(`chat_page: cannot load playwright-core from ${peers}/node_modules (set MOE_PEERS): ${e.message}`);
  process.exit(2);
}
if (!baseArg) {
  console.error('usage: node tests/chat_page.mjs BASE_URL [API_KEY|-] [SCREENSHOT.png]');
  process.exit(2);
}
const base = new URL(baseArg);

async function main() {
  const t0 = Date.now();
  const summary = {ok: false, url: base.href};
  const browser = await chromium.launch({executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true, args: ['--no-sandbox']});
  try {
    const context = await browser.newContext({viewport: {width: 1100, height: 800}});
    const page = await context.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
    page.on('console', (m) => {
      // The browser logs failed fetches (the wrong-key 401 below) itself; those are expected.
      if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) problems.push(`console error: ${m.text()}`);
    });
    page.on('request', (r) => {
      if (new URL(r.url()).origin !== base.origin) problems.push(`request off the origin: ${r.url()}`);
    });
    const checkProblems = () => { if (problems.length) fail(problems.join('; ')); };
    const modelsSettled = async () => {
      await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.models), null,
        {timeout: 30000});
      return page.evaluate(() => document.body.dataset.models);
    };
    const errorText = () => page.evaluate(() => {
      const e = document.querySelector('#error');
      return e.hidden ? '' : e.textContent;
    });

    const res = await page.goto(base.href);
    if (!res || !res.ok()) fail(`GET ${base.href} gave ${res ? res.status() : 'no response'}`);
    if (!/text\/html/.test(res.headers()['content-type'] || '')) {
      fail(`GET / Content-Type is ${res.headers()['content-type']}, not text/html`);
    }
    for (const id of ['model', 'apikey', 'input', 'send', 'stop', 'messages']) {
      if (!(await page.$('#' + id))) fail(`the page has no #${id}`);
    }

    if (key) {
      await page.fill('#apikey', 'wrong-' + key);
      summary.auth_checked = (await modelsSettled()) === 'error';
      if (summary.auth_checked) {
        summary.auth_error = await errorText();
        if (!/\b40[13]\b/.test(summary.auth_error) || summary.auth_error.length < 20) {
          fail(`a wrong key should show the server's 401/403 message, the page shows "${summary.auth_error}"`);
        }
      }
      await page.fill('#apikey', key);
      await page.waitForFunction(() => document.body.dataset.models === 'loading');
      await page.reload();
      if ((await page.inputValue('#apikey')) !== key) fail('the API key did not survive a reload (localStorage)');
    }
    if ((await modelsSettled()) !== 'ready') fail(`the model list did not load: ${await errorText()}`);
    summary.models = await page.$$eval('#model option', (os) => os.map((o) => o.value));
    if (!summary.models.length) fail('#model has no options');
    summary.model = await page.inputValue('#model');
    checkProblems();

    await page.click('#input');
    await page.keyboard.type('Hi');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('there');
    if ((await page.inputValue('#input')) !== 'Hi\nthere') fail('Shift+Enter should insert a newline');
    if ((await page.$$('.msg')).length) fail('Shift+Enter sent the message');
    await page.fill('#input', 'In one short sentence: what is a mixture of experts?');

    // Samples the newest reply every 15 ms in the page, so growth between samples means it was streamed
    // (a reply delivered in one piece would go from empty to full between two samples). State changes are
    // recorded as they happen, with the buttons' state, so a fast server cannot race the checks.
    const startSampler = () => page.evaluate(() => {
      window.__samples = [];
      window.__states = [];
      const sample = () => {
        const m = [...document.querySelectorAll('.msg.assistant')].pop();
        const len = (s) => (m && m.querySelector(s) ? m.querySelector(s).textContent.length : 0);
        window.__samples.push({state: document.body.dataset.state, len: len('.content') + len('.reasoning-text')});
      };
      clearInterval(window.__sampler);
      window.__sampler = setInterval(sample, 15);
      window.__observer?.disconnect();
      window.__observer = new MutationObserver(() => window.__states.push({state: document.body.dataset.state,
        send: !document.querySelector('#send').disabled, stop: !document.querySelector('#stop').disabled}));
      window.__observer.observe(document.body, {attributes: true, attributeFilter: ['data-state']});
    });
    const waitIdle = async (what) => {
      await page.waitForFunction(() => document.body.dataset.state === 'idle', null, {timeout: timeoutMs})
        .catch(() => fail(`${what}: still streaming after ${timeoutMs} ms`));
    };
    const lastReply = () => page.evaluate(() => {
      const m = [...document.querySelectorAll('.msg.assistant')].pop();
      const text = (s) => (m.querySelector(s) ? m.querySelector(s).textContent : null);
      return {content: text('.content'), reasoning: text('.reasoning-text'), meta: text('.meta'),
        has_details: !!m.querySelector('details.reasoning'), stopped: m.classList.contains('stopped'),
        details_open: m.querySelector('details.reasoning')?.open ?? null};
    });

    await startSampler();
    await page.click('#send');
    await page.waitForFunction(() => window.__states.length > 0, null, {timeout: 5000})
      .catch(() => fail('data-state did not change after Send'));
    await waitIdle('first reply');
    const {samples, states} = await page.evaluate(() => {
      clearInterval(window.__sampler);
      window.__observer.disconnect();
      return {samples: window.__samples, states: window.__states};
    });
    const streaming = states.filter((s) => s.state === 'streaming');
    if (!streaming.length) fail(`data-state never became "streaming" (${JSON.stringify(states)})`);
    if (streaming.some((s) => !s.stop || s.send)) fail('while streaming, Stop should be enabled and Send disabled');
    if (states.some((s) => s.state === 'idle' && (s.stop || !s.send))) {
      fail('when idle, Send should be enabled and Stop disabled');
    }
    const growing = new Set(samples.filter((s) => s.state === 'streaming' && s.len > 0).map((s) => s.len));
    summary.stream_observations = growing.size;
    if (growing.size < 2) {
      fail(`the reply did not stream: ${growing.size} distinct non-empty lengths seen while streaming ` +
        `(${samples.length} samples)`);
    }
    const first = await lastReply();
    const err1 = await errorText();
    if (err1) fail(`the first reply ended with an error: ${err1}`);
    if (!first.has_details) fail('the assistant message has no details.reasoning');
    if (!(first.content + first.reasoning).trim()) fail('the first reply is empty');
    if (!/prompt/.test(first.meta) || !/tokens\/s/.test(first.meta)) {
      fail(`no usage line after the first reply (meta: "${first.meta}")`);
    }
    if (first.content && first.reasoning && first.details_open) fail('reasoning stays open after the answer');
    summary.first = {content_chars: first.content.length, reasoning_chars: first.reasoning.length, meta: first.meta};

    await page.fill('#max_tokens', longMaxTokens);
    await page.fill('#input', 'Now write a long, detailed story about routers and experts. Make it very long.');
    await page.press('#input', 'Enter');
    await page.waitForFunction(() => {
      const m = [...document.querySelectorAll('.msg.assistant')].pop();
      return document.body.dataset.state !== 'streaming' ||
        (m.querySelector('.content').textContent + m.querySelector('.reasoning-text').textContent).length > 0;
    }, null, {timeout: timeoutMs}).catch(() => fail(`no text of the long reply within ${timeoutMs} ms`));
    if ((await page.evaluate(() => document.body.dataset.state)) !== 'streaming') {
      fail(`the long reply ended before Stop could be pressed (raise MOE_CHAT_MAX_TOKENS): ${await errorText()}`);
    }
    await page.click('#stop', {timeout: 3000}).catch(async () =>
      fail(`the long reply ended before Stop could be pressed (raise MOE_CHAT_MAX_TOKENS): ${await errorText()}`));
    await page.waitForFunction(() => document.body.dataset.state === 'idle', null, {timeout: 5000})
      .catch(() => fail('Stop did not return the page to idle within 5 s'));
    const stopped = await lastReply();
    const partial = stopped.content.length + stopped.reasoning.length;
    if (!partial) fail('the partial reply was dropped after Stop');
    if (!stopped.stopped) fail('the stopped reply is not marked as stopped');
    await page.waitForTimeout(400);
    const after = await lastReply();
    if (after.content.length + after.reasoning.length !== partial) fail('the reply kept growing after Stop');
    const err2 = await errorText();
    if (err2) fail(`Stop showed an error: ${err2}`);
    if ((await page.$$('.msg.assistant')).length !== 2) fail('expected two assistant messages');
    summary.stopped_partial_chars = partial;
    checkProblems();

    if (shotPath) {
      await page.screenshot({path: shotPath, fullPage: true});
      summary.screenshot = shotPath;
    }
    summary.ok = true;
    summary.ms = Date.now() - t0;
    console.log(JSON.stringify(summary));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`chat_page: FAIL: ${e.message}`);
  process.exit(1);
});

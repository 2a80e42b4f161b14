// Shared helpers for the `moe serve` end-to-end scripts (tests/serve_*.mjs).
//
//   import { startServer, Checks, parseArgs, readSse, requirePeer } from './serve_util.mjs';
//
//   const { moe, fixdir, extra } = parseArgs();          // node tests/x.mjs MOE_BINARY FIXDIR [extra...]
//   const srv = await startServer(moe, ['--model', `r1=${fixdir}/r1.gguf`]);
//   // srv.url = 'http://127.0.0.1:PORT', srv.port, srv.proc, srv.stderr(), await srv.stop()
//   const checks = new Checks('openai');
//   await checks.run('models list', async () => { ... throw / assert on failure ... });
//   checks.finish();                                      // prints the summary, exits 0 or 1 (stops servers)
//
// Only Node built-ins are used here.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const peersDir = process.env.MOE_PEERS || path.join(repoDir, '.cache', 'peers');

/** require() for the npm packages in .cache/peers (e.g. requirePeer('openai')). */
export function requirePeer(name) {
  return createRequire(path.join(peersDir, 'node_modules') + '/')(name);
}

/** Dynamic import() of a peer package by its resolved path (for ESM-only packages). */
export async function importPeer(name) {
  const req = createRequire(path.join(peersDir, 'node_modules') + '/');
  return import(req.resolve(name));
}

/** argv: MOE_BINARY FIXDIR [extra...]. Exits 2 with a usage line when they are missing. */
export function parseArgs(argv = process.argv) {
  const [moe, fixdir, ...extra] = argv.slice(2);
  if (!moe || !fixdir) {
    console.error(`usage: node ${path.basename(argv[1] || 'script.mjs')} MOE_BINARY FIXDIR [extra...]`);
    process.exit(2);
  }
  return { moe: path.resolve(moe), fixdir: path.resolve(fixdir), extra };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const live = new Set();  // servers not yet stopped: killed when this process exits, whatever the reason
process.on('exit', () => {
  for (const s of live) {
    try { s.proc.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

/** Stops every server started here and not yet stopped. */
export async function stopAll() {
  await Promise.all([...live].map((s) => s.stop()));
}

function countModelArgs(args) {
  let n = 0;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--model' || a === '-m') { n++; i++; } else if (a.startsWith('--model=')) n++;
  }
  return n;
}

/**
 * Starts `moe serve ...args` (adds `--port 0` unless args name a port) and waits until it is ready.
 * opts:
 *   timeoutMs  (60000)  give up (kill it, reject with the stderr tail) after this long
 *   headers    ({})     sent with the GET /health polls (e.g. {Authorization: 'Bearer KEY'})
 *   ready      async (srv) => bool: custom readiness test, polled instead of /health
 *   env, cwd, echo (print the server's stderr as it comes; also when MOE_SERVE_ECHO=1)
 * Default readiness: GET /health answers 200. When /health is refused (401/403: auth without a
 * metrics-scope key), readiness is every --model having printed "ready" (or "failed to load").
 * Resolves {url, port, proc, stderr(), exited, exitCode(), stop()}; stop() sends SIGTERM, waits
 * (SIGKILL after 10 s) and resolves the exit code/signal.
 */
export async function startServer(moe, args = [], opts = {}) {
  const timeoutMs = opts.timeoutMs ?? 60000;
  const full = ['serve', ...args];
  if (!args.some((a) => a === '--port' || a.startsWith('--port='))) full.push('--port', '0');
  const proc = spawn(moe, full, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd });
  const echo = opts.echo ?? process.env.MOE_SERVE_ECHO === '1';
  let err = '';
  let out = '';
  let exitInfo = null;
  proc.stderr.setEncoding('utf8');
  proc.stdout.setEncoding('utf8');
  proc.stderr.on('data', (d) => { err += d; if (echo) process.stderr.write(d); });
  proc.stdout.on('data', (d) => { out += d; });
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => { exitInfo = { code, signal }; resolve(exitInfo); });
    proc.on('error', (e) => { err += `\n[spawn error] ${e.message}\n`; exitInfo = { code: -1, signal: null }; resolve(exitInfo); });
  });
  const srv = {
    proc,
    url: null,
    port: 0,
    args: full,
    stderr: () => err,
    stdout: () => out,
    exited,
    exitCode: () => exitInfo,
    async stop() {
      live.delete(srv);
      if (!exitInfo) {
        try { proc.kill('SIGTERM'); } catch { /* gone */ }
        const t = setTimeout(() => { try { proc.kill('SIGKILL'); } catch { /* gone */ } }, 10000);
        await exited;
        clearTimeout(t);
      }
      return exitInfo;
    },
  };
  live.add(srv);
  const fail = async (why) => {
    await srv.stop();
    const tail = err.split('\n').slice(-30).join('\n');
    throw new Error(`moe serve ${why}\n  command: ${moe} ${full.join(' ')}\n  stderr tail:\n${tail}`);
  };

  const deadline = Date.now() + timeoutMs;
  // 1. the port
  while (!srv.url) {
    const m = err.match(/serve: listening on (https?):\/\/([^\s:]+):(\d+)/);
    if (m) {
      srv.port = Number(m[3]);
      const host = m[2] === '0.0.0.0' ? '127.0.0.1' : m[2] === '::' ? '[::1]' : m[2];
      srv.url = `${m[1]}://${host}:${srv.port}`;
      break;
    }
    if (exitInfo) await fail(`exited (${JSON.stringify(exitInfo)}) before listening`);
    if (Date.now() > deadline) await fail(`did not print "listening" within ${timeoutMs} ms`);
    await sleep(20);
  }
  // 2. readiness
  const nModels = countModelArgs(args);
  let authRefused = false;
  for (;;) {
    if (exitInfo) await fail(`exited (${JSON.stringify(exitInfo)}) before ready`);
    if (Date.now() > deadline) await fail(`not ready within ${timeoutMs} ms`);
    try {
      if (opts.ready) {
        if (await opts.ready(srv)) break;
      } else if (authRefused) {
        const done = (err.match(/serve: model '[^']*' (ready|failed to load)/g) || []).length;
        if (done >= nModels) break;
      } else {
        const r = await fetch(`${srv.url}/health`, { headers: opts.headers ?? {}, signal: AbortSignal.timeout(5000) });
        await r.arrayBuffer();
        if (r.status === 200) break;
        if (r.status === 401 || r.status === 403) authRefused = true;
      }
    } catch { /* not accepting yet */ }
    await sleep(50);
  }
  return srv;
}

/** Yields the parsed `data:` payloads of an SSE response body (JSON when it parses, else the raw string; '[DONE]' kept raw). */
export async function* readSse(res) {
  const dec = new TextDecoder();
  let buf = '';
  const emit = function* (block) {
    const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
    if (!data) return;
    try { yield JSON.parse(data); } catch { yield data; }
  };
  for await (const chunk of res.body) {
    buf += dec.decode(chunk, { stream: true });
    let i;
    while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i).replace(/^\r?\n\r?\n/, '');
      yield* emit(block);
    }
  }
  buf += dec.decode();
  if (buf.trim()) yield* emit(buf);
}

/** POST JSON; resolves {status, headers, body (parsed JSON or text)}. */
export async function postJson(url, body, headers = {}) {
  const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await r.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, body: parsed };
}

export class AssertionFailure extends Error {}

/** Throws with a message showing both sides when a !== b (deep, via JSON). */
export function eq(got, want, what = 'value') {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  const cut = (s) => (s !== undefined && s.length > 400 ? s.slice(0, 400) + '...' : s);
  if (g !== w) throw new AssertionFailure(`${what}: expected ${cut(w)}, got ${cut(g)}`);
}

export function ok(cond, what) {
  if (!cond) throw new AssertionFailure(what);
}

/** Named checks with a one-line summary each and a FAIL list at the end. */
export class Checks {
  constructor(title = path.basename(process.argv[1] || 'serve')) {
    this.title = title;
    this.results = [];
    this.t0 = Date.now();
  }

  /** Runs fn; a throw fails the check. fn may return a string shown on the summary line. */
  async run(name, fn) {
    const t = Date.now();
    try {
      const note = await fn();
      this.results.push({ name, pass: true, note: typeof note === 'string' ? note : '' });
      console.log(`PASS ${name} (${Date.now() - t} ms)${typeof note === 'string' && note ? ': ' + note : ''}`);
    } catch (e) {
      const msg = e instanceof AssertionFailure ? e.message : (e && e.stack) || String(e);
      this.results.push({ name, pass: false, note: msg });
      console.log(`FAIL ${name} (${Date.now() - t} ms): ${msg}`);
    }
  }

  fail(name, msg) {
    this.results.push({ name, pass: false, note: msg });
    console.log(`FAIL ${name}: ${msg}`);
  }

  get failed() { return this.results.filter((r) => !r.pass); }

  /** Stops every server, prints the summary, exits (0 only if every check passed). */
  async finish() {
    await stopAll();
    const bad = this.failed;
    const n = this.results.length;
    console.log(`${this.title}: ${n - bad.length}/${n} checks passed in ${((Date.now() - this.t0) / 1000).toFixed(1)} s`);
    if (bad.length) {
      console.log('FAIL:');
      for (const r of bad) console.log(`  - ${r.name}: ${r.note.split('\n')[0]}`);
    }
    process.exit(bad.length || n === 0 ? 1 : 0);
  }
}

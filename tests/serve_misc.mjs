// moe serve: a model repository (--models-dir with a per-model moe-serve.json), TLS, and the
// per-layer expert activation counters of a MoE model, which must add up exactly.
//
//   node tests/serve_misc.mjs MOE_BINARY FIXDIR
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';

import { Checks, parseArgs, startServer, ok, eq, postJson } from './serve_util.mjs';

const { moe, fixdir } = parseArgs();
const checks = new Checks('serve_misc');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-serve-misc-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

// ---- --models-dir -----------------------------------------------------------------------------
const repo = path.join(tmp, 'models');
fs.mkdirSync(path.join(repo, 'reasoner'), { recursive: true });
fs.copyFileSync(path.join(fixdir, 'stories.gguf'), path.join(repo, 'tiny.gguf'));
fs.copyFileSync(path.join(fixdir, 'r1.gguf'), path.join(repo, 'reasoner', 'model.gguf'));
fs.writeFileSync(path.join(repo, 'reasoner', 'moe-serve.json'), JSON.stringify({ id: 'bee', n_ctx: 64, max_seqs: 2 }));
fs.writeFileSync(path.join(repo, 'notes.txt'), 'not a model');

await checks.run('--models-dir: every model, ids from names and moe-serve.json', async () => {
  const srv = await startServer(moe, ['--models-dir', repo]);
  const models = await (await fetch(srv.url + '/v1/models')).json();
  eq(models.data.map((m) => m.id).sort(), ['bee', 'tiny'], 'model ids');
  const r = await postJson(srv.url + '/v1/chat/completions',
                           { model: 'bee', messages: [{ role: 'user', content: 'hi' }], temperature: 0 });
  eq(r.status, 200, 'chat on bee');
  eq([r.body.choices[0].message.reasoning_content, r.body.choices[0].message.content], ['Sure', 'Yes'], 'reply');
  // n_ctx 64 from moe-serve.json: a longer prompt is refused, naming the context.
  const long = await postJson(srv.url + '/v1/completions', { model: 'bee', prompt: 'word '.repeat(80) });
  eq(long.status, 400, 'prompt over the per-model context');
  ok(/context holds 64/.test(long.body.error.message), `message: ${long.body.error.message}`);
  const t = await postJson(srv.url + '/generate', { model: 'tiny', prompt: 'Once', max_length: 5 });
  eq(t.status, 200, '/generate on tiny');
  await srv.stop();
});

await checks.run('--models-dir: a folder with two GGUF files is refused at start', async () => {
  fs.copyFileSync(path.join(fixdir, 'loop.gguf'), path.join(repo, 'reasoner', 'other.gguf'));
  let msg = '';
  try {
    execFileSync(moe, ['serve', '--models-dir', repo, '--port', '0'], { stdio: 'pipe', timeout: 20000 });
  } catch (e) {
    msg = String(e.stderr);
    ok(e.status !== 0 && e.status !== null, `exit status ${e.status}`);
  }
  ok(/holds 2 \.gguf files/.test(msg), `stderr: ${msg}`);
  fs.rmSync(path.join(repo, 'reasoner', 'other.gguf'));
});

// ---- MoE expert counters ----------------------------------------------------------------------
await checks.run('expert activations per layer add up to evaluated tokens x experts per token', async () => {
  const srv = await startServer(moe, ['--model', `moe=${path.join(fixdir, 'moe.gguf')}`]);
  const r = await postJson(srv.url + '/v1/completions',
                           { model: 'moe', prompt: 'Once upon a time', max_tokens: 6, temperature: 0, ignore_eos: true });
  eq(r.status, 200, 'completion');
  const { prompt_tokens: p, completion_tokens: c } = r.body.usage;
  eq(c, 6, 'completion tokens');
  const text = await (await fetch(srv.url + '/metrics')).text();
  const perLayer = new Map();
  for (const m of text.matchAll(/^moe_expert_activations_total\{model="moe",layer="(\d+)",expert="(\d+)"\} (\S+)$/gm)) {
    perLayer.set(m[1], (perLayer.get(m[1]) ?? 0) + Number(m[3]));
  }
  // reduced deepseek-r1: 3 layers, the first dense, 2 routed experts per token. The last sampled
  // token is never evaluated, so p + c - 1 tokens went through each MoE layer.
  eq([...perLayer.keys()].sort(), ['1', '2'], 'MoE layers with counters');
  for (const [layer, sum] of perLayer) eq(sum, (p + c - 1) * 2, `routed slots in layer ${layer}`);
  await srv.stop();
  return `p=${p} c=${c}, ${[...perLayer.values()].join(' / ')} routed slots per layer`;
});

// ---- TLS --------------------------------------------------------------------------------------
await checks.run('TLS: --ssl-cert/--ssl-key serve HTTPS; plain HTTP on that port gets no reply', async () => {
  const cert = path.join(tmp, 'cert.pem');
  const key = path.join(tmp, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
                           '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
               { stdio: 'pipe' });
  const ca = fs.readFileSync(cert);
  const get = (url, p) => new Promise((resolve, reject) => {
    https.get(url + p, { ca }, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: b }));
    }).on('error', reject);
  });
  const srv = await startServer(moe, ['--model', `stories=${path.join(fixdir, 'stories.gguf')}`, '--ssl-cert', cert, '--ssl-key', key],
                                { ready: async (s) => (await get(s.url, '/health').catch(() => ({}))).status === 200 });
  ok(srv.url.startsWith('https://'), `url ${srv.url}`);
  eq((await get(srv.url, '/health')).status, 200, 'GET /health over TLS');
  const plain = await fetch(srv.url.replace('https://', 'http://') + '/health').then((r) => r.status, () => 'refused');
  ok(plain !== 200, `plain HTTP got ${plain}`);
  await srv.stop();
});

await checks.finish();

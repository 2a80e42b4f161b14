// Load test of `moe serve` (make bench): QPS and latency percentiles of short POST /generate
// requests under autocannon, then total generated tokens/s at 1, 4, 16 and 64 concurrent
// streaming chat requests.
//   node bench/serve_load.mjs MOE MODEL [DURATION_S]
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [moe, model, durArg] = process.argv.slice(2);
if (!moe || !model) {
  console.error('usage: node bench/serve_load.mjs MOE MODEL [DURATION_S]');
  process.exit(2);
}
const duration = Number(durArg || 10);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire((process.env.MOE_PEERS || path.join(repo, '.cache/peers')) + '/');
const autocannon = require('autocannon');

const proc = spawn(moe, ['serve', '-m', `bench=${model}`, '--port', '0', '--max-seqs', '64', '--max-queue', '4096',
                         '--http-threads', '256'], { stdio: ['ignore', 'ignore', 'pipe'] });
let stderr = '';
const url = await new Promise((resolve, reject) => {
  proc.stderr.on('data', (d) => {
    stderr += d;
    const m = stderr.match(/listening on (http:\/\/[^\s]+)/);
    if (m && /ready/.test(stderr)) resolve(m[1]);
  });
  proc.on('exit', () => reject(new Error('moe serve exited:\n' + stderr)));
});

try {
  const body = JSON.stringify({ prompt: 'Once upon a time', max_length: 4, temperature: 0 });
  const r = await autocannon({ url: url + '/generate', method: 'POST', body, connections: 32, duration,
                               headers: { 'content-type': 'application/json' } });
  console.log(`/generate (4 new tokens), 32 connections, ${duration} s: ${r.requests.average.toFixed(1)} req/s, ` +
              `p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, non-2xx ${r.non2xx}, errors ${r.errors}`);

  for (const conc of [1, 4, 16, 64]) {
    const t0 = performance.now();
    let tokens = 0;
    const one = async (i) => {
      const res = await fetch(url + '/v1/chat/completions', {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages: [{ role: 'user', content: `Tell story ${i}` }], max_tokens: 128,
                               temperature: 0.8, seed: i, ignore_eos: true, stream: true,
                               stream_options: { include_usage: true } }) });
      const text = await res.text();
      const m = [...text.matchAll(/"completion_tokens":(\d+)/g)];
      tokens += m.length ? Number(m[m.length - 1][1]) : 0;
    };
    await Promise.all(Array.from({ length: conc }, (_, i) => one(i)));
    const s = (performance.now() - t0) / 1000;
    console.log(`${String(conc).padStart(2)} concurrent streams x 128 tokens: ${(tokens / s).toFixed(1)} tokens/s total ` +
                `(${(tokens / s / conc).toFixed(1)} per stream), ${s.toFixed(2)} s`);
  }
} finally {
  proc.kill('SIGTERM');
}

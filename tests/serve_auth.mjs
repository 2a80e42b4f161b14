// moe serve: authentication and authorization on every route, JWTs minted here with Node's own crypto
// (independent of the server's OpenSSL code), public routes, per-key rate limits, input redaction and
// output moderation, all against real `moe serve` processes.
//
//   node tests/serve_auth.mjs MOE_BINARY FIXDIR
//
// Servers (all on port 0, stopped at the end, also on failure):
//   A  stories, --api-key-file (generate / models / metrics / admin keys), --jwt-secret, --jwt-jwks (RSA and
//      EC keys with kids), --jwt-issuer, --jwt-audience: every route x {no credential, wrong key, key without
//      the route's scope, key with it}, JWT cases (HS256/RS256/ES256 valid; expired, nbf, aud, iss, no exp,
//      bad signature, alg none, HS256-with-public-key confusion, kid of the other key type, scope claims),
//      x-api-key, an oversized token, redaction (seen through /metrics and the prompt's token count)
//   B  --public-route /health --public-route / --api-key, --jwt-public-key (EC PEM, no kid)
//   C  --api-key A --api-key B --rate-requests 3: A's 4th completion is 429 + Retry-After, B unaffected
//   D  loop, --filters {"moderation":{"blocklist":["Dog"],"blocklist_action":"redact"}}
//   E  loop, --filters {"moderation":{"rules":[{"name":"nodog","pattern":"Dog","action":"stop"}]}}
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { Checks, parseArgs, startServer, AssertionFailure, ok, eq, readSse } from './serve_util.mjs';

const { moe, fixdir } = parseArgs();
const checks = new Checks('serve_auth');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-serve-auth-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

// ---- keys and files ---------------------------------------------------------------------------------

const ISS = 'https://issuer.test';
const AUD = 'moe';
const SECRET = crypto.randomBytes(24).toString('base64url');  // 32 printable bytes
const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' });
const ecPem = ec.publicKey.export({ type: 'spki', format: 'pem' });
fs.writeFileSync(path.join(tmp, 'rsa.pem'), rsaPem);
fs.writeFileSync(path.join(tmp, 'ec.pem'), ecPem);
const jwks = {
  keys: [
    { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'rsa-1', use: 'sig', alg: 'RS256' },
    { ...ec.publicKey.export({ format: 'jwk' }), kid: 'ec-1', use: 'sig', alg: 'ES256' },
  ],
};
fs.writeFileSync(path.join(tmp, 'jwks.json'), JSON.stringify(jwks, null, 1));
const KEY = { generate: 'KEYGEN', models: 'KEYMOD', metrics: 'KEYMET', admin: 'KEYADMIN' };
fs.writeFileSync(path.join(tmp, 'keys.txt'),
  '# moe serve test keys\nKEYGEN generate\nKEYMOD models\nKEYMET metrics\nKEYADMIN admin\n');
const writeJson = (name, j) => { const f = path.join(tmp, name); fs.writeFileSync(f, JSON.stringify(j)); return f; };
const blockFile = writeJson('block.json', { moderation: { blocklist: ['Dog'], blocklist_action: 'redact' } });
const stopFile = writeJson('stop.json', { moderation: { rules: [{ name: 'nodog', pattern: 'Dog', action: 'stop' }] } });

// ---- JWTs (RFC 7515 compact serialization, by hand) --------------------------------------------------

const b64u = (s) => Buffer.from(s).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);
const claims = (over = {}) => ({ iss: ISS, aud: AUD, sub: 'tester', iat: now(), exp: now() + 600, scope: 'admin', ...over });
const drop = (obj, k) => { const o = { ...obj }; delete o[k]; return o; };
function jwt(header, payload, sign) {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
  return `${input}.${sign(input)}`;
}
const HS = (secret) => (input) => crypto.createHmac('sha256', secret).update(input).digest('base64url');
const RS = (input) => crypto.sign('sha256', Buffer.from(input), rsa.privateKey).toString('base64url');
const ES = (input) => crypto.sign('sha256', Buffer.from(input), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
const hs256 = (payload, header = {}) => jwt({ alg: 'HS256', typ: 'JWT', ...header }, payload, HS(SECRET));
const rs256 = (payload, header = {}) => jwt({ alg: 'RS256', typ: 'JWT', kid: 'rsa-1', ...header }, payload, RS);
const es256 = (payload, header = {}) => jwt({ alg: 'ES256', typ: 'JWT', kid: 'ec-1', ...header }, payload, ES);
// Changes one character in the middle of the signature (not the last one, whose low bits may be unused).
function flipSig(token) {
  const i = token.lastIndexOf('.') + 5;
  return token.slice(0, i) + (token[i] === 'A' ? 'B' : 'A') + token.slice(i + 1);
}

// ---- HTTP ---------------------------------------------------------------------------------------------

const ROUTES = [
  { method: 'GET', path: '/', scope: 'generate', want: 200 },
  { method: 'GET', path: '/health', scope: 'metrics', want: 200 },
  { method: 'GET', path: '/metrics', scope: 'metrics', want: 200 },
  { method: 'GET', path: '/v1/models', scope: 'models', want: 200 },
  { method: 'POST', path: '/generate', body: { prompt: 'Once', max_length: 2 }, scope: 'generate', want: 200 },
  { method: 'POST', path: '/v1/completions', body: { prompt: 'Once', max_tokens: 2 }, scope: 'generate', want: 200 },
  { method: 'POST', path: '/v1/chat/completions', body: { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 },
    scope: 'generate', want: 200 },
  { method: 'POST', path: '/tokenize', body: { content: 'Hi' }, scope: 'generate', want: 200 },
  { method: 'POST', path: '/detokenize', body: { tokens: [1, 2] }, scope: 'generate', want: 200 },
  { method: 'GET', path: '/no/such/route', scope: 'generate', want: 404 },
];
const SCOPES = ['generate', 'models', 'metrics'];
const label = (r) => `${r.method} ${r.path}`;
const bearer = (cred) => ({ Authorization: `Bearer ${cred}` });

// One request on a fresh connection: httplib answers a reused keep-alive connection ~40 ms late (Nagle and
// delayed ACKs), which over a few hundred requests would cost more than the whole test.
function call(base, route, headers = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(base + route.path);
    const body = route.body === undefined ? null : Buffer.from(JSON.stringify(route.body));
    const h = { ...headers };
    if (body) Object.assign(h, { 'Content-Type': 'application/json', 'Content-Length': body.length });
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: route.method, headers: h,
      agent: false, timeout: 20000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: { get: (k) => res.headers[k.toLowerCase()] ?? null }, text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${route.method} ${route.path}: no answer within 20 s`)));
    req.on('error', reject);
    req.end(body ?? undefined);
  });
}

// What a refusal must look like: the status, WWW-Authenticate on 401, an OpenAI-style error, no echo of the
// credential.
function refusalProblem(res, want, cred) {
  if (res.status !== want) return `got ${res.status}, want ${want} (${res.text.slice(0, 120)})`;
  if (want === 401 && !/^Bearer/i.test(res.headers.get('www-authenticate') || '')) {
    return `401 without "WWW-Authenticate: Bearer" (got ${JSON.stringify(res.headers.get('www-authenticate'))})`;
  }
  const type = want === 401 ? 'authentication_error' : 'permission_error';
  if (!res.json || !res.json.error || res.json.error.type !== type || typeof res.json.error.message !== 'string') {
    return `error body is not {"error":{"type":"${type}",...}}: ${res.text.slice(0, 120)}`;
  }
  if (cred && cred.length >= 6 && res.text.includes(cred)) return 'the error echoes the credential';
  return '';
}

// Calls each route with headersFor(route) and checks the outcome: 'ok' (the route's normal status) or a
// refusal status. Throws one message listing every route that differs.
async function expectOnRoutes(base, routes, headersFor, want, cred) {
  const bad = [];
  for (const r of routes) {
    const res = await call(base, r, headersFor(r));
    const w = want === 'ok' ? r.want : typeof want === 'function' ? want(r) : want;
    const p = w === 401 || w === 403 ? refusalProblem(res, w, cred) : res.status === w ? '' : `got ${res.status}, want ${w} (${res.text.slice(0, 120)})`;
    if (p) bad.push(`${label(r)}: ${p}`);
  }
  if (bad.length) throw new AssertionFailure(bad.join('; '));
  return `${routes.length} routes`;
}

async function metrics(base, headers) {
  const r = await call(base, { method: 'GET', path: '/metrics' }, headers);
  if (r.status !== 200) throw new AssertionFailure(`GET /metrics: ${r.status} ${r.text.slice(0, 120)}`);
  return r.text;
}

// Sum of the series of `name` whose labels include every pair of `labels` (0 when there is none).
function metricValue(text, name, labels = {}) {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/);
    if (!m || m[1] !== name) continue;
    const have = {};
    for (const p of (m[2] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have[p[1]] = p[2];
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

async function postJson(base, p, body, headers = {}) {
  return call(base, { method: 'POST', path: p, body }, headers);
}

// ---- the checks ---------------------------------------------------------------------------------------

const stories = `stories=${path.join(fixdir, 'stories.gguf')}`;
const loop = `loop=${path.join(fixdir, 'loop.gguf')}`;

async function main() {
  const t = ['--threads', '1'];
  const [A, B, C, D, E] = await Promise.all([
    startServer(moe, ['--model', stories, ...t, '--api-key-file', path.join(tmp, 'keys.txt'), '--jwt-secret', SECRET,
      '--jwt-jwks', path.join(tmp, 'jwks.json'), '--jwt-issuer', ISS, '--jwt-audience', AUD]),
    startServer(moe, ['--model', stories, ...t, '--public-route', '/health', '--public-route', '/',
      '--api-key', 'PUBKEY', '--jwt-public-key', path.join(tmp, 'ec.pem')]),
    startServer(moe, ['--model', stories, ...t, '--api-key', 'KEYA', '--api-key', 'KEYB', '--rate-requests', '3']),
    startServer(moe, ['--model', loop, ...t, '--filters', blockFile]),
    startServer(moe, ['--model', loop, ...t, '--filters', stopFile]),
  ]);
  const a = A.url;
  const admin = bearer(KEY.admin);

  // -- API keys on every route
  await checks.run('no credentials -> 401 on every route', () => expectOnRoutes(a, ROUTES, () => ({}), 401));
  await checks.run('wrong key -> 401 on every route',
    () => expectOnRoutes(a, ROUTES, () => bearer('KEYWRONG'), 401, 'KEYWRONG'));
  await checks.run('key without the route\'s scope -> 403 on every route',
    () => expectOnRoutes(a, ROUTES, (r) => bearer(r.scope === 'generate' ? KEY.models : KEY.generate), 403));
  await checks.run('key with the route\'s scope -> ok on every route',
    () => expectOnRoutes(a, ROUTES, (r) => bearer(KEY[r.scope]), 'ok'));
  await checks.run('admin key -> ok on every route', () => expectOnRoutes(a, ROUTES, () => admin, 'ok'));
  await checks.run('x-api-key header -> ok on every route',
    () => expectOnRoutes(a, ROUTES, () => ({ 'x-api-key': KEY.admin }), 'ok'));
  await checks.run('x-api-key without the scope -> 403; wrong x-api-key -> 401', async () => {
    await expectOnRoutes(a, ROUTES, (r) => ({ 'x-api-key': r.scope === 'generate' ? KEY.metrics : KEY.generate }), 403);
    return expectOnRoutes(a, ROUTES, () => ({ 'x-api-key': 'KEYWRONG' }), 401, 'KEYWRONG');
  });
  await checks.run('scheme: "bearer" (any case) ok, "Basic" and an empty Bearer -> 401', async () => {
    await expectOnRoutes(a, ROUTES.slice(0, 4), () => ({ Authorization: `bEaReR ${KEY.admin}` }), 'ok');
    await expectOnRoutes(a, ROUTES.slice(0, 4), () => ({ Authorization: `Basic ${Buffer.from('u:KEYADMIN').toString('base64')}` }), 401);
    return expectOnRoutes(a, ROUTES.slice(0, 4), () => ({ Authorization: 'Bearer ' }), 401);
  });

  // -- JWTs
  const valid = { HS256: hs256(claims()), RS256: rs256(claims()), ES256: es256(claims()) };
  for (const [alg, tok] of Object.entries(valid)) {
    await checks.run(`JWT ${alg} valid (scope admin) -> ok on every route`, () => expectOnRoutes(a, ROUTES, () => bearer(tok), 'ok'));
  }
  await checks.run('JWT aud as an array containing the audience -> ok; iat/nbf in the past -> ok', () =>
    expectOnRoutes(a, ROUTES.slice(0, 4), () => bearer(es256(claims({ aud: ['other', AUD], nbf: now() - 60, iat: now() - 60 }))), 'ok'));
  const badTokens = [
    ['expired (exp an hour ago)', (mint) => mint(claims({ iat: now() - 7200, exp: now() - 3600 }))],
    ['nbf an hour in the future', (mint) => mint(claims({ nbf: now() + 3600 }))],
    ['iat an hour in the future', (mint) => mint(claims({ iat: now() + 3600 }))],
    ['wrong aud', (mint) => mint(claims({ aud: 'other-service' }))],
    ['no aud', (mint) => mint(drop(claims(), 'aud'))],
    ['wrong iss', (mint) => mint(claims({ iss: 'https://evil.test' }))],
    ['no exp', (mint) => mint(drop(claims(), 'exp'))],
    ['exp not a number', (mint) => mint(claims({ exp: String(now() + 600) }))],
    ['bad signature (one character changed)', (mint) => flipSig(mint(claims()))],
    ['signature of another payload', (mint) => {
      const good = mint(claims({ scope: 'generate' }));
      const forged = mint(claims());
      return forged.slice(0, forged.lastIndexOf('.')) + good.slice(good.lastIndexOf('.'));
    }],
    ['empty signature', (mint) => { const x = mint(claims()); return x.slice(0, x.lastIndexOf('.') + 1); }],
    ['crit header', (mint) => mint(claims(), { crit: ['exp'] })],
  ];
  for (const [what, make] of badTokens) {
    await checks.run(`JWT ${what} -> 401 (HS256, RS256, ES256)`, async () => {
      for (const mint of [hs256, rs256, es256]) {
        const tok = make(mint);
        await expectOnRoutes(a, ROUTES, () => bearer(tok), 401, tok);
      }
      return `${ROUTES.length} routes x 3 algs`;
    });
  }
  const forged = [
    ['alg none with an empty signature', jwt({ alg: 'none', typ: 'JWT' }, claims(), () => '')],
    ['alg "None" with an empty signature', jwt({ alg: 'None', typ: 'JWT' }, claims(), () => '')],
    ['HS256 signed with the RSA public key PEM as HMAC secret (alg confusion)', jwt({ alg: 'HS256', typ: 'JWT', kid: 'rsa-1' }, claims(), HS(rsaPem))],
    ['HS256 signed with the EC public key PEM as HMAC secret (alg confusion)', jwt({ alg: 'HS256', typ: 'JWT', kid: 'ec-1' }, claims(), HS(ecPem))],
    ['HS256 signed with another secret', jwt({ alg: 'HS256', typ: 'JWT' }, claims(), HS(SECRET + 'x'))],
    ['RS256 header with the EC key\'s kid', rs256(claims(), { kid: 'ec-1' })],
    ['ES256 header with the RSA key\'s kid', es256(claims(), { kid: 'rsa-1' })],
    ['RS256 with an unknown kid', rs256(claims(), { kid: 'rsa-404' })],
    ['ES256 signature under an RS256 header', jwt({ alg: 'RS256', typ: 'JWT', kid: 'rsa-1' }, claims(), ES)],
    ['RS384 (unsupported alg)', jwt({ alg: 'RS384', typ: 'JWT', kid: 'rsa-1' }, claims(), RS)],
    ['two parts only', hs256(claims()).split('.').slice(0, 2).join('.')],
    ['padded base64 signature', `${hs256(claims())}=`],
  ];
  for (const [what, tok] of forged) {
    await checks.run(`JWT ${what} -> 401`, () => expectOnRoutes(a, ROUTES, () => bearer(tok), 401, tok));
  }
  await checks.run('JWT scope claim without the route\'s scope -> 403 on every route', async () => {
    for (const mint of [hs256, rs256, es256]) {
      await expectOnRoutes(a, ROUTES, (r) => bearer(mint(claims({ scope: SCOPES.filter((s) => s !== r.scope).join(' ') }))), 403);
    }
    return `${ROUTES.length} routes x 3 algs`;
  });
  await checks.run('JWT with no scope claim -> 403 on every route', () =>
    expectOnRoutes(a, ROUTES, () => bearer(rs256(drop(claims(), 'scope'))), 403));
  await checks.run('JWT scope / scp with the route\'s scope -> ok on every route', async () => {
    await expectOnRoutes(a, ROUTES, (r) => bearer(hs256(claims({ scope: `other ${r.scope}` }))), 'ok');
    return expectOnRoutes(a, ROUTES, (r) => bearer(es256(drop({ ...claims(), scp: ['other', r.scope] }, 'scope'))), 'ok');
  });
  await checks.run('a valid JWT in x-api-key -> 401 (API keys only there)', () =>
    expectOnRoutes(a, ROUTES.slice(0, 4), () => ({ 'x-api-key': valid.HS256 }), 401, valid.HS256));

  // -- large credentials. The authenticator refuses credentials over 8192 bytes (401) without parsing them;
  // httplib refuses a header line over 8192 bytes before that (400), so a 9 KB token never reaches it: either
  // refusal is fine, a crash or a dropped connection is not. Just under the limits, a token is verified.
  await checks.run('7.9 KB JWT: valid -> ok, bad signature -> 401', async () => {
    const big = hs256(claims({ pad: 'x'.repeat(5750) }));
    ok(big.length > 7800 && big.length < 8100, `token length ${big.length}`);
    await expectOnRoutes(a, ROUTES.slice(1, 4), () => bearer(big), 'ok');
    await expectOnRoutes(a, ROUTES.slice(1, 4), () => bearer(flipSig(big)), 401, big);
    return `${big.length} bytes`;
  });
  await checks.run('9 KB bearer token / x-api-key -> refused (400 or 401), server still up', async () => {
    const big = hs256(claims({ pad: 'x'.repeat(9 * 1024) }));
    const notes = [];
    for (const h of [bearer(big), { 'x-api-key': 'K'.repeat(9 * 1024) }, bearer('K'.repeat(9 * 1024))]) {
      const what = `${Object.keys(h)[0]} of ${Object.values(h)[0].length} bytes`;
      let res;
      try {
        res = await call(a, ROUTES[3], h);
      } catch (e) {
        throw new AssertionFailure(`${what}: no response (${e.code || e.message})`);
      }
      const p = res.status === 401 ? refusalProblem(res, 401, big)
        : [400, 431].includes(res.status) ? (res.text.includes('KKKKKKKK') || res.text.includes(big.slice(0, 40)) ? 'the error echoes the credential' : '')
          : `got ${res.status}, want 401 (or 400/431 from the HTTP layer): ${res.text.slice(0, 120)}`;
      if (p) throw new AssertionFailure(`${what}: ${p}`);
      notes.push(res.status);
    }
    ok(!A.exitCode(), `the server exited: ${JSON.stringify(A.exitCode())}`);
    return `statuses ${notes.join(', ')}`;
  });

  // -- redaction: /tokenize is a raw tool; completions see the redacted prompt
  const SECRET_TEXT = 'My SSN is 123-45-6789, mail bob@example.com';
  const REDACTED_TEXT = 'My SSN is [REDACTED], mail [REDACTED]';
  await checks.run('/tokenize is not redacted', async () => {
    const m0 = await metrics(a, admin);
    const tk = await postJson(a, '/tokenize', { content: SECRET_TEXT }, admin);
    eq(tk.status, 200, 'POST /tokenize status');
    const dt = await postJson(a, '/detokenize', { tokens: tk.json.tokens }, admin);
    eq(dt.status, 200, 'POST /detokenize status');
    ok(dt.json.content.includes('123-45-6789') && dt.json.content.includes('bob@example.com'),
      `tokenize/detokenize should round-trip the raw text, got ${JSON.stringify(dt.json.content)}`);
    const m1 = await metrics(a, admin);
    eq(metricValue(m1, 'moe_redactions_total'), metricValue(m0, 'moe_redactions_total'), 'moe_redactions_total after /tokenize');
  });
  for (const [route, body] of [
    ['/v1/completions', { prompt: SECRET_TEXT, max_tokens: 1 }],
    ['/v1/chat/completions', { messages: [{ role: 'user', content: SECRET_TEXT }], max_tokens: 1 }],
    ['/generate', { prompt: SECRET_TEXT, max_length: 1 }],
  ]) {
    await checks.run(`${route}: the prompt reaches the model redacted (ssn, email counters)`, async () => {
      const m0 = await metrics(a, admin);
      const res = await postJson(a, route, body, admin);
      eq(res.status, 200, `POST ${route} status`);
      const m1 = await metrics(a, admin);
      for (const rule of ['ssn', 'email']) {
        eq(metricValue(m1, 'moe_redactions_total', { rule }) - metricValue(m0, 'moe_redactions_total', { rule }), 1,
          `moe_redactions_total{rule="${rule}"} increase`);
      }
      if (route === '/v1/completions') {
        // The prompt the model saw has exactly the redacted text's tokens (and not the raw text's).
        const count = async (content) => (await postJson(a, '/tokenize', { content, add_special: true }, admin)).json.tokens.length;
        const [red, raw] = [await count(REDACTED_TEXT), await count(SECRET_TEXT)];
        ok(red !== raw, 'the raw and redacted prompts tokenize to the same length; cannot tell them apart');
        eq(res.json.usage.prompt_tokens, red, `usage.prompt_tokens (redacted text: ${red} tokens, raw: ${raw})`);
      }
      ok(!JSON.stringify(res.json).includes('123-45-6789'), 'the response contains the SSN');
    });
  }

  await checks.run('server A still answers /health with a valid key', async () => {
    const r = await call(a, ROUTES[1], bearer(KEY.metrics));
    eq(r.status, 200, 'GET /health');
    const m = await metrics(a, admin);
    ok(metricValue(m, 'moe_auth_failures_total', { status: '401' }) > 0, 'moe_auth_failures_total{status="401"} is 0');
    ok(metricValue(m, 'moe_auth_failures_total', { status: '403' }) > 0, 'moe_auth_failures_total{status="403"} is 0');
  });

  // -- server B: public routes, and a PEM public key (no kid) as the only JWT method
  const b = B.url;
  await checks.run('public routes / and /health answer without credentials; the rest 401', () =>
    expectOnRoutes(b, ROUTES, () => ({}), (r) => (r.path === '/' || r.path === '/health' ? 200 : 401)));
  await checks.run('public-route server: API key -> ok on every route', () => expectOnRoutes(b, ROUTES, () => bearer('PUBKEY'), 'ok'));
  await checks.run('--jwt-public-key EC PEM: ES256 without kid ok; RS256, HS256, other EC key -> 401', async () => {
    await expectOnRoutes(b, ROUTES, () => bearer(es256(claims({ iss: 'anyone', aud: 'anything' }), { kid: undefined })), 'ok');
    const other = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const foreign = jwt({ alg: 'ES256', typ: 'JWT' }, claims(),
      (input) => crypto.sign('sha256', Buffer.from(input), { key: other.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url'));
    const priv = ROUTES.filter((r) => r.path !== '/' && r.path !== '/health');
    for (const tok of [rs256(claims()), hs256(claims()), foreign, jwt({ alg: 'HS256', typ: 'JWT' }, claims(), HS(ecPem))]) {
      await expectOnRoutes(b, priv, () => bearer(tok), 401, tok);
    }
    return `${priv.length} private routes x 4 tokens`;
  });

  // -- server C: rate limit per key
  const c = C.url;
  await checks.run('--rate-requests 3: the 4th completion by key A is 429 with Retry-After; key B unaffected', async () => {
    const comp = { prompt: 'Once', max_tokens: 1 };
    const statuses = [];
    let last;
    for (let i = 0; i < 4; i++) {
      last = await postJson(c, '/v1/completions', comp, bearer('KEYA'));
      statuses.push(last.status);
    }
    eq(statuses, [200, 200, 200, 429], 'statuses of key A\'s 4 requests');
    const ra = last.headers.get('retry-after');
    ok(/^\d+$/.test(ra || '') && Number(ra) >= 1 && Number(ra) <= 60, `Retry-After should be 1..60 s, got ${JSON.stringify(ra)}`);
    eq(last.json?.error?.type, 'rate_limit_error', '429 error type');
    const g = await postJson(c, '/generate', { prompt: 'Once', max_length: 1 }, bearer('KEYA'));
    eq(g.status, 429, 'key A\'s 5th request (POST /generate)');
    const bStatuses = [];
    for (let i = 0; i < 3; i++) bStatuses.push((await postJson(c, '/v1/completions', comp, { 'x-api-key': 'KEYB' })).status);
    eq(bStatuses, [200, 200, 200], 'statuses of key B\'s 3 requests');
    const m = await metrics(c, bearer('KEYB'));
    ok(metricValue(m, 'moe_rate_limited_total') >= 2, 'moe_rate_limited_total should count the refusals');
    return `Retry-After: ${ra}`;
  });

  // -- servers D and E: output moderation on the loop model ("Cat</think>Dog" forever)
  const d = D.url;
  await checks.run('blocklist "Dog" (redact): completion text has [REDACTED], no Dog', async () => {
    const m0 = await metrics(d, {});
    const r = await postJson(d, '/v1/completions', { model: 'loop', prompt: 'Say it', max_tokens: 30, temperature: 0 });
    eq(r.status, 200, 'status');
    const text = r.json.choices[0].text;
    ok(!/dog/i.test(text), `the text contains Dog: ${JSON.stringify(text)}`);
    const n = text.split('[REDACTED]').length - 1;
    ok(n >= 2 && text.includes('Cat'), `expected Cat and several [REDACTED] in ${JSON.stringify(text)}`);
    const m1 = await metrics(d, {});
    const key = { rule: 'blocklist', action: 'redact' };
    eq(metricValue(m1, 'moe_moderation_events_total', key) - metricValue(m0, 'moe_moderation_events_total', key), n,
      'moe_moderation_events_total{rule="blocklist",action="redact"} increase');
    return `${n} redactions`;
  });
  await checks.run('blocklist "Dog" (redact), streamed: no Dog across chunk boundaries', async () => {
    const res = await fetch(`${d}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'loop', prompt: 'Say it', max_tokens: 30, temperature: 0, stream: true }) });
    eq(res.status, 200, 'status');
    let text = '';
    let finish = null;
    for await (const ev of readSse(res)) {
      if (ev === '[DONE]') break;
      text += ev.choices?.[0]?.text || '';
      finish = ev.choices?.[0]?.finish_reason || finish;
    }
    ok(!/dog/i.test(text), `the streamed text contains Dog: ${JSON.stringify(text)}`);
    ok(text.includes('[REDACTED]'), `no [REDACTED] in ${JSON.stringify(text)}`);
    eq(finish, 'length', 'finish_reason');
  });
  const e = E.url;
  // The stream holds back up to max_hold (64) bytes, so with max_tokens 30 (~34 bytes) the match is only
  // found when the output ends; with 100 tokens it is found while generating. Both must say content_filter.
  for (const [route, maxTokens, stream] of [['/v1/completions', 30, false], ['/v1/completions', 100, false],
    ['/v1/chat/completions', 30, false], ['/v1/chat/completions', 100, true], ['/v1/completions', 30, true]]) {
    await checks.run(`rule nodog (stop): ${route} max_tokens ${maxTokens}${stream ? ' streamed' : ''} -> content_filter, no Dog`, async () => {
      const m0 = await metrics(e, {});
      const body = { model: 'loop', max_tokens: maxTokens, temperature: 0, stream,
        ...(route === '/v1/completions' ? { prompt: 'Say it' } : { messages: [{ role: 'user', content: 'Say it' }] }) };
      let text = '';
      let finish = null;
      if (stream) {
        const res = await fetch(e + route, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
        eq(res.status, 200, 'status');
        for await (const ev of readSse(res)) {
          if (ev === '[DONE]') break;
          const ch = ev.choices?.[0];
          text += (ch?.text ?? '') + (ch?.delta?.content ?? '') + (ch?.delta?.reasoning_content ?? '');
          finish = ch?.finish_reason || finish;
        }
      } else {
        const r = await postJson(e, route, body);
        eq(r.status, 200, 'status');
        const ch = r.json.choices[0];
        text = ch.text ?? `${ch.message.reasoning_content ?? ''}${ch.message.content ?? ''}`;
        finish = ch.finish_reason;
      }
      ok(!/dog/i.test(text), `the text contains Dog: ${JSON.stringify(text)}`);
      ok(text.includes('Cat'), `the text before the stop is missing: ${JSON.stringify(text)}`);
      eq(finish, 'content_filter', `finish_reason (text ${JSON.stringify(text)})`);
      const m1 = await metrics(e, {});
      const key = { rule: 'nodog', action: 'stop' };
      eq(metricValue(m1, 'moe_moderation_events_total', key) - metricValue(m0, 'moe_moderation_events_total', key), 1,
        'moe_moderation_events_total{rule="nodog",action="stop"} increase');
      return JSON.stringify(text);
    });
  }
}

try {
  await main();
} catch (err) {
  checks.fail('setup', (err && err.stack) || String(err));
}
await checks.finish();

#!/usr/bin/env node
// Reference next-token distributions from llama.cpp (the peer, through node-llama-cpp's prebuilt CPU
// binary), for tests that compare moe.cpp's logits with llama.cpp's.
//
//   node scripts/llama-cpp-eval.mjs MODEL.gguf IDS_JSON_FILE OUT.json [--greedy N] [--threads T]
//                                   [--kv f32|f16]
//
// IDS_JSON_FILE: a JSON array of token ids, evaluated exactly as given (no BOS is added).
// OUT.json: {"n_vocab": V, "n_tokens": n, "probs": [[V floats] x n], "greedy": [N ids],
//            "kv_type": "F32", "seconds": {"load": s, "eval": s}}
//   probs[i] = softmax(logits after ids[0..i]), computed by llama.cpp in float32 from the raw logits
//   (temperature 0 puts only the greedy sampler in the chain, which leaves the logits alone).
//   Raw logits are not exposed by node-llama-cpp, so there is no "logits" field; ln(probs) equals the
//   logits up to a per-position constant (exact to float32 rounding while probs are normal floats).
//   greedy: argmax continuation from the end of the prompt (lowest id on ties); an end-of-generation
//   token is recorded and ends it early.
//
// Install the peer first (git-ignored): scripts/install-peers.sh
// stdout stays empty: llama.cpp logs only errors, and to stderr. --kv f32 (default) keeps the KV cache
// in float32 (parity with moe.cpp to ~1e-5 on stories260K); llama.cpp's default, f16, moves logits by ~3e-2.
import { createRequire } from "node:module";
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

// Set before the library loads, or it may try to fetch a llama.cpp release.
process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = "true";

function die(msg) {
  process.stderr.write(`llama-cpp-eval: ${msg}\n`);
  process.exit(2);
}
// Failures inside node-llama-cpp (missing model file, bad GGUF) become one line, not a stack.
process.on("uncaughtException", (e) => die(e?.message ?? String(e)));
process.on("unhandledRejection", (e) => die(e?.message ?? String(e)));

const args = process.argv.slice(2);
const opt = { greedy: 0, threads: 1, kv: "f32" };
const pos = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--greedy" || a === "--threads" || a === "--kv") {
    if (i + 1 >= args.length) die(`${a} needs a value`);
    opt[a.slice(2)] = a === "--kv" ? args[++i] : Number(args[++i]);
  } else pos.push(a);
}
if (pos.length !== 3) die("usage: llama-cpp-eval.mjs MODEL.gguf IDS_JSON_FILE OUT.json [--greedy N] [--threads T] [--kv f32|f16]");
if (!Number.isInteger(opt.greedy) || opt.greedy < 0) die("--greedy: not a count");
if (!Number.isInteger(opt.threads) || opt.threads < 1) die("--threads: not a positive count");
if (opt.kv !== "f32" && opt.kv !== "f16") die("--kv: f32 or f16");
const [modelPath, idsPath, outPath] = pos;

const ids = JSON.parse(readFileSync(idsPath, "utf8"));
if (!Array.isArray(ids) || ids.length === 0 || !ids.every((t) => Number.isInteger(t) && t >= 0))
  die(`${idsPath}: expected a non-empty JSON array of token ids`);

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const peers = process.env.MOE_PEERS ?? join(root, ".cache/peers");
let entry;
try {
  // node-llama-cpp is ESM-only: resolve its entry from the peers folder, then import it by URL.
  entry = createRequire(join(peers, "package.json")).resolve("node-llama-cpp");
} catch {
  die(`node-llama-cpp is not installed in ${peers}; run scripts/install-peers.sh`);
}
if (!existsSync(join(peers, "node_modules/@node-llama-cpp/linux-x64/package.json")))
  die(`@node-llama-cpp/linux-x64 (the prebuilt binary) is not installed in ${peers}; run scripts/install-peers.sh`);
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(entry).href);

const t0 = performance.now();
const llama = await getLlama({
  gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true,
  progressLogs: false, logLevel: LlamaLogLevel.error,
  logger: (level, message) => process.stderr.write(`llama.cpp ${level}: ${message}\n`),
  maxThreads: opt.threads,
});
const model = await llama.loadModel({ modelPath, gpuLayers: 0, useMmap: true });
// An out-of-range id would make llama_decode fail obscurely; the GGUF's token list gives n_vocab.
const nTokenList = model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length;
for (const t of ids) if (nTokenList != null && t >= nTokenList) die(`token id ${t} is out of range [0, ${nTokenList})`);
const total = ids.length + opt.greedy;
const context = await model.createContext({
  sequences: 1,
  contextSize: total + 1,        // padded up to a multiple of 256 by node-llama-cpp; never shifts
  batchSize: Math.max(total, 1),  // one batch for the whole prompt: a single llama_decode
  threads: { ideal: opt.threads, min: opt.threads },
  flashAttention: false,          // the plain attention path; FA changes rounding
  experimentalKvCacheKeyType: opt.kv.toUpperCase(),
  experimentalKvCacheValueType: opt.kv.toUpperCase(),
  failedCreationRemedy: false,
});
const seq = context.getSequence();
const t1 = performance.now();

// Every prompt position yields its full distribution; the last one also picks the first greedy token.
const gen = { probabilities: true, token: true, options: { temperature: 0 } };
const out = await seq.controlledEvaluate(ids.map((t) => [t, { generateNext: gen }]));
// Each map holds every token (llama.cpp's candidate array is the whole vocabulary), sorted by p.
const nVocab = out[0]?.next?.probabilities?.size;
const probs = [];
for (let i = 0; i < ids.length; i++) {
  const m = out[i]?.next?.probabilities;
  if (m == null || m.size !== nVocab) die(`position ${i}: no full distribution from llama.cpp`);
  const row = new Array(nVocab);
  for (const [tok, p] of m) row[tok] = p;
  probs.push(row);
}

const greedy = [];
let next = out[ids.length - 1].next.token;
while (greedy.length < opt.greedy && next != null) {
  greedy.push(next);
  if (greedy.length === opt.greedy || model.isEogToken(next)) break;  // an EOG token ends the list
  const r = await seq.controlledEvaluate([[next, { generateNext: { token: true, options: { temperature: 0 } } }]]);
  next = r[0]?.next?.token;
}
const t2 = performance.now();

writeFileSync(outPath, JSON.stringify({
  n_vocab: nVocab, n_tokens: ids.length, probs, greedy, kv_type: opt.kv.toUpperCase(),
  seconds: { load: (t1 - t0) / 1000, eval: (t2 - t1) / 1000 },
}));
await context.dispose();
await model.dispose();
await llama.dispose();

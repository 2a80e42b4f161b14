#!/usr/bin/env node
// llama.cpp's prompt-processing and generation speed (the peer, through node-llama-cpp's prebuilt
// CPU binary), measured like llama-bench's pp and tg tests, for bench/vs_llamacpp.sh.
//
//   node scripts/llama-cpp-bench.mjs MODEL.gguf THREADS P N REPS
//
// pp: P random token ids (fixed seed) as one batch into an empty sequence, logits for the last one.
// tg: N tokens one at a time into an empty sequence, each computing its logits and feeding back
//     the greedy pick (as `moe bench` does); a greedy pick over the vocabulary is cheap next to a
//     forward pass. Each repetition clears the sequence; the medians are reported. One untimed
//     warm-up of a few tokens comes first, and the whole file is read once beforehand so that no
//     mmap page faults are timed.
// Prints one JSON line: {"pp_tok_s": x, "tg_tok_s": y, "threads": t, ...}. llama.cpp's KV cache is
// its default (f16); flash attention off.
//
// Install the peer first (git-ignored): scripts/install-peers.sh
import { createRequire } from "node:module";
import { existsSync, openSync, readSync, closeSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

// Set before the library loads, or it may try to fetch a llama.cpp release.
process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = "true";

function die(msg) {
  process.stderr.write(`llama-cpp-bench: ${msg}\n`);
  process.exit(2);
}
process.on("uncaughtException", (e) => die(e?.message ?? String(e)));
process.on("unhandledRejection", (e) => die(e?.message ?? String(e)));

const args = process.argv.slice(2);
if (args.length !== 5) die("usage: llama-cpp-bench.mjs MODEL.gguf THREADS P N REPS");
const [modelPath] = args;
const [threads, nPrompt, nGen, reps] = args.slice(1).map(Number);
if (!Number.isInteger(threads) || threads < 1) die(`THREADS: not a positive count: ${args[1]}`);
if (!Number.isInteger(nPrompt) || nPrompt < 1) die(`P: must be at least 1: ${args[2]}`);
if (!Number.isInteger(nGen) || nGen < 0) die(`N: not a count: ${args[3]}`);
if (!Number.isInteger(reps) || reps < 1) die(`REPS: must be at least 1: ${args[4]}`);
if (!existsSync(modelPath)) die(`${modelPath}: no such file`);

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

// Reads the whole file once so that its pages are in the page cache before anything is timed
// (a warm-up of a few tokens would leave most routed experts untouched).
function readWhole(path) {
  const fd = openSync(path, "r");
  const buf = Buffer.allocUnsafe(1 << 24);
  try {
    while (readSync(fd, buf, 0, buf.length, null) > 0);
  } finally {
    closeSync(fd);
  }
}

// A small fixed-seed generator (mulberry32) for the prompt ids.
function rng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};

readWhole(modelPath);
const llama = await getLlama({
  gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true,
  progressLogs: false, logLevel: LlamaLogLevel.error,
  logger: (level, message) => process.stderr.write(`llama.cpp ${level}: ${message}\n`),
  maxThreads: threads,  // the splitter's ceiling; the context asks for exactly this many
});
const model = await llama.loadModel({ modelPath, gpuLayers: 0, useMmap: true });
const nVocab = model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length;
if (!Number.isInteger(nVocab) || nVocab < 1) die(`${modelPath}: no tokenizer.ggml.tokens to take the vocabulary size from`);
// One context for every repetition (a second live context would take a share of the threads).
const context = await model.createContext({
  sequences: 1,
  contextSize: Math.max(nPrompt, nGen, 8) + 1,  // padded up by node-llama-cpp; never shifts
  batchSize: Math.max(nPrompt, 8),               // the prompt is one llama_decode
  threads: { ideal: threads, min: threads },
  flashAttention: false,
  failedCreationRemedy: false,
});
const seq = context.getSequence();

const next = rng(1234);
const prompt = Array.from({ length: nPrompt }, () => Math.floor(next() * nVocab));
const firstGen = Math.floor(next() * nVocab);
const greedy = { token: true, options: { temperature: 0 } };

// Evaluates ids as one batch; returns the greedy pick after the last one.
async function decode(ids) {
  const items = ids.map((t, i) => (i === ids.length - 1 ? [t, { generateNext: greedy }] : t));
  const out = await seq.controlledEvaluate(items);
  const tok = out[ids.length - 1]?.next?.token;
  if (tok == null) die("llama.cpp returned no token");
  return tok;
}

// Warm-up: a few prompt tokens and one generated one.
await seq.clearHistory();
await decode([firstGen]);
await decode(prompt.slice(0, Math.min(nPrompt, 4)));
const usedThreads = context.currentThreads;
if (usedThreads !== threads) die(`llama.cpp runs ${usedThreads} threads, not the ${threads} asked for`);

const pp = [];
const tg = [];
for (let r = 0; r < reps; r++) {
  await seq.clearHistory();
  let t0 = performance.now();
  await decode(prompt);
  pp.push(nPrompt / ((performance.now() - t0) / 1000));
  if (nGen > 0) {
    await seq.clearHistory();
    let tok = firstGen;
    t0 = performance.now();
    for (let i = 0; i < nGen; i++) tok = await decode([tok]);
    tg.push(nGen / ((performance.now() - t0) / 1000));
  }
}

process.stdout.write(JSON.stringify({
  model: modelPath, threads: context.currentThreads, n_prompt: nPrompt, n_gen: nGen, reps,
  pp_tok_s: median(pp), tg_tok_s: tg.length ? median(tg) : null,
}) + "\n");
await context.dispose();
await model.dispose();
await llama.dispose();

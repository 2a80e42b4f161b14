#!/usr/bin/env node
// Token ids from the real Hugging Face tokenizers library (Rust, through the prebuilt npm binding
// @anush008/tokenizers) — the oracle for moe.cpp's byte-level BPE.
//
//   node scripts/hf-tokenizer-ids.mjs TOKENIZER_JSON CORPUS_JSONL > IDS
//       one line per corpus line ({"text": ...}): the ids, space-separated (special tokens
//       parsed, no BOS/EOS: encode(text, null, {addSpecialTokens: false})).
//   node scripts/hf-tokenizer-ids.mjs --bench TOKENIZER_JSON TEXT_FILE [CHUNK_BYTES] [REPEATS]
//       single-thread encode throughput: the file is cut into chunks at line ends and only the
//       encode calls are timed. Prints one JSON line.
//
// Install the peer first (git-ignored): npm install --prefix .cache/peers @anush008/tokenizers
// Keep RAYON_NUM_THREADS=1 for the benchmark (set below before the library loads).
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

process.env.RAYON_NUM_THREADS ??= "1";
process.env.TOKENIZERS_PARALLELISM ??= "false";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(process.env.MOE_PEERS ?? join(root, ".cache/peers"), "package.json"));
const { Tokenizer } = require("@anush008/tokenizers");

// Cuts buf (bytes) at the first line end at or after every size bytes, as
// bench/tokenizer_bench.cpp does, so that both see the same pieces.
function chunks(buf, size) {
  const out = [];
  let start = 0;
  while (start < buf.length) {
    const nl = buf.indexOf(10, Math.min(buf.length, start + size));
    const end = nl < 0 ? buf.length : nl + 1;
    out.push(buf.subarray(start, end).toString("utf8"));
    start = end;
  }
  return out;
}

async function ids(tokenizerPath, corpusPath) {
  const tok = Tokenizer.fromFile(tokenizerPath);
  const lines = readFileSync(corpusPath, "utf8").split("\n").filter((l) => l.length > 0);
  const out = [];
  for (const line of lines) {
    const { text } = JSON.parse(line);
    const enc = await tok.encode(text, null, { addSpecialTokens: false });
    out.push(enc.getIds().join(" "));
  }
  process.stdout.write(out.join("\n") + "\n");
}

async function bench(tokenizerPath, textPath, chunkBytes = 65536, repeats = 3) {
  const tok = Tokenizer.fromFile(tokenizerPath);
  const buf = readFileSync(textPath);
  const parts = chunks(buf, Number(chunkBytes));
  await tok.encode(parts[0], null, { addSpecialTokens: false });  // warm up
  let best = Infinity;
  let tokens = 0;
  for (let r = 0; r < Number(repeats); ++r) {
    let elapsed = 0n;
    tokens = 0;
    for (const p of parts) {
      const t0 = process.hrtime.bigint();
      const enc = await tok.encode(p, null, { addSpecialTokens: false });
      elapsed += process.hrtime.bigint() - t0;
      tokens += enc.getIds().length;
    }
    best = Math.min(best, Number(elapsed) / 1e9);
  }
  const mb = buf.length / 1e6;
  console.log(JSON.stringify({ impl: "hf-tokenizers", bytes: buf.length, tokens, seconds: best,
                               mb_per_s: mb / best }));
}

const args = process.argv.slice(2);
if (args[0] === "--bench") {
  await bench(...args.slice(1));
} else if (args.length === 2) {
  await ids(args[0], args[1]);
} else {
  console.error("usage: hf-tokenizer-ids.mjs TOKENIZER_JSON CORPUS_JSONL | --bench TOKENIZER_JSON TEXT [CHUNK] [REPEATS]");
  process.exit(2);
}

#!/usr/bin/env node
// Compares moe.cpp's logits (`moe logits --out OURS.npy`, float32 [n_tokens, n_vocab]) with llama.cpp's
// distributions (scripts/llama-cpp-eval.mjs OUT.json). Written in node, not Python: /usr/bin/python3
// has no numpy here.
//
//   node scripts/compare-llama-cpp.mjs OURS.npy THEIRS.json [--greedy ID,ID,...]
//
// Prints one JSON line:
//   {"n_tokens", "n_vocab",
//    "max_dp": [per position max_v |softmax(ours)_v - theirs_v|],
//    "max_dlogit": [per position max_v |(ours_v - max ours) - (ln theirs_v - ln max theirs)|],
//    "argmax_match": [per position bool], "max_dp_all", "max_dlogit_all", "all_argmax_match",
//    with --greedy: "greedy_match" (ours equals theirs.greedy), "greedy_first_diff" (index, -1 if none)}
// Logits are compared up to the per-position constant that softmax drops (llama.cpp only gives
// probabilities), each side centred on its own max; tokens whose llama.cpp probability is below the
// smallest normal float32 are left out of max_dlogit, their logarithm having lost its precision.
// Exit status: 0 when compared (judging the numbers is the caller's job), 1 if the shapes differ,
// 2 on bad input.
import { readFileSync } from "node:fs";

function die(msg, code = 2) {
  process.stderr.write(`compare-llama-cpp: ${msg}\n`);
  process.exit(code);
}

// Just enough of the .npy format for what write_npy_f32 produces: v1/v2 header, '<f4', C order.
function readNpyF32(path) {
  const b = readFileSync(path);
  if (b.toString("latin1", 0, 6) !== "\x93NUMPY") die(`${path}: not a .npy file`);
  const major = b[6];
  const hlen = major === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + hlen;
  const header = b.toString("latin1", major === 1 ? 10 : 12, start);
  if (!/'descr':\s*'<f4'/.test(header) || /'fortran_order':\s*True/.test(header))
    die(`${path}: expected little-endian float32 in C order, header ${header.trim()}`);
  const shape = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(",").filter((s) => s.trim()).map(Number);
  const n = shape.reduce((a, x) => a * x, 1);
  if (b.length - start < n * 4) die(`${path}: truncated`);
  // Copy out: the buffer's data offset need not be 4-byte aligned.
  const data = new Float32Array(b.buffer.slice(b.byteOffset + start, b.byteOffset + start + n * 4));
  return { shape, data };
}

const args = process.argv.slice(2);
let oursGreedy = null;
const gi = args.indexOf("--greedy");
if (gi >= 0) {
  oursGreedy = (args[gi + 1] ?? "").split(/[\s,]+/).filter(Boolean).map(Number);
  args.splice(gi, 2);
}
if (args.length !== 2) die("usage: compare-llama-cpp.mjs OURS.npy THEIRS.json [--greedy ID,ID,...]");
const ours = readNpyF32(args[0]);
const theirs = JSON.parse(readFileSync(args[1], "utf8"));
const [n, V] = ours.shape;
if (ours.shape.length !== 2 || n !== theirs.probs.length || V !== theirs.n_vocab ||
    theirs.probs.some((r) => r.length !== V))
  die(`shapes differ: ours [${ours.shape}], theirs [${theirs.probs.length}, ${theirs.n_vocab}]`, 1);

const FLT_MIN = 1.1754943508222875e-38;
const argmax = (a) => a.reduce((best, x, i) => (x > a[best] ? i : best), 0);
const res = { n_tokens: n, n_vocab: V, max_dp: [], max_dlogit: [], argmax_match: [] };
for (let i = 0; i < n; i++) {
  const l = ours.data.subarray(i * V, (i + 1) * V);
  const p = theirs.probs[i];
  const lmax = l[argmax(l)];
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(l[v] - lmax);
  const lnPmax = Math.log(p[argmax(p)]);
  let dp = 0, dl = 0;
  for (let v = 0; v < V; v++) {
    dp = Math.max(dp, Math.abs(Math.exp(l[v] - lmax) / sum - p[v]));
    if (p[v] >= FLT_MIN) dl = Math.max(dl, Math.abs(l[v] - lmax - (Math.log(p[v]) - lnPmax)));
  }
  res.max_dp.push(dp);
  res.max_dlogit.push(dl);
  res.argmax_match.push(argmax(l) === argmax(p));
}
res.max_dp_all = Math.max(...res.max_dp);
res.max_dlogit_all = Math.max(...res.max_dlogit);
res.all_argmax_match = res.argmax_match.every(Boolean);
if (oursGreedy) {
  const g = theirs.greedy, m = Math.min(g.length, oursGreedy.length);
  let d = -1;
  for (let k = 0; k < m && d < 0; k++) if (g[k] !== oursGreedy[k]) d = k;
  if (d < 0 && g.length !== oursGreedy.length) d = m;  // one stopped early (e.g. at EOS)
  res.greedy_match = d < 0;
  res.greedy_first_diff = d;
}
console.log(JSON.stringify(res));

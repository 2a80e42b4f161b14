#!/usr/bin/python3
"""Minimal GGUF v3 reader: a model's tensors as param.<name>.npy and its hyperparameters as the
config.json of scripts/train_reference.py.

Usage:
  /usr/bin/python3 scripts/gguf_to_npy.py MODEL.gguf DIR
      writes DIR/config.json and DIR/param.<name>.npy (float32, shape = GGUF ne reversed)
  /usr/bin/python3 scripts/gguf_to_npy.py --strip-rope-scaling IN.gguf OUT.gguf
      copies IN without the rope.scaling.* keys (so deepseek2 files from `moe init` run plain RoPE
      and the default softmax scale 1/sqrt(head_dim_k) in the engine)

Tensors of type F32, F16 or BF16 only. The newer MLA layout (attn_k_b ne {nope, rank, H},
attn_v_b ne {rank, dv, H}) is merged back into the older attn_kv_b ne {rank, H*(nope+dv)} (per
head nope rows of W_k then dv rows of W_v) the trainer uses. A missing output.weight (tied
embeddings) becomes a copy of token_embd.weight. The config mirrors src/model/config.cpp,
llama.cpp and deepseek2.cpp, plus the optional rope_* YaRN keys train_reference.py understands.
"""
import json
import math
import os
import struct
import sys

import numpy as np

# GGUF metadata value types -> struct format (8 string, 9 array handled separately)
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_F32, _F16, _BF16 = 0, 1, 30


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = bytes(self.data[self.pos:self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return s

    def value(self, t):
        if t in _SCALAR:
            return self.take(_SCALAR[t])
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("<I"), self.take("<Q")
            return [self.value(et) for _ in range(n)]
        raise ValueError(f"unknown GGUF value type {t}")


def parse(data):
    """Returns (metadata {key: value}, kv spans [(key, start, end)], tensors [dict], tensor-info span, data offset)."""
    r = Reader(data)
    if bytes(data[:4]) != b"GGUF":
        raise ValueError("not a GGUF file")
    r.pos = 4
    version = r.take("<I")
    if version != 3:
        raise ValueError(f"GGUF version {version} (only 3 is supported)")
    n_tensors, n_kv = r.take("<Q"), r.take("<Q")
    meta, spans = {}, []
    for _ in range(n_kv):
        start = r.pos
        key = r.string()
        meta[key] = r.value(r.take("<I"))
        spans.append((key, start, r.pos))
    tstart = r.pos
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.take("<I")
        ne = [r.take("<Q") for _ in range(nd)]
        tensors.append({"name": name, "ne": ne, "type": r.take("<I"), "offset": r.take("<Q")})
    tend = r.pos
    align = meta.get("general.alignment", 32)
    data_off = (r.pos + align - 1) // align * align
    return meta, spans, tensors, (tstart, tend), data_off


def tensor_array(data, data_off, t):
    n = int(np.prod(t["ne"]))
    off = data_off + t["offset"]
    if t["type"] == _F32:
        a = np.frombuffer(data, dtype="<f4", count=n, offset=off)
    elif t["type"] == _F16:
        a = np.frombuffer(data, dtype="<f2", count=n, offset=off).astype(np.float32)
    elif t["type"] == _BF16:
        a = (np.frombuffer(data, dtype="<u2", count=n, offset=off).astype(np.uint32) << 16).view(np.float32)
    else:
        raise ValueError(f"tensor {t['name']}: type {t['type']} is not F32/F16/BF16")
    return np.array(a, dtype=np.float32).reshape(list(reversed(t["ne"])))


def make_config(meta, tensors):
    arch = meta["general.architecture"]
    if arch not in ("llama", "deepseek2"):
        raise ValueError(f"architecture {arch!r} (only llama and deepseek2)")
    p = arch + "."
    g = lambda k, d=None: meta.get(p + k, d)  # noqa: E731
    embd = next(t for t in tensors if t["name"] == "token_embd.weight")
    n_embd, n_head = g("embedding_length"), g("attention.head_count")
    c = {
        "arch": arch, "n_vocab": embd["ne"][1], "n_embd": n_embd, "n_layer": g("block_count"),
        "n_head": n_head, "n_head_kv": g("attention.head_count_kv", n_head),
        "head_dim_k": g("attention.key_length", n_embd // n_head),
        "head_dim_v": g("attention.value_length", n_embd // n_head),
        "n_ff": g("feed_forward_length", 0), "rms_eps": g("attention.layer_norm_rms_epsilon", 1e-5),
        "rope_freq_base": g("rope.freq_base", 10000.0), "kq_scale": 0.0,
        "n_expert": g("expert_count", 0), "n_expert_used": g("expert_used_count", 0),
        "n_expert_shared": 0, "n_ff_exp": 0, "n_layer_dense_lead": 0, "gating_sigmoid": False,
        "expert_weights_norm": True, "expert_weights_scale": 1.0, "n_expert_groups": 0, "n_group_used": 0,
        "q_lora_rank": 0, "kv_lora_rank": 0, "qk_nope_dim": 0,
        "aux_alpha": 0.0, "lr": 1e-3, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8,
        "max_grad_norm": 0.0, "precision": "f32",
    }
    c["rope_n_rot"] = g("rope.dimension_count", c["head_dim_k"])
    if any(t["name"] == "rope_freqs.weight" for t in tensors):
        raise ValueError("rope_freqs.weight (Llama 3 frequency factors) is not supported")
    scaling = g("rope.scaling.type", "none")
    factor = g("rope.scaling.factor", 0.0) or g("rope.scale_linear", 0.0)
    if scaling in ("linear", "yarn"):
        c["rope_freq_scale"] = 1.0 / factor
    if scaling == "yarn":
        c["rope_ext_factor"] = 1.0
        c["rope_n_ctx_orig"] = g("rope.scaling.original_context_length", g("context_length", 2048))
        c["rope_beta_fast"] = g("rope.scaling.yarn_beta_fast", 32.0)
        c["rope_beta_slow"] = g("rope.scaling.yarn_beta_slow", 1.0)
    if arch == "llama":
        if c["n_expert"] > 0:
            c["n_ff_exp"] = g("expert_feed_forward_length", c["n_ff"])
            c["expert_weights_norm"] = g("expert_weights_norm", True)
            c["expert_weights_scale"] = g("expert_weights_scale", 1.0)
    else:  # deepseek2 (src/model/deepseek2.cpp)
        c["q_lora_rank"] = g("attention.q_lora_rank", 0)
        c["kv_lora_rank"] = g("attention.kv_lora_rank", 0)
        if p + "attention.key_length_mla" in meta:
            c["head_dim_k"] = g("attention.key_length_mla")
            c["head_dim_v"] = g("attention.value_length_mla")
        c["n_head_kv"] = n_head
        c["qk_nope_dim"] = c["head_dim_k"] - c["rope_n_rot"]
        c["n_layer_dense_lead"] = g("leading_dense_block_count", 0)
        c["n_ff_exp"] = g("expert_feed_forward_length", 0)
        c["n_expert_shared"] = g("expert_shared_count", 0)
        c["expert_weights_scale"] = g("expert_weights_scale", 1.0)
        c["expert_weights_norm"] = g("expert_weights_norm", False)
        c["gating_sigmoid"] = g("expert_gating_func", 1) == 2
        c["n_expert_groups"] = g("expert_group_count", 0)
        c["n_group_used"] = g("expert_group_used_count", 0)
        mscale = 1.0
        if scaling == "yarn":
            log_factor = math.log(factor)
            c["rope_attn_factor"] = 1.0 / (1.0 + 0.1 * log_factor)
            mscale = 1.0 + g("rope.scaling.yarn_log_multiplier", 0.0) * log_factor
        c["kq_scale"] = mscale * mscale / math.sqrt(c["head_dim_k"])
    return c


def convert(path, out):
    with open(path, "rb") as f:
        data = memoryview(f.read())
    meta, _, tensors, _, data_off = parse(data)
    c = make_config(meta, tensors)
    arrays = {t["name"]: tensor_array(data, data_off, t) for t in tensors}
    # Newer MLA layout -> attn_kv_b. k_b numpy [H, rank, nope] holds W_k transposed per head;
    # v_b numpy [H, dv, rank] holds W_v. attn_kv_b numpy [H*(nope+dv), rank].
    for name in [n for n in arrays if n.endswith("attn_k_b.weight")]:
        b = name[:-len("attn_k_b.weight")]
        k_b, v_b = arrays.pop(name), arrays.pop(b + "attn_v_b.weight")
        H, rank = k_b.shape[0], k_b.shape[1]
        arrays[b + "attn_kv_b.weight"] = np.concatenate((k_b.transpose(0, 2, 1), v_b), axis=1).reshape(-1, rank)
    if "output.weight" not in arrays:
        arrays["output.weight"] = arrays["token_embd.weight"].copy()
    os.makedirs(out, exist_ok=True)
    for n, a in arrays.items():
        np.save(os.path.join(out, f"param.{n}.npy"), np.ascontiguousarray(a))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(c, f, indent=1)


def strip_rope_scaling(src, dst):
    """Rewrites src without its rope.scaling.* keys; tensor infos and data are copied byte for byte."""
    with open(src, "rb") as f:
        data = memoryview(f.read())
    meta, spans, tensors, (tstart, tend), data_off = parse(data)
    keep = [(k, s, e) for k, s, e in spans if ".rope.scaling." not in k]
    head = bytearray(b"GGUF") + struct.pack("<IQQ", 3, len(tensors), len(keep))
    for _, s, e in keep:
        head += data[s:e]
    head += data[tstart:tend]
    align = meta.get("general.alignment", 32)
    head += b"\0" * ((-len(head)) % align)
    with open(dst, "wb") as f:
        f.write(head)
        f.write(data[data_off:])


def main():
    a = sys.argv[1:]
    if len(a) == 3 and a[0] == "--strip-rope-scaling":
        strip_rope_scaling(a[1], a[2])
    elif len(a) == 2:
        convert(a[0], a[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

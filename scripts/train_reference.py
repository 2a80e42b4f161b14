#!/usr/bin/python3
"""PyTorch oracle for `moe train`: loss, gradients and one AdamW step of the decoder family.

Written independently from the C++ trainer, from the spec in src/train/train_model.h and
src/train/ops.h and the inference code in src/model/. Everything runs in float64 (parameters are
converted from their float32 files) so it can serve as an accurate reference for the f32 trainer.

Usage: /usr/bin/python3 scripts/train_reference.py DIR

DIR holds
  config.json          hyperparameters (see load_config for the keys)
  tokens.npy           int32 [B, T+1]: inputs tokens[:, :T], targets tokens[:, 1:]
  param.<name>.npy     float32, one per parameter, shape = GGUF ne reversed
and receives
  result.json          {"loss", "aux", "total", "grad_norm"} (grad_norm before clipping)
  grad.<name>.npy      float32 d(total)/d(param) (zeros for exp_probs_b.bias)
  step.<name>.npy      float32 param after one torch.optim.AdamW step
  logits.npy           float32 [B*T, n_vocab]

Optional config keys, used only to check the forward against the inference engine on files that
use YaRN (scripts/check_reference_vs_engine.sh); the trainer itself has no YaRN:
  rope_freq_scale (1), rope_ext_factor (0), rope_attn_factor (1), rope_n_ctx_orig,
  rope_beta_fast (32), rope_beta_slow (1)
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

DTYPE = torch.float64


def load_config(d):
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    defaults = {
        "n_expert": 0, "n_expert_used": 0, "n_expert_shared": 0, "n_ff_exp": 0, "n_layer_dense_lead": 0,
        "gating_sigmoid": False, "expert_weights_norm": False, "expert_weights_scale": 1.0,
        "n_expert_groups": 0, "n_group_used": 0, "q_lora_rank": 0, "kv_lora_rank": 0, "qk_nope_dim": 0,
        "kq_scale": 0.0, "aux_alpha": 0.0, "lr": 1e-3, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.95,
        "eps": 1e-8, "max_grad_norm": 0.0, "precision": "f32",
        "rope_freq_scale": 1.0, "rope_ext_factor": 0.0, "rope_attn_factor": 1.0, "rope_n_ctx_orig": 0,
        "rope_beta_fast": 32.0, "rope_beta_slow": 1.0,
    }
    for k, v in defaults.items():
        c.setdefault(k, v)
    if c["precision"] != "f32":
        # The oracle is always float64; lower-precision trainers are compared against it loosely.
        print(f"note: precision {c['precision']!r} requested; the reference computes in float64",
              file=sys.stderr)
    return c


def load_params(d):
    """{gguf name: float32 numpy array} of every param.<name>.npy in d."""
    params = {}
    for fn in sorted(os.listdir(d)):
        if fn.startswith("param.") and fn.endswith(".npy"):
            params[fn[len("param."):-len(".npy")]] = np.load(os.path.join(d, fn))
    return params


def is_moe_layer(c, il):
    return c["n_expert"] > 0 and il >= c["n_layer_dense_lead"]


# ---- building blocks ------------------------------------------------------------------------

def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def linear(x, w):
    """y = x W^T with W [out, in] (GGUF ne {in, out})."""
    return x @ w.t()


def swiglu_ffn(h, gate, up, down):
    return linear(F.silu(linear(h, gate)) * linear(h, up), down)


def rope_cos_sin(c, T):
    """cos, sin [T, n_rot/2] of pair i at position t: angle t * base^(-2i/n_rot).

    With the optional YaRN keys this is ggml's rope_yarn (llama.cpp / src/kernels/ref): the angle
    mixes interpolated (t * freq_scale) and extrapolated angles by a ramp over the pair index, and
    cos/sin are multiplied by attn_factor * (1 + 0.1 ln(1/freq_scale)).
    """
    n_rot, base = c["rope_n_rot"], c["rope_freq_base"]
    i = torch.arange(n_rot // 2, dtype=DTYPE)
    pos = torch.arange(T, dtype=DTYPE)
    theta_extrap = pos[:, None] * base ** (-2.0 * i[None, :] / n_rot)
    fs, ext = c["rope_freq_scale"], c["rope_ext_factor"]
    theta = fs * theta_extrap
    mscale = c["rope_attn_factor"]
    if ext != 0.0:
        def corr_dim(beta):
            return n_rot * math.log(c["rope_n_ctx_orig"] / (beta * 2 * math.pi)) / (2 * math.log(base))
        low = max(0.0, math.floor(corr_dim(c["rope_beta_fast"])))
        high = min(float(n_rot - 1), math.ceil(corr_dim(c["rope_beta_slow"])))
        y = (i - low) / max(0.001, high - low)
        ramp_mix = (1.0 - y.clamp(0.0, 1.0)) * ext
        theta = theta * (1 - ramp_mix) + theta_extrap * ramp_mix
        mscale *= 1.0 + 0.1 * math.log(1.0 / fs)
    return torch.cos(theta) * mscale, torch.sin(theta) * mscale


def rope(x, cos, sin):
    """Rotates adjacent pairs (x[2i], x[2i+1]) of the last dim. x [B, T, heads, n_rot]; cos/sin [T, n_rot/2]."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


def causal_attention(q, k, v, scale):
    """q [B, T, H, dk], k [B, T, Hkv, dk], v [B, T, Hkv, dv] -> [B, T, H*dv]. Head h reads kv head h // (H/Hkv)."""
    B, T, H, _ = q.shape
    group = H // k.shape[2]
    if group > 1:
        k = k.repeat_interleave(group, dim=2)
        v = v.repeat_interleave(group, dim=2)
    s = torch.einsum("bthd,bshd->bhts", q, k) * scale
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    s = s.masked_fill(mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    o = torch.einsum("bhts,bshd->bthd", p, v)
    return o.reshape(B, T, -1)


def attention(c, P, b, h, cos, sin):
    """One attention block on normed input h [B, T, n_embd]; b is the layer prefix 'blk.N.'."""
    B, T, _ = h.shape
    H, dk, dv, n_rot = c["n_head"], c["head_dim_k"], c["head_dim_v"], c["rope_n_rot"]
    scale = c["kq_scale"] if c["kq_scale"] != 0 else 1.0 / math.sqrt(dk)
    if c["kv_lora_rank"] == 0:  # GQA: RoPE on the first n_rot dims of every head
        Hkv = c["n_head_kv"]
        q = linear(h, P[b + "attn_q.weight"]).view(B, T, H, dk)
        k = linear(h, P[b + "attn_k.weight"]).view(B, T, Hkv, dk)
        v = linear(h, P[b + "attn_v.weight"]).view(B, T, Hkv, dv)
        q = torch.cat((rope(q[..., :n_rot], cos, sin), q[..., n_rot:]), dim=-1)
        k = torch.cat((rope(k[..., :n_rot], cos, sin), k[..., n_rot:]), dim=-1)
    else:  # MLA: head = [nope | rope]; one rope key shared by all heads
        rank, nope = c["kv_lora_rank"], c["qk_nope_dim"]
        if c["q_lora_rank"] == 0:
            q = linear(h, P[b + "attn_q.weight"])
        else:
            qa = rmsnorm(linear(h, P[b + "attn_q_a.weight"]), P[b + "attn_q_a_norm.weight"], c["rms_eps"])
            q = linear(qa, P[b + "attn_q_b.weight"])
        q = q.view(B, T, H, dk)
        q = torch.cat((q[..., :nope], rope(q[..., nope:], cos, sin)), dim=-1)
        kv_a = linear(h, P[b + "attn_kv_a_mqa.weight"])  # [B, T, rank + n_rot]
        latent = rmsnorm(kv_a[..., :rank], P[b + "attn_kv_a_norm.weight"], c["rms_eps"])
        k_rope = rope(kv_a[..., rank:].unsqueeze(2), cos, sin)  # [B, T, 1, n_rot]
        kv = linear(latent, P[b + "attn_kv_b.weight"]).view(B, T, H, nope + dv)
        k = torch.cat((kv[..., :nope], k_rope.expand(B, T, H, n_rot)), dim=-1)
        v = kv[..., nope:]
    o = causal_attention(q, k, v, scale)
    return linear(o, P[b + "attn_output.weight"])


def route(c, logits, bias):
    """DeepSeek/Mixtral routing (ops.h router_forward) on logits [N, E].

    Returns scores [N, E] (differentiable), idx [N, k] (no gradient) and weights [N, k].
    """
    E, k = c["n_expert"], c["n_expert_used"]
    scores = torch.sigmoid(logits) if c["gating_sigmoid"] else torch.softmax(logits, dim=-1)
    choice = scores.detach().clone()
    if bias is not None:
        choice = choice + bias.detach()
    G, Gu = c["n_expert_groups"], c["n_group_used"]
    if G > 1 and Gu < G:
        per = E // G
        grouped = choice.view(-1, G, per)
        group_score = grouped.topk(min(2, per), dim=-1).values.sum(-1)  # [N, G]
        keep = group_score.topk(Gu, dim=-1).indices
        kept = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, keep, True)
        choice = choice.masked_fill(~kept.repeat_interleave(per, dim=1), float("-inf"))
    idx = choice.topk(k, dim=-1).indices
    w = scores.gather(1, idx)
    if c["expert_weights_norm"]:
        w = w / w.sum(-1, keepdim=True).clamp_min(6.103515625e-5)
    w = w * c["expert_weights_scale"]
    return scores, idx, w


def moe_ffn(c, P, b, h):
    """MoE FFN on h [N, n_embd]; returns (out [N, n_embd], aux loss of this layer)."""
    N = h.shape[0]
    E, k = c["n_expert"], c["n_expert_used"]
    logits = linear(h, P[b + "ffn_gate_inp.weight"])
    scores, idx, w = route(c, logits, P.get(b + "exp_probs_b.bias"))
    gate, up, down = P[b + "ffn_gate_exps.weight"], P[b + "ffn_up_exps.weight"], P[b + "ffn_down_exps.weight"]
    out = torch.zeros_like(h)
    for e in range(E):  # gather each expert's tokens, run it once, scatter-add weighted outputs
        tok, slot = (idx == e).nonzero(as_tuple=True)
        if tok.numel() == 0:
            continue
        y = swiglu_ffn(h[tok], gate[e], up[e], down[e])
        out = out.index_add(0, tok, y * w[tok, slot].unsqueeze(-1))
    if c["n_expert_shared"] > 0:
        out = out + swiglu_ffn(h, P[b + "ffn_gate_shexp.weight"], P[b + "ffn_up_shexp.weight"],
                               P[b + "ffn_down_shexp.weight"])
    # Auxiliary load-balancing loss: alpha * E * sum_i f_i P_i (f detached).
    aux = torch.zeros((), dtype=DTYPE)
    if c["aux_alpha"] != 0:
        f = torch.bincount(idx.flatten(), minlength=E).to(DTYPE) / (N * k)
        p = scores / scores.sum(-1, keepdim=True) if c["gating_sigmoid"] else scores
        aux = c["aux_alpha"] * E * (f * p.mean(0)).sum()
    return out, aux


def forward(c, P, tokens):
    """tokens [B, T+1] (int64). Returns logits [B*T, V], mean CE loss, summed aux loss."""
    inp, tgt = tokens[:, :-1], tokens[:, 1:]
    B, T = inp.shape
    cos, sin = rope_cos_sin(c, T)
    x = P["token_embd.weight"][inp]  # [B, T, n_embd]
    aux = torch.zeros((), dtype=DTYPE)
    for il in range(c["n_layer"]):
        b = f"blk.{il}."
        x = x + attention(c, P, b, rmsnorm(x, P[b + "attn_norm.weight"], c["rms_eps"]), cos, sin)
        h = rmsnorm(x, P[b + "ffn_norm.weight"], c["rms_eps"])
        if is_moe_layer(c, il):
            y, a = moe_ffn(c, P, b, h.reshape(B * T, -1))
            x = x + y.view(B, T, -1)
            aux = aux + a
        else:
            x = x + swiglu_ffn(h, P[b + "ffn_gate.weight"], P[b + "ffn_up.weight"], P[b + "ffn_down.weight"])
    logits = linear(rmsnorm(x, P["output_norm.weight"], c["rms_eps"]), P["output.weight"]).reshape(B * T, -1)
    loss = F.cross_entropy(logits, tgt.reshape(-1))
    return logits, loss, aux


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    c = load_config(d)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tokens = torch.from_numpy(np.load(os.path.join(d, "tokens.npy")).astype(np.int64))
    raw = load_params(d)
    if "output.weight" not in raw:
        sys.exit("train_reference: param.output.weight.npy is missing (the trainer's output is untied)")
    names = sorted(raw)
    P = {n: torch.tensor(raw[n], dtype=DTYPE, requires_grad=not n.endswith("exp_probs_b.bias")) for n in names}

    logits, loss, aux = forward(c, P, tokens)
    total = loss + aux
    total.backward()
    for n in names:
        if P[n].grad is None:  # selection bias, or an expert no token reached
            P[n].grad = torch.zeros_like(P[n])
    grad_norm = math.sqrt(sum(float(P[n].grad.pow(2).sum()) for n in names))

    np.save(os.path.join(d, "logits.npy"), logits.detach().numpy().astype(np.float32))
    for n in names:
        np.save(os.path.join(d, f"grad.{n}.npy"), P[n].grad.numpy().astype(np.float32))
    with open(os.path.join(d, "result.json"), "w") as f:
        json.dump({"loss": float(loss), "aux": float(aux), "total": float(total), "grad_norm": grad_norm}, f)

    # One AdamW step (in float64): decay only on tensors of 2+ dims, after global-norm clipping.
    params = [P[n] for n in names]
    for p in params:
        p.requires_grad_(True)  # the selection bias too: zero gradient, no decay -> unchanged
    if c["max_grad_norm"] > 0:
        torch.nn.utils.clip_grad_norm_(params, c["max_grad_norm"])
    groups = [
        {"params": [P[n] for n in names if P[n].dim() >= 2], "weight_decay": c["weight_decay"]},
        {"params": [P[n] for n in names if P[n].dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"])
    opt.step()
    for n in names:
        np.save(os.path.join(d, f"step.{n}.npy"), P[n].detach().numpy().astype(np.float32))
    print(json.dumps({"loss": float(loss), "aux": float(aux), "total": float(total), "grad_norm": grad_norm}))


if __name__ == "__main__":
    main()

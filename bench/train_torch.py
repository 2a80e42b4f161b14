#!/usr/bin/python3
"""PyTorch baseline for `moe train` throughput: the same model and step (forward, backward,
global-norm clipping, AdamW) in float32 on the CPU, on random tokens.

Usage: /usr/bin/python3 bench/train_torch.py CONFIG.json
CONFIG.json: the keys of scripts/train_reference.py's config.json plus "batch", "seq_len",
"steps" and "threads". Prints one JSON line {"tokens_per_s": ..., "step_ms": ...} averaged over the
steps after the first two (warmup).

The MoE layer dispatches like Megatron's naive dispatcher: the (token, slot) pairs are sorted by
expert, each expert runs once on its gathered tokens, and the weighted outputs are scatter-added
back (a Python loop over experts, never over tokens).
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin):
    """Adjacent pairs (x[2i], x[2i+1]) of the last dim; x [B, T, heads, n_rot], cos/sin [T, n_rot/2]."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class Model(nn.Module):
    """Parameters under their GGUF names (dots replaced by '/' internally: nn.Module forbids dots)."""

    def __init__(self, c, std=0.02):
        super().__init__()
        self.c = c
        self.p = nn.ParameterDict()
        E, V = c["n_embd"], c["n_vocab"]
        H, dk, dv = c["n_head"], c["head_dim_k"], c["head_dim_v"]
        out_std = std / math.sqrt(2 * c["n_layer"])  # GPT-2 style, as TrainModel::init_random

        def mat(name, *shape, s=std):
            self.p[name.replace(".", "/")] = nn.Parameter(torch.randn(*shape) * s)

        def norm(name, n):
            self.p[name.replace(".", "/")] = nn.Parameter(torch.ones(n))

        mat("token_embd.weight", V, E)
        norm("output_norm.weight", E)
        mat("output.weight", V, E)
        for il in range(c["n_layer"]):
            b = f"blk.{il}."
            norm(b + "attn_norm.weight", E)
            if c["kv_lora_rank"] == 0:
                mat(b + "attn_q.weight", H * dk, E)
                mat(b + "attn_k.weight", c["n_head_kv"] * dk, E)
                mat(b + "attn_v.weight", c["n_head_kv"] * dv, E)
            else:
                rank, nope, n_rot = c["kv_lora_rank"], c["qk_nope_dim"], c["rope_n_rot"]
                if c["q_lora_rank"] == 0:
                    mat(b + "attn_q.weight", H * dk, E)
                else:
                    mat(b + "attn_q_a.weight", c["q_lora_rank"], E)
                    norm(b + "attn_q_a_norm.weight", c["q_lora_rank"])
                    mat(b + "attn_q_b.weight", H * dk, c["q_lora_rank"])
                mat(b + "attn_kv_a_mqa.weight", rank + n_rot, E)
                norm(b + "attn_kv_a_norm.weight", rank)
                mat(b + "attn_kv_b.weight", H * (nope + dv), rank)
            mat(b + "attn_output.weight", E, H * dv, s=out_std)
            norm(b + "ffn_norm.weight", E)
            if c["n_expert"] > 0 and il >= c["n_layer_dense_lead"]:
                X, Fe = c["n_expert"], c["n_ff_exp"]
                mat(b + "ffn_gate_inp.weight", X, E)
                if c["gating_sigmoid"]:  # selection bias: not trained by gradient
                    self.register_buffer((b + "exp_probs_b.bias").replace(".", "_"), torch.zeros(X))
                mat(b + "ffn_gate_exps.weight", X, Fe, E)
                mat(b + "ffn_up_exps.weight", X, Fe, E)
                mat(b + "ffn_down_exps.weight", X, E, Fe, s=out_std)
                if c["n_expert_shared"] > 0:
                    S = Fe * c["n_expert_shared"]
                    mat(b + "ffn_gate_shexp.weight", S, E)
                    mat(b + "ffn_up_shexp.weight", S, E)
                    mat(b + "ffn_down_shexp.weight", E, S, s=out_std)
            else:
                mat(b + "ffn_gate.weight", c["n_ff"], E)
                mat(b + "ffn_up.weight", c["n_ff"], E)
                mat(b + "ffn_down.weight", E, c["n_ff"], s=out_std)
        n_rot, T = c["rope_n_rot"], c["seq_len"]
        i = torch.arange(n_rot // 2, dtype=torch.float64)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * c["rope_freq_base"] ** (-2.0 * i / n_rot)
        self.register_buffer("cos", torch.cos(ang).float())
        self.register_buffer("sin", torch.sin(ang).float())
        self.register_buffer("causal", torch.ones(T, T, dtype=torch.bool).triu(1))

    def w(self, name):
        return self.p[name.replace(".", "/")]

    def attention(self, b, h):
        c, w = self.c, self.w
        B, T, _ = h.shape
        H, dk, dv, n_rot = c["n_head"], c["head_dim_k"], c["head_dim_v"], c["rope_n_rot"]
        cos, sin = self.cos[:T], self.sin[:T]
        if c["kv_lora_rank"] == 0:
            Hkv = c["n_head_kv"]
            q = F.linear(h, w(b + "attn_q.weight")).view(B, T, H, dk)
            k = F.linear(h, w(b + "attn_k.weight")).view(B, T, Hkv, dk)
            v = F.linear(h, w(b + "attn_v.weight")).view(B, T, Hkv, dv)
            q = torch.cat((rope(q[..., :n_rot], cos, sin), q[..., n_rot:]), -1)
            k = torch.cat((rope(k[..., :n_rot], cos, sin), k[..., n_rot:]), -1)
            if H != Hkv:
                k = k.repeat_interleave(H // Hkv, dim=2)
                v = v.repeat_interleave(H // Hkv, dim=2)
        else:
            rank, nope = c["kv_lora_rank"], c["qk_nope_dim"]
            if c["q_lora_rank"] == 0:
                q = F.linear(h, w(b + "attn_q.weight"))
            else:
                qa = rmsnorm(F.linear(h, w(b + "attn_q_a.weight")), w(b + "attn_q_a_norm.weight"), c["rms_eps"])
                q = F.linear(qa, w(b + "attn_q_b.weight"))
            q = q.view(B, T, H, dk)
            q = torch.cat((q[..., :nope], rope(q[..., nope:], cos, sin)), -1)
            kv_a = F.linear(h, w(b + "attn_kv_a_mqa.weight"))
            lat = rmsnorm(kv_a[..., :rank], w(b + "attn_kv_a_norm.weight"), c["rms_eps"])
            k_rope = rope(kv_a[..., rank:].unsqueeze(2), cos, sin)
            kv = F.linear(lat, w(b + "attn_kv_b.weight")).view(B, T, H, nope + dv)
            k = torch.cat((kv[..., :nope], k_rope.expand(B, T, H, n_rot)), -1)
            v = kv[..., nope:]
        scale = c["kq_scale"] or 1.0 / math.sqrt(dk)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, d]
        s = (q @ k.transpose(-1, -2)) * scale
        p = torch.softmax(s.masked_fill(self.causal[:T, :T], float("-inf")), -1)
        o = (p @ v).transpose(1, 2).reshape(B, T, H * dv)
        return F.linear(o, w(b + "attn_output.weight"))

    def moe(self, b, h):
        """h [N, n_embd] -> (out [N, n_embd], aux)."""
        c, w = self.c, self.w
        N = h.shape[0]
        X, k = c["n_expert"], c["n_expert_used"]
        logits = F.linear(h, w(b + "ffn_gate_inp.weight"))
        scores = torch.sigmoid(logits) if c["gating_sigmoid"] else torch.softmax(logits, -1)
        with torch.no_grad():
            choice = scores.clone()
            if c["gating_sigmoid"]:
                choice += getattr(self, (b + "exp_probs_b.bias").replace(".", "_"))
            G, Gu = c["n_expert_groups"], c["n_group_used"]
            if G > 1 and Gu < G:
                per = X // G
                gs = choice.view(N, G, per).topk(min(2, per), -1).values.sum(-1)
                kept = torch.zeros_like(gs, dtype=torch.bool).scatter_(1, gs.topk(Gu, -1).indices, True)
                choice.masked_fill_(~kept.repeat_interleave(per, 1), float("-inf"))
            idx = choice.topk(k, -1).indices  # [N, k]
        wt = scores.gather(1, idx)
        if c["expert_weights_norm"]:
            wt = wt / wt.sum(-1, keepdim=True).clamp_min(6.103515625e-5)
        wt = wt * c["expert_weights_scale"]
        # Dispatch: sort the N*k (token, slot) pairs by expert; each expert gets a contiguous run.
        flat = idx.reshape(-1)
        order = flat.argsort()
        tok = order // k
        counts = torch.bincount(flat, minlength=X)
        xin = h[tok]                                  # [N*k, n_embd], grouped by expert
        wsorted = wt.reshape(-1)[order].unsqueeze(-1)  # [N*k, 1]
        # unbind: one backward op that stacks the experts' gradients (indexing gate[e] per expert would
        # build and add a full-size zero gradient for every expert)
        gate, up, down = (w(b + f"ffn_{n}_exps.weight").unbind(0) for n in ("gate", "up", "down"))
        ys = []
        for e, xe in enumerate(torch.split(xin, counts.tolist())):
            if xe.shape[0] == 0:
                continue
            ys.append(F.linear(F.silu(F.linear(xe, gate[e])) * F.linear(xe, up[e]), down[e]))
        y = torch.cat(ys) * wsorted
        out = torch.zeros_like(h).index_add_(0, tok, y)
        if c["n_expert_shared"] > 0:
            out = out + F.linear(F.silu(F.linear(h, w(b + "ffn_gate_shexp.weight"))) *
                                 F.linear(h, w(b + "ffn_up_shexp.weight")), w(b + "ffn_down_shexp.weight"))
        aux = h.new_zeros(())
        if c["aux_alpha"] != 0:
            f = counts.to(h.dtype) / (N * k)
            pr = scores / scores.sum(-1, keepdim=True) if c["gating_sigmoid"] else scores
            aux = c["aux_alpha"] * X * (f * pr.mean(0)).sum()
        return out, aux

    def forward(self, tokens):
        c, w = self.c, self.w
        inp, tgt = tokens[:, :-1], tokens[:, 1:]
        B, T = inp.shape
        x = F.embedding(inp, w("token_embd.weight"))
        aux = x.new_zeros(())
        for il in range(c["n_layer"]):
            b = f"blk.{il}."
            x = x + self.attention(b, rmsnorm(x, w(b + "attn_norm.weight"), c["rms_eps"]))
            h = rmsnorm(x, w(b + "ffn_norm.weight"), c["rms_eps"])
            if c["n_expert"] > 0 and il >= c["n_layer_dense_lead"]:
                y, a = self.moe(b, h.reshape(B * T, -1))
                x = x + y.view(B, T, -1)
                aux = aux + a
            else:
                x = x + F.linear(F.silu(F.linear(h, w(b + "ffn_gate.weight"))) * F.linear(h, w(b + "ffn_up.weight")),
                                 w(b + "ffn_down.weight"))
        logits = F.linear(rmsnorm(x, w("output_norm.weight"), c["rms_eps"]), w("output.weight"))
        return F.cross_entropy(logits.view(B * T, -1), tgt.reshape(-1)), aux


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        c = json.load(f)
    for k, v in {"n_expert": 0, "n_expert_used": 0, "n_expert_shared": 0, "n_ff_exp": 0, "n_layer_dense_lead": 0,
                 "gating_sigmoid": False, "expert_weights_norm": False, "expert_weights_scale": 1.0,
                 "n_expert_groups": 0, "n_group_used": 0, "q_lora_rank": 0, "kv_lora_rank": 0, "qk_nope_dim": 0,
                 "kq_scale": 0.0, "aux_alpha": 0.0, "lr": 1e-3, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95,
                 "eps": 1e-8, "max_grad_norm": 1.0, "threads": 1, "steps": 10}.items():
        c.setdefault(k, v)
    torch.set_num_threads(int(c["threads"]))
    torch.manual_seed(0)
    B, T, steps = c["batch"], c["seq_len"], c["steps"]
    model = Model(c)
    params = list(model.parameters())
    opt = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": c["weight_decay"]},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
        lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"])
    times = []
    for step in range(steps):
        tokens = torch.randint(0, c["n_vocab"], (B, T + 1))
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, aux = model(tokens)
        (loss + aux).backward()
        if c["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(params, c["max_grad_norm"])
        opt.step()
        times.append(time.perf_counter() - t0)
        print(f"step {step}: loss {loss.item():.4f} aux {aux.item():.4f} {times[-1] * 1e3:.1f} ms", file=sys.stderr)
    timed = times[2:] if len(times) > 2 else times
    step_s = sum(timed) / len(timed)
    print(json.dumps({"tokens_per_s": B * T / step_s, "step_ms": step_s * 1e3}))


if __name__ == "__main__":
    main()

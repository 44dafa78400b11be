#!/usr/bin/env python3
"""Trains the tiny Gemma-4 chat model (maintainer step; see scripts/train-tiny.sh).

The forward pass is written from shared/spec/gemma4-architecture.md (section numbers below) and
runs in float32. Input: token streams from `mlxq render-chats` (tokens + generated flags); the loss
is next-token cross-entropy on the model-generated tokens only.

Vocabulary: the real 262,144-token Gemma-4 vocabulary with tied embeddings. Only rows of tokens
that occur in the training data are trained; every other row is zero, so its logit is exactly
softcap(0) = 0. The loss still uses the full-vocabulary softmax: the zero rows add
log(n_unused) * exp(0) to the partition function, computed in closed form.

Output (OUT_DIR): the HF BF16 checkpoint in the real layout (config.json, generation_config.json,
model.safetensors), and golden.json + golden_logits.npy: this script's logits for a few rendered
conversations, computed from the bf16-rounded weights, for mlxq's test.
"""
import argparse
import json
import math
import os
import random
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F

VOCAB = 262144
CONFIG = dict(
    hidden_size=256, num_hidden_layers=6, num_attention_heads=4, head_dim=64, num_key_value_heads=2,
    global_head_dim=128, num_global_key_value_heads=1, intermediate_size=256, num_experts=8,
    top_k_experts=2, moe_intermediate_size=64, sliding_window=128, rms_norm_eps=1e-6,
    final_logit_softcapping=30.0,
    layer_types=["sliding_attention"] * 5 + ["full_attention"],
)


# --- primitives (spec §3) ------------------------------------------------------------------------
def rms_norm(x, w=None, eps=1e-6):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * w if w is not None else y


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def rope_inv_freq(kind, d):
    if kind == "sliding_attention":  # default, theta 1e4 over all dims
        return 1.0 / (10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    # proportional: theta 1e6, partial_rotary_factor 0.25: floor(0.25*d/2) pairs rotate, rest 0
    n_rot = int(0.25 * d // 2)
    inv = torch.zeros(d // 2, dtype=torch.float64)
    inv[:n_rot] = 1.0 / (1e6 ** (torch.arange(0, 2 * n_rot, 2, dtype=torch.float64) / d))
    return inv


def apply_rope(x, cos, sin):  # x [B, T, h, D]; NEOX half split (§3.3)
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Gemma4Tiny(torch.nn.Module):
    def __init__(self, cfg, n_used):
        super().__init__()
        self.cfg = cfg
        H, L = cfg["hidden_size"], cfg["num_hidden_layers"]
        self.embed = torch.nn.Parameter(torch.randn(n_used, H) * 0.05)  # compact rows of embed_tokens
        self.norm = torch.nn.Parameter(torch.ones(H))
        self.layers = torch.nn.ModuleList()
        for kind in cfg["layer_types"]:
            full = kind == "full_attention"
            D = cfg["global_head_dim"] if full else cfg["head_dim"]
            nkv = cfg["num_global_key_value_heads"] if full else cfg["num_key_value_heads"]
            nh, I, E, Im = cfg["num_attention_heads"], cfg["intermediate_size"], cfg["num_experts"], cfg["moe_intermediate_size"]
            p = torch.nn.ParameterDict()
            lin = lambda o, i: torch.nn.Parameter(torch.randn(o, i) / math.sqrt(i))
            for n in ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                      "post_feedforward_layernorm_1", "pre_feedforward_layernorm_2",
                      "post_feedforward_layernorm_2", "post_feedforward_layernorm"]:
                p[n] = torch.nn.Parameter(torch.ones(H))
            p["q_proj"], p["k_proj"] = lin(nh * D, H), lin(nkv * D, H)
            if not full:
                p["v_proj"] = lin(nkv * D, H)
            p["o_proj"] = lin(H, nh * D)
            p["q_norm"] = torch.nn.Parameter(torch.full((D,), D ** -0.5))  # carries the temperature
            p["k_norm"] = torch.nn.Parameter(torch.ones(D))
            p["gate_proj"], p["up_proj"], p["down_proj"] = lin(I, H), lin(I, H), lin(H, I)
            p["router_proj"] = torch.nn.Parameter(torch.randn(E, H) * 0.02)
            p["router_scale"] = torch.nn.Parameter(torch.ones(H))
            p["per_expert_scale"] = torch.nn.Parameter(torch.ones(E))
            p["gate_up"] = torch.nn.Parameter(torch.randn(E, 2 * Im, H) / math.sqrt(H))
            p["down"] = torch.nn.Parameter(torch.randn(E, H, Im) / math.sqrt(Im))
            p["layer_scalar"] = torch.nn.Parameter(torch.ones(1))
            self.layers.append(p)
            self.register_buffer(f"inv_freq_{len(self.layers) - 1}", rope_inv_freq(kind, D).float(), persistent=False)

    def forward(self, ids, aux=None):
        """ids: compact token ids [B, T] (each row one sequence from position 0). Returns the final
        normed hidden states [B, T, H]."""
        cfg = self.cfg
        B, T = ids.shape
        H, eps = cfg["hidden_size"], cfg["rms_norm_eps"]
        x = self.embed[ids] * math.sqrt(H)  # §4: scale bf16(sqrt(256)) = 16 exactly
        pos = torch.arange(T, dtype=torch.float32)
        qi, ki = torch.arange(T)[:, None], torch.arange(T)[None, :]
        causal = ki <= qi
        sliding = causal & (qi - ki < cfg["sliding_window"])
        for l, (kind, p) in enumerate(zip(cfg["layer_types"], self.layers)):
            full = kind == "full_attention"
            D = cfg["global_head_dim"] if full else cfg["head_dim"]
            nkv = cfg["num_global_key_value_heads"] if full else cfg["num_key_value_heads"]
            nh = cfg["num_attention_heads"]
            ang = pos[:, None] * getattr(self, f"inv_freq_{l}")[None, :]
            cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
            # §5.1 attention
            a = rms_norm(x, p["input_layernorm"], eps)
            q = (a @ p["q_proj"].T).view(B, T, nh, D)
            q = apply_rope(rms_norm(q, p["q_norm"], eps), cos, sin)
            kr = (a @ p["k_proj"].T).view(B, T, nkv, D)
            vr = kr if full else (a @ p["v_proj"].T).view(B, T, nkv, D)
            k = apply_rope(rms_norm(kr, p["k_norm"], eps), cos, sin)
            v = rms_norm(vr, None, eps)
            g = nh // nkv
            k = k.repeat_interleave(g, dim=2)
            v = v.repeat_interleave(g, dim=2)
            s = torch.einsum("bqhd,bkhd->bhqk", q, k)  # scale 1.0
            s = s.masked_fill(~(causal if full else sliding), float("-inf"))
            o = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(s, dim=-1), v).reshape(B, T, nh * D)
            o = rms_norm(o @ p["o_proj"].T, p["post_attention_layernorm"], eps)
            h = x + o
            # §5.2 dense branch
            d = rms_norm(h, p["pre_feedforward_layernorm"], eps)
            d = (gelu_tanh(d @ p["gate_proj"].T) * (d @ p["up_proj"].T)) @ p["down_proj"].T
            d = rms_norm(d, p["post_feedforward_layernorm_1"], eps)
            # router (input: h)
            r = rms_norm(h, None, eps) * p["router_scale"] * H ** -0.5
            P = torch.softmax(r @ p["router_proj"].T, dim=-1)  # [B, T, E]
            w, idx = torch.topk(P, cfg["top_k_experts"], dim=-1)
            w = w / w.sum(-1, keepdim=True)
            w = w * p["per_expert_scale"][idx]
            if aux is not None:  # switch-style load balance: fraction routed x mean probability
                frac = torch.zeros_like(P).scatter(-1, idx, 1.0).mean((0, 1))
                aux.append(cfg["num_experts"] * (frac * P.mean((0, 1))).sum())
            # experts: each runs on the tokens routed to it, weighted by w
            u = rms_norm(h, p["pre_feedforward_layernorm_2"], eps).reshape(B * T, H)
            Im = cfg["moe_intermediate_size"]
            flat_idx, flat_w = idx.reshape(B * T, -1), w.reshape(B * T, -1)
            m = torch.zeros(B * T, H)
            for e in range(cfg["num_experts"]):
                tok, slot = (flat_idx == e).nonzero(as_tuple=True)
                if tok.numel() == 0:
                    continue
                gu = u[tok] @ p["gate_up"][e].T
                out = (gelu_tanh(gu[:, :Im]) * gu[:, Im:]) @ p["down"][e].T
                m = m.index_add(0, tok, out * flat_w[tok, slot][:, None])
            m = m.view(B, T, H)
            m = rms_norm(m, p["post_feedforward_layernorm_2"], eps)
            f = rms_norm(d + m, p["post_feedforward_layernorm"], eps)
            x = (h + f) * p["layer_scalar"]
        return rms_norm(x, self.norm, eps)

    def logits(self, hidden):
        cap = self.cfg["final_logit_softcapping"]
        return cap * torch.tanh((hidden @ self.embed.T) / cap)


# --- data --------------------------------------------------------------------------------------
def load_rendered(path):
    rows = []
    with open(path) as f:
        for line in f:
            j = json.loads(line)
            rows.append((j["id"], j["tokens"], j["generated"]))
    return rows


def batches(rows, tok_budget, rng):
    """Length-bucketed batches of about tok_budget tokens (padded)."""
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i][1]), rng.random()))
    out, cur, cur_max = [], [], 0
    for i in order:
        n = len(rows[i][1])
        if cur and max(cur_max, n) * (len(cur) + 1) > tok_budget:
            out.append(cur)
            cur, cur_max = [], 0
        cur.append(i)
        cur_max = max(cur_max, n)
    if cur:
        out.append(cur)
    rng.shuffle(out)
    return out


def make_tensors(rows, idxs, remap):
    T = max(len(rows[i][1]) for i in idxs)
    ids = torch.zeros(len(idxs), T, dtype=torch.long)
    tgt = torch.full((len(idxs), T), -1, dtype=torch.long)
    for b, i in enumerate(idxs):
        toks, gen = rows[i][1], rows[i][2]
        ids[b, :len(toks)] = torch.tensor([remap[t] for t in toks])
        for t in range(1, len(toks)):
            if gen[t]:
                tgt[b, t - 1] = remap[toks[t]]
    return ids, tgt


def loss_fn(model, ids, tgt, n_unused, aux_weight=0.01):
    aux = []
    hidden = model(ids, aux)
    sel = tgt >= 0
    logits = model.logits(hidden[sel])  # [N, V_used]
    # Full-vocabulary partition function: the unused rows' logits are exactly 0.
    lse = torch.logsumexp(torch.cat([logits, torch.full((logits.shape[0], 1), math.log(n_unused))], 1), 1)
    nll = lse - logits.gather(1, tgt[sel][:, None])[:, 0]
    return nll.mean(), torch.stack(aux).mean() * aux_weight, int(sel.sum())


# --- export ------------------------------------------------------------------------------------
def bf16_round(t):
    return t.detach().float().to(torch.bfloat16).float()


def to_bf16_bytes(t):
    a = t.detach().float().contiguous().to(torch.bfloat16).view(torch.int16).numpy()
    return a.tobytes()


def write_safetensors(path, tensors):
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name in sorted(tensors):
        b = to_bf16_bytes(tensors[name])
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


def hf_tensors(model, used):
    cfg, P = model.cfg, "model.language_model."
    E = torch.zeros(VOCAB, cfg["hidden_size"])
    E[torch.tensor(used)] = model.embed.detach()
    t = {P + "embed_tokens.weight": E, P + "norm.weight": model.norm}
    for l, p in enumerate(model.layers):
        L = f"{P}layers.{l}."
        for n in ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                  "post_feedforward_layernorm_1", "pre_feedforward_layernorm_2",
                  "post_feedforward_layernorm_2", "post_feedforward_layernorm"]:
            t[L + n + ".weight"] = p[n]
        for n in ["q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm"]:
            if n in p:
                t[L + "self_attn." + n + ".weight"] = p[n]
        for n in ["gate_proj", "up_proj", "down_proj"]:
            t[L + "mlp." + n + ".weight"] = p[n]
        t[L + "router.proj.weight"] = p["router_proj"]
        t[L + "router.scale"] = p["router_scale"]
        t[L + "router.per_expert_scale"] = p["per_expert_scale"]
        t[L + "experts.gate_up_proj"] = p["gate_up"]
        t[L + "experts.down_proj"] = p["down"]
        t[L + "layer_scalar"] = p["layer_scalar"]
    return t


def write_config(out, cfg):
    text = dict(cfg)
    text.update(
        attention_bias=False, attention_dropout=0.0, attention_k_eq_v=True, bos_token_id=2, dtype="bfloat16",
        enable_moe_block=True, eos_token_id=1, hidden_activation="gelu_pytorch_tanh",
        hidden_size_per_layer_input=0, initializer_range=0.02, max_position_embeddings=8192,
        model_type="gemma4_text", num_kv_shared_layers=0, pad_token_id=0,
        rope_parameters={"full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1000000.0,
                                            "rope_type": "proportional"},
                         "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}},
        tie_word_embeddings=True, use_bidirectional_attention="vision", use_cache=True,
        use_double_wide_mlp=False, vocab_size=VOCAB, vocab_size_per_layer_input=VOCAB)
    conf = {"architectures": ["Gemma4ForConditionalGeneration"], "dtype": "bfloat16", "eos_token_id": [1, 106],
            "initializer_range": 0.02, "model_type": "gemma4", "text_config": dict(sorted(text.items())),
            "tie_word_embeddings": True, "transformers_version": "5.5.0"}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(conf, f, indent=2, sort_keys=True)
        f.write("\n")
    gen = {"bos_token_id": 2, "do_sample": True, "eos_token_id": [1, 106, 50], "pad_token_id": 0,
           "temperature": 1.0, "top_k": 64, "top_p": 0.95, "transformers_version": "5.5.0"}
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
        f.write("\n")


def export_golden(model, used, rows, out):
    """Logits of the bf16-rounded model on four rendered conversations (the two longest, longer
    than the sliding window, and two short ones): only the used-vocabulary columns are stored
    (every other column is exactly 0 by construction)."""
    by_len = sorted(rows, key=lambda r: -len(r[1]))
    rows = by_len[:2] + [r for r in rows[:50] if len(r[1]) < 100][:2]
    model_bf = Gemma4Tiny(model.cfg, len(used))
    model_bf.load_state_dict({k: bf16_round(v) for k, v in model.state_dict().items()}, strict=False)
    remap = {t: i for i, t in enumerate(used)}
    seqs, all_logits = [], []
    with torch.no_grad():
        for _, toks, _ in rows:
            ids = torch.tensor([[remap.get(t, 0) for t in toks]])
            assert all(t in remap for t in toks)
            lg = model_bf.logits(model_bf(ids))[0]
            seqs.append(toks)
            all_logits.append(lg.numpy().astype(np.float32))
    np.save(os.path.join(out, "golden_logits.npy"), np.concatenate(all_logits, 0))
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump({"sequences": seqs, "columns": used,
                   "note": "logits rows: the sequences concatenated; columns: these token ids"}, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", required=True, help="render-chats output of the training split")
    ap.add_argument("--heldout", required=True, help="render-chats output of the held-out split")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=600, help="optimizer steps (about 5 s each on 2 Zen 4 cores)")
    ap.add_argument("--tokens-per-batch", type=int, default=6144)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    rng = random.Random(a.seed)
    train, held = load_rendered(a.train), load_rendered(a.heldout)
    used = sorted({t for _, toks, _ in train for t in toks})
    remap = {t: i for i, t in enumerate(used)}
    n_unused = VOCAB - len(used)
    held = [(i, [t for t in toks], g) for i, toks, g in held]
    held_remap = dict(remap)
    for _, toks, _ in held:  # tokens never trained on: a zero row; map them to a zero slot below
        for t in toks:
            held_remap.setdefault(t, -1)
    print(f"train: {len(train)} conversations, {sum(len(r[1]) for r in train)} tokens, "
          f"{sum(sum(r[2]) for r in train)} targets; vocabulary used: {len(used)}", flush=True)
    model = Gemma4Tiny(CONFIG, len(used))
    n_params = sum(p.numel() for n, p in model.named_parameters() if n != "embed")
    print(f"non-embedding parameters: {n_params}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=0.01)
    t0, step, epoch, done = time.time(), 0, 0, False
    warm = 100
    while not done:
        epoch += 1
        for bidx in batches(train, a.tokens_per_batch, rng):
            frac = step / a.steps
            if step >= a.steps:
                done = True
                break
            lr = a.lr * min(1.0, (step + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
            for g in opt.param_groups:
                g["lr"] = lr
            ids, tgt = make_tensors(train, bidx, remap)
            loss, aux, n = loss_fn(model, ids, tgt, n_unused)
            opt.zero_grad()
            (loss + aux).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 50 == 0:
                print(f"epoch {epoch} step {step} {time.time() - t0:.0f}s lr {lr:.2e} loss {loss.item():.4f} "
                      f"aux {aux.item():.4f} tokens {n}", flush=True)
    # Held-out loss (tokens never trained on count as zero rows: their own logit is 0).
    model.eval()
    with torch.no_grad():
        tot, cnt = 0.0, 0
        zero_row = len(used)
        emb = torch.cat([model.embed.data, torch.zeros(1, CONFIG["hidden_size"])])
        saved = model.embed.data
        model.embed.data = emb
        for i in range(0, len(held), 32):
            rows = held[i:i + 32]
            m = {t: (v if v >= 0 else zero_row) for t, v in held_remap.items()}
            ids, tgt = make_tensors(rows, list(range(len(rows))), m)
            loss, _, n = loss_fn(model, ids, tgt, n_unused - 1)
            tot += loss.item() * n
            cnt += n
        model.embed.data = saved
    print(f"done: {step} steps, {epoch} epochs, {time.time() - t0:.0f}s; held-out loss {tot / cnt:.4f} "
          f"(perplexity {math.exp(tot / cnt):.3f})", flush=True)
    os.makedirs(a.out, exist_ok=True)
    write_config(a.out, CONFIG)
    write_safetensors(os.path.join(a.out, "model.safetensors"), hf_tensors(model, used))
    export_golden(model, used, train, a.out)


if __name__ == "__main__":
    main()

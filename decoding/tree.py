"""Tree verification for draft-head decoders (Medusa, Hydra) on any HF causal LM, batched.

One base forward scores a whole tree of candidate continuations; the longest prefix the base
model agrees with is accepted, plus the base's own next token at its end (the "bonus" token,
which becomes the next tree's root).

Tree attention goes through the model's OWN inputs — a 4D boolean attention mask
``[B, 1, N+1, past+N+1]`` (cache columns: the row's valid cache entries; last block: the tree
mask, each node sees its ancestors and itself) and position ids ``cache length + depth`` — and
its own ``DynamicCache``: no patched modeling file, so any architecture whose attention honours
a 4D mask (Llama, Qwen2, Mistral, ... with eager or sdpa) works.

KV-cache layout (batch > 1, rows accept different lengths): every row's cache is kept
*right-aligned with left padding* — its valid entries are the last ``n_valid[b]`` columns and
``kv_valid`` is a left-padding mask, exactly as after a left-padded prefill. After each tree
forward the cache holds ``Lc + N + 1`` columns; one index gather per layer rebuilds it as
``[padding][the row's old valid entries][the accepted path's entries]`` with length
``max_b(n_valid[b] + accepted[b])``. Rejected nodes are dropped, no row ever attends a hole in
the middle of its cache, and the cache never grows faster than the longest row.
Greedy acceptance therefore reproduces plain greedy decoding token for token.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import DynamicCache

from accel.decoding.dllm import DecodeResult, left_pad, trim_at_end
from accel.decoding.stop import StopStrings
from accel.decoding.tree_kernels import evaluate_candidates
from accel.models.kv import cache_kwargs, output_cache
from accel.models.masks import position_ids


@dataclass
class TreeBuffers:
    """Index tensors of a TreeSpec on one device (node 0 = root = the base's next token)."""
    attn_mask: torch.Tensor
    """[N+1, N+1] bool: node i attends node j iff j is i or an ancestor of i."""
    depth: torch.Tensor
    """[N+1] long: position offset of each node (root 0)."""
    parent: torch.Tensor
    """[N+1] long: parent node (root: 0)."""
    choice_index: torch.Tensor
    """[N+1] long: the node's top-k rank among its siblings' source distribution (root: 0)."""
    retrieve: torch.Tensor
    """[P, D+1] long: node indices of each root-to-leaf path, -1 padded (P = number of leaves)."""
    level_nodes: list[torch.Tensor]
    """level_nodes[d]: node indices at depth d (level 0 = [0])."""


@dataclass
class TreeSpec:
    """A candidate tree as Medusa-style choice paths: (0,) = head 1's top-1, (0, 1) = its child
    with head 2's second choice, ... Every prefix of a path must be a path too."""
    paths: list[tuple[int, ...]]

    def __post_init__(self):
        seen, norm = set(), []
        for p in self.paths:
            p = tuple(int(c) for c in p)
            if not p or any(c < 0 for c in p):
                raise ValueError(f"tree path {p}: must be a non-empty tuple of non-negative choice indices")
            if p in seen:
                raise ValueError(f"tree path {p} is listed twice")
            seen.add(p)
            norm.append(p)
        for p in norm:
            if len(p) > 1 and p[:-1] not in seen:
                raise ValueError(f"tree path {p} has no parent {p[:-1]} in the tree; add it or drop {p}")
        self.paths = sorted(norm, key=lambda p: (len(p), p))

    @property
    def num_nodes(self) -> int:
        """N: candidate nodes, excluding the root."""
        return len(self.paths)

    @property
    def max_depth(self) -> int:
        return max((len(p) for p in self.paths), default=0)

    @classmethod
    def chain(cls, depth: int) -> "TreeSpec":
        """A top-1 chain of `depth` nodes (what vLLM's Medusa proposer verifies)."""
        return cls([(0,) * d for d in range(1, depth + 1)])

    def buffers(self, device=None) -> TreeBuffers:
        """The tree's index tensors on `device`, built once per device (decoders ask every call)."""
        key = str(torch.device(device)) if device is not None else "cpu"
        cache = self.__dict__.setdefault("_buffers", {})
        if key not in cache:
            cache[key] = self._build_buffers(device)
        return cache[key]

    def _build_buffers(self, device=None) -> TreeBuffers:
        n = self.num_nodes + 1
        index = {p: i + 1 for i, p in enumerate(self.paths)}
        parent = [0] * n
        depth = [0] * n
        choice = [0] * n
        for p, i in index.items():
            parent[i] = index.get(p[:-1], 0)
            depth[i] = len(p)
            choice[i] = p[-1]
        mask = torch.zeros(n, n, dtype=torch.bool)
        for i in range(n):
            j = i
            while True:
                mask[i, j] = True
                if j == 0:
                    break
                j = parent[j]
        prefixes = {p[:-1] for p in self.paths}
        leaves = [p for p in self.paths if p not in prefixes] or [()]
        D = self.max_depth
        retrieve = torch.full((len(leaves), D + 1), -1, dtype=torch.long)
        for r, leaf in enumerate(leaves):
            retrieve[r, 0] = 0
            for d in range(1, len(leaf) + 1):
                retrieve[r, d] = index[leaf[:d]]
        dt = torch.tensor(depth, dtype=torch.long)
        levels = [torch.nonzero(dt == d).flatten().to(device) for d in range(D + 1)]
        return TreeBuffers(attn_mask=mask.to(device), depth=dt.to(device),
                           parent=torch.tensor(parent, dtype=torch.long, device=device),
                           choice_index=torch.tensor(choice, dtype=torch.long, device=device),
                           retrieve=retrieve.to(device), level_nodes=levels)

    def to_json(self) -> list[list[int]]:
        return [list(p) for p in self.paths]

    @classmethod
    def from_json(cls, data) -> "TreeSpec":
        if isinstance(data, str):
            data = json.loads(data)
        if not isinstance(data, list) or not all(isinstance(p, (list, tuple)) for p in data):
            raise ValueError("a tree must be a list of choice paths, e.g. [[0], [1], [0, 0]]")
        return cls([tuple(p) for p in data])


class Drafter(Protocol):
    """Proposes a token for every tree node from the base's last hidden state.

    A drafter with state over the whole context (Hydra++'s prefix layer) may also define
    ``observe(hidden [B,q,H], valid [B,q], position_ids [B,q], tokens [B,q], prefill: bool)``:
    `generate_tree` calls it with the prompt after the prefill, then after every verification that
    another draft follows, with the accepted path (root + accepted candidates, as many columns as
    the longest row's; `valid` masks the shorter rows' tails).

    A drafter that reads several of the base's hidden states (EAGLE-3) sets ``feature_layers``
    (indices into the model's ``hidden_states``: the input of that layer); `observe` then gets
    their concatenation ``[B, q, len(feature_layers) * H]`` instead of the last hidden state.
    """
    num_heads: int

    def draft(self, hidden_last: torch.Tensor, root_token: torch.Tensor, tree: TreeSpec) -> torch.Tensor:
        """[B, H], [B] -> [B, N+1] candidate ids (node 0 = root_token).

        A drafter that shapes its tree per step (EAGLE-2's dynamic tree) returns ``(cand, step_tree)``
        instead: any object with ``num_nodes`` and ``buffers(device) -> TreeBuffers``, shared by the
        batch's rows, verified in place of `tree` for that step."""
        ...


def topk_candidates(head_logits: torch.Tensor, root_token: torch.Tensor, tree: TreeSpec,
                    bufs: TreeBuffers | None = None) -> torch.Tensor:
    """Medusa's rule: node at depth d with choice c gets the c-th best token of head d-1
    (independent of its parent). head_logits [B, K, V] -> [B, N+1]."""
    bufs = bufs or tree.buffers(head_logits.device)
    kmax = int(bufs.choice_index.max()) + 1
    top = head_logits.topk(kmax, dim=-1).indices  # [B, K, kmax]
    d = (bufs.depth[1:] - 1).clamp(min=0)
    cand = top[:, d, bufs.choice_index[1:]]  # [B, N]
    return torch.cat([root_token[:, None].to(cand.dtype), cand], dim=1)


def _split_model(model):
    """(decoder body returning hidden states, output projection) of an HF causal LM."""
    body = model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, "model")
    head = model.get_output_embeddings()
    if body is None or head is None:
        raise ValueError(f"{type(model).__name__} exposes no decoder / output embeddings; "
                         "tree decoding needs an HF *ForCausalLM model")
    return body, head


def _compact(cache, idx: torch.Tensor) -> None:
    """Gathers every layer's keys/values along the sequence axis: idx [B, L'] -> cache length L'.

    Batch 1 (the draft-head regime) uses index_select, about 3x cheaper than an expanded gather.
    """
    one = idx[0] if idx.shape[0] == 1 else None
    for layer in cache.layers:
        for name in ("keys", "values"):
            t = getattr(layer, name)
            if one is not None:
                setattr(layer, name, t.index_select(2, one))
            else:
                setattr(layer, name, t.gather(2, idx[:, None, :, None].expand(*t.shape[:2], idx.shape[1], t.shape[3])))


def _commit_tail(cache, Lc: int, path: list[int]) -> None:
    """Batch 1: keep the cache's first Lc columns and the accepted nodes `path` (node indices into the
    verified block that follows them), in place. A path that is the block's first nodes (a chain, or
    a tree's first branch) is a crop; otherwise only the accepted nodes' columns are moved forward
    inside the block, then cropped. The past keys/values are never copied."""
    q = len(path)
    if path != list(range(q)):
        src = torch.tensor(path, dtype=torch.long, device=cache.layers[0].keys.device) + Lc
        for layer in cache.layers:
            for t in (layer.keys, layer.values):
                t[:, :, Lc:Lc + q] = t.index_select(2, src)
    drop = cache.layers[0].keys.shape[2] - (Lc + q)
    if drop > 0:
        cache.crop(-drop)  # transformers 5.x: a negative count of trailing tokens to remove


class _MaskBuffer:
    """The verification mask of batch 1 without padding, preallocated per tree shape: a [N+1, cap] bool
    buffer that is True everywhere but its last N+1 columns, which hold the tree mask. The mask of a
    step over Lc cached keys is a view of its last Lc + N + 1 columns: nothing is built per step."""

    def __init__(self):
        self.key = None
        self.buf = None

    def view(self, bufs: TreeBuffers, Lc: int) -> torch.Tensor:
        n1 = bufs.attn_mask.shape[0]
        if self.key is not bufs or self.buf.shape[1] < Lc + n1:
            cap = max(2 * (Lc + n1), 256)
            self.buf = torch.ones((n1, cap), dtype=torch.bool, device=bufs.attn_mask.device)
            self.buf[:, cap - n1:] = bufs.attn_mask
            self.key = bufs
        return self.buf[None, None, :, self.buf.shape[1] - Lc - n1:]


def _sample(logits: torch.Tensor, temperature: float, generator) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _observe_accepted(observe, features, o, path, acc_len, n_valid, n_acc, acc_tokens, dev) -> None:
    """Hands a drafter with context state (`Drafter.observe`) the accepted path's features, validity,
    positions (n_valid: the rows' cache lengths after the commit) and tokens."""
    if observe is None:
        return
    d = torch.arange(path.shape[1], device=dev)[None]
    f = features(o)
    observe(f.gather(1, path[..., None].expand(-1, -1, f.shape[-1])),
            d <= acc_len[:, None], n_valid[:, None] - n_acc[:, None] + d, tokens=acc_tokens, prefill=False)


@torch.no_grad()
def generate_tree(adapter, drafter, tree: TreeSpec, prompts: list[list[int]], max_new_tokens: int = 64,
                  acceptance: str = "greedy", typical_eps: float = 0.09, typical_alpha: float = 0.3,
                  temperature: float = 0.0, generator=None, stop: StopStrings | None = None) -> DecodeResult:
    """Draft a tree per row, verify it in one base forward, accept the best path; batched.

    A row ends at an end token, at `max_new_tokens`, or (with `stop`) at the token that completes one of its
    stop strings, tokens a step accepted past it dropped: with greedy acceptance, greedy decoding's row.

    acceptance: "greedy" (a candidate is accepted iff it is the base's argmax after its
    parent: output identical to greedy decoding) or "typical" (accepted iff
    p(x) > min(eps, alpha * exp(-H(p))) under softmax(logits / T), T = temperature or 1 at
    temperature 0). The bonus token at the end of the accepted path is the base's argmax
    (temperature 0) or a sample at `temperature`.

    NFE per row counts base forwards until the row ended (the prefill is one).
    ``extra["accepted_per_forward"]``: mean tokens emitted per base forward over all rows
    (the base's own token included); ``extra["accept_lengths"]``: per row, tokens emitted by
    each forward.
    """
    if acceptance not in ("greedy", "typical"):
        raise ValueError(f"acceptance={acceptance!r}: choose greedy or typical")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens}: must be >= 1")

    model = adapter.model
    body, lm_head = _split_model(model)
    dev = adapter.device
    bufs = tree.buffers(dev)
    N1 = tree.num_nodes + 1
    ids, valid = left_pad(prompts, adapter.pad_id, dev)
    B = ids.shape[0]
    eos = torch.tensor(adapter.eos_ids, device=dev)
    cache = DynamicCache()
    pos = position_ids(valid)
    layers = getattr(drafter, "feature_layers", None)  # optional: drafters reading inner hidden states (EAGLE-3)

    def features(o):
        return o.last_hidden_state if not layers else torch.cat([o.hidden_states[i] for i in layers], -1)
    o = body(input_ids=ids, attention_mask=valid.long(), position_ids=pos, use_cache=True, **cache_kwargs(body, cache),
             **({"output_hidden_states": True} if layers else {}))
    cache = output_cache(o)
    h_last = o.last_hidden_state[:, -1]
    observe = getattr(drafter, "observe", None)  # optional: drafters with state over the context (Hydra++)
    if observe is not None:
        observe(features(o), valid, pos, tokens=ids, prefill=True)
    root = _sample(lm_head(h_last).float(), temperature, generator)
    kv_valid = valid.clone()
    n_valid = valid.sum(1)
    out = [[int(t)] for t in root.tolist()]
    done = torch.isin(root, eos).cpu()
    nfe = torch.ones(B, dtype=torch.long)
    lengths: list[list[int]] = [[1] for _ in range(B)]
    for b in range(B):
        if len(out[b]) >= max_new_tokens or (stop is not None and stop.first(b, out[b], 0) is not None):
            done[b] = True
    rows = torch.arange(B, device=dev)
    masks = _MaskBuffer()
    while not bool(done.all()):
        cand = drafter.draft(h_last, root, tree)  # [B, N+1], or (cand, this step's tree): a dynamic tree
        step_tree = tree  # a plain tensor is drafted for the call's tree, whatever the last step's shape was
        if isinstance(cand, tuple):
            cand, step_tree = cand
        bufs, N1 = step_tree.buffers(dev), step_tree.num_nodes + 1  # built once per shape (TreeSpec.buffers)
        cand = cand.to(dev)
        if cand.shape[1] != N1:
            raise ValueError(f"drafter {type(drafter).__name__} drafted {cand.shape[1]} tokens a row for a "
                             f"{N1 - 1}-node tree")
        Lc = kv_valid.shape[1]
        if B == 1:  # no padding: a view of the tree shape's preallocated mask
            mask = masks.view(bufs, Lc)
        else:
            mask = torch.cat([kv_valid[:, None, :].expand(B, N1, Lc), bufs.attn_mask[None].expand(B, N1, N1)], 2)[:, None]
        pos = n_valid[:, None] + bufs.depth[None]
        o = body(input_ids=cand, attention_mask=mask, position_ids=pos, use_cache=True,
                 **cache_kwargs(body, cache), **({"output_hidden_states": True} if layers else {}))
        cache = output_cache(o)
        hidden = o.last_hidden_state  # [B, N+1, H]
        logits = lm_head(hidden).float()
        t_eff = temperature if temperature > 0 else 1.0
        best, acc_len, node_argmax = evaluate_candidates(logits, cand, bufs.retrieve, bufs.parent,
                                                         mode=acceptance, temperature=t_eff,
                                                         eps=typical_eps, alpha=typical_alpha)
        # the accepted path, cut to the longest row's: what the cache keeps and the drafter observes
        path = bufs.retrieve[best][:, :int(acc_len.max()) + 1].clamp(min=0)  # [B, q]
        last_node = path[rows, acc_len]
        h_last = hidden[rows, last_node]
        if temperature > 0:
            nxt = _sample(logits[rows, last_node], temperature, generator)
        else:
            nxt = node_argmax[rows, last_node]
        acc_tokens = cand.gather(1, path)
        acc_list, nxt_list, tok_list = acc_len.tolist(), nxt.tolist(), acc_tokens.tolist()  # one read-back
        for b in range(B):
            if done[b]:
                continue
            a = acc_list[b]
            new = tok_list[b][1:a + 1] + [nxt_list[b]]
            nfe[b] += 1
            lengths[b].append(len(new))
            out[b].extend(new)
            if any(t in adapter.eos_ids for t in new) or len(out[b]) >= max_new_tokens:
                done[b] = True
            if stop is not None and (cut := stop.first(b, out[b], len(out[b]) - len(new))) is not None:
                lengths[b][-1] -= len(out[b]) - cut
                del out[b][cut:]
                done[b] = True
        if bool(done.all()):  # no draft follows: skip the cache compaction and the drafter's update
            break
        n_acc = acc_len + 1  # root + accepted candidates get cache entries
        new_valid = n_valid + n_acc
        if B == 1:  # in place: the accepted nodes' columns follow the old ones, the rest is cropped
            q = acc_list[0] + 1
            _commit_tail(cache, Lc, path[0, :q].tolist())
            kv_valid = torch.ones((1, Lc + q), dtype=torch.bool, device=dev)
            _observe_accepted(observe, features, o, path, acc_len, new_valid, n_acc, acc_tokens, dev)
            n_valid = new_valid
            root = nxt
            continue
        # compaction: [pad][old valid][accepted path], right-aligned per row
        Lnew = int(new_valid.max())
        j = torch.arange(Lnew, device=dev)[None].expand(B, Lnew)
        pad = (Lnew - new_valid)[:, None]
        old_n = n_valid[:, None]
        k = j - pad  # index within the row's valid content
        old_idx = (Lc - old_n + k).clamp(0, Lc - 1)
        acc_k = (k - old_n).clamp(0, path.shape[1] - 1)
        new_idx = Lc + path.gather(1, acc_k)
        idx = torch.where(k < 0, torch.zeros_like(k), torch.where(k < old_n, old_idx, new_idx))
        _compact(cache, idx)
        kv_valid = k >= 0
        _observe_accepted(observe, features, o, path, acc_len, new_valid, n_acc, acc_tokens, dev)
        n_valid = new_valid
        root = nxt
    rows_out = [trim_at_end(r[:max_new_tokens], adapter.eos_ids) for r in out]
    texts = [adapter.tokenizer.decode([t for t in r if t not in adapter.eos_ids]) for r in rows_out]
    total_tok = sum(len(r) for r in rows_out)
    apf = total_tok / max(1, int(nfe.sum()))
    return DecodeResult(tokens=rows_out, nfe=nfe.tolist(), texts=texts,
                        extra={"accepted_per_forward": apf, "accept_lengths": lengths})

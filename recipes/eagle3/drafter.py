"""`Eagle3Drafter`: drafts a candidate tree for `accel.decoding.tree.generate_tree`.

It asks the verifier for three of the target's hidden states (``feature_layers``) and gets, via
``observe``, their values at every accepted position. Each `draft` call first pushes those
positions through the draft layer (its own KV cache), pairing each position's
features with the token that followed it — the last one with the new root, known only now —
and then grows the tree level by level: a node at depth d feeds its token and its parent's
layer output to the layer at position p+d, attending the cache plus its tree ancestors (the
shape the training-time test trained), and its top-k draft tokens (`kernels.draft_topk`, d2t
applied) become its children. Tree nodes' keys are dropped after the step: the accepted ones
come back with the target's own features through ``observe``.

With ``dynamic=(depth, topk, nodes)`` it drafts EAGLE-2's dynamic tree instead (`_grow_dynamic`)
and hands the verifier that step's tree (`StepTree`) with the candidates.

`accel.decoding.tree_build` chooses the static tree from measured per-step top-k
accuracies (Medusa's greedy best-first rule).
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from accel.decoding.gate import top1
from accel.decoding.tree import TreeBuffers, TreeSpec
from accel.models.attention import groups_in_place
from accel.recipes.eagle3.kernels import draft_topk
from accel.recipes.eagle3.model import Eagle3Draft


def _plan(paths, device):
    """Per depth d >= 1: (parent node ids [P] (0 = root), first child node, end, child index into the
    parents' flattened top-k [C], kmax). A depth's nodes are contiguous in TreeSpec order."""
    index = {p: i + 1 for i, p in enumerate(paths)}
    index[()] = 0
    levels = []
    for d in range(1, max((len(p) for p in paths), default=0) + 1):
        kids = [p for p in paths if len(p) == d]
        parents = list(dict.fromkeys(p[:-1] for p in kids))
        slot = {q: i for i, q in enumerate(parents)}
        kmax = max(p[-1] for p in kids) + 1
        t = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
        levels.append((t([index[q] for q in parents]), index[kids[0]], index[kids[-1]] + 1,
                       t([slot[p[:-1]] * kmax + p[-1] for p in kids]), kmax))
    return levels


class StepTree:
    """One step's candidate tree from parent ids (node 0 = root, parents before children): the
    shape `generate_tree` verifies (see `accel.decoding.tree.Drafter`). Built with a few tensor ops
    per depth level: it is rebuilt at every decoding step."""

    def __init__(self, parent: list[int], device=None):
        p = torch.tensor(parent, dtype=torch.long, device=device)
        n = p.numel()
        self.num_nodes = n - 1
        ar = torch.arange(n, device=device)
        mask = torch.eye(n, dtype=torch.bool, device=device)
        chain = [ar]                                   # chain[j] = each node's j-th ancestor (root stays root)
        while bool((chain[-1] != 0).any()):
            chain.append(p[chain[-1]])
            mask[ar, chain[-1]] = True
        depth = mask.sum(1) - 1
        D = len(chain) - 1
        leaf = torch.ones(n, dtype=torch.bool, device=device)
        leaf[p[1:]] = False
        leaf[0] = n == 1
        leaves = ar[leaf]
        retrieve = torch.full((leaves.numel(), D + 1), -1, dtype=torch.long, device=device)
        rows = torch.arange(leaves.numel(), device=device)
        for j, c in enumerate(chain):                  # the j-th ancestor of a leaf sits at depth - j
            col = depth[leaves] - j
            ok = col >= 0
            retrieve[rows[ok], col[ok]] = c[leaves][ok]
        self._bufs = TreeBuffers(attn_mask=mask, depth=depth, parent=p, choice_index=torch.zeros_like(depth),
                                 retrieve=retrieve, level_nodes=[ar[depth == d] for d in range(D + 1)])

    def buffers(self, device=None) -> TreeBuffers:
        b = self._bufs
        if device is None or torch.device(device) == b.depth.device:
            return b
        return TreeBuffers(*(x.to(device) for x in (b.attn_mask, b.depth, b.parent, b.choice_index, b.retrieve)),
                           [x.to(device) for x in b.level_nodes])


class FusedLayer:
    """The draft layer's weights laid out for decoding: q|k|v one matmul, gate|up one matmul, RoPE
    from a position table, plain functional calls (no module dispatch). At batch 1 a draft level is
    a few dozen tiny ops, so per-op overhead, not FLOPs, is its cost. Same math as `DraftLayer`."""

    def __init__(self, draft: Eagle3Draft):
        layer = draft.layers[0]
        a, mlp = layer.self_attn, layer.mlp
        self.nh, self.nkv, self.hd, self.scale = layer.nh, layer.nkv, layer.hd, a.scaling
        self.w_qkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).detach()
        self.w_o = a.o_proj.weight.detach()
        self.w_gu = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach()
        self.w_down, self.act = mlp.down_proj.weight.detach(), mlp.act_fn
        self.norms = {n: (getattr(layer, n).weight.detach(), getattr(layer, n).variance_epsilon)
                      for n in ("input_layernorm", "hidden_norm", "post_attention_layernorm")}
        self.final = (draft.norm.weight.detach(), draft.norm.variance_epsilon)
        self.w_lm = draft.lm_head.weight.detach()
        self.draft = draft
        self.cos = self.sin = None

    def _norm(self, x, wn):
        w, eps = wn
        return F.rms_norm(x, x.shape[-1:], w, eps)

    def _table(self, n: int, like):
        if self.cos is None or self.cos.shape[0] < n:
            cap = max(n, 2 * (0 if self.cos is None else self.cos.shape[0]), 256)
            cos, sin = self.draft.rope(like, torch.arange(cap, device=like.device)[None])
            h = self.hd // 2
            # rotate_half(x) * sin == roll(x, h) * [-sin_1, sin_2]
            self.cos, self.sin = cos[0], torch.cat([-sin[0, :, :h], sin[0, :, h:]], -1)
        return self.cos, self.sin

    def qkv(self, emb, g, pos):
        """emb, g [B,T,H], pos [B,T] -> q [B,nh,T,hd], k, v [B,nkv,T,hd] (RoPE applied)."""
        B, T = pos.shape
        x = torch.cat([self._norm(emb, self.norms["input_layernorm"]), self._norm(g, self.norms["hidden_norm"])], -1)
        y = F.linear(x, self.w_qkv).view(B, T, self.nh + 2 * self.nkv, self.hd)
        cos, sin = self._table(int(pos.max()) + 1, g)
        qk = y[:, :, :self.nh + self.nkv]
        qk = qk * cos[pos][:, :, None] + qk.roll(self.hd // 2, -1) * sin[pos][:, :, None]
        return (qk[:, :, :self.nh].transpose(1, 2), qk[:, :, self.nh:].transpose(1, 2),
                y[:, :, self.nh + self.nkv:].transpose(1, 2))

    def attend(self, g, q, k, v, mask):
        # grouped heads read in place where SDPA takes them with a mask (`accel.models.attention`)
        gqa = self.nh != self.nkv
        if gqa and not groups_in_place(q.device):
            k, v, gqa = k.repeat_interleave(self.nh // self.nkv, 1), v.repeat_interleave(self.nh // self.nkv, 1), False
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], scale=self.scale, enable_gqa=gqa)
        y = g + F.linear(o.transpose(1, 2).reshape(g.shape[0], g.shape[1], -1), self.w_o)
        gate, up = F.linear(self._norm(y, self.norms["post_attention_layernorm"]), self.w_gu).chunk(2, -1)
        return y + F.linear(self.act(gate) * up, self.w_down)

    def logits(self, h):
        return F.linear(self._norm(h, self.final), self.w_lm)


class Eagle3Drafter:
    """A Drafter (see `accel.decoding.tree.Drafter`) over a trained `Eagle3Draft` and the target's embedding."""

    def __init__(self, draft: Eagle3Draft, embed: torch.nn.Module, dynamic: tuple[int, int, int] | None = None):
        """dynamic = (depth, topk, nodes): EAGLE-2's dynamic tree instead of the `tree` generate_tree passes."""
        self.dynamic = dynamic
        self.net = draft.eval()
        self.embed = embed
        self.feature_layers = tuple(draft.feature_layers)
        self.fused = FusedLayer(draft)
        self.k = self.v = self.key_valid = None
        self.pending = None
        self._plans: dict = {}

    @property
    def num_heads(self) -> int:
        """Depth the draft was trained to (the tree may go deeper; accuracy falls off past it)."""
        return int(getattr(self.net, "ttt_steps", 8))

    @torch.no_grad()
    def observe(self, hidden, valid, position_ids, tokens, prefill: bool = False):
        """Accepted positions: the target's features there ([B,q,3H]), validity, positions and tokens."""
        if prefill:
            self.k = self.v = self.key_valid = None
            self.pending = None
        dt = self.net.fc.weight.dtype
        new = (self.net.fc(hidden.to(dt)), valid, position_ids, tokens)
        if self.pending is not None:
            # a step another drafter drafted (context lookup, `accel.decoding.lookup`): the positions it
            # accepted join these and go through the layer in the next draft's one pass; the last held
            # position's successor is the first observed token (that step's root)
            if valid.shape[0] != 1:
                raise RuntimeError("a step of a batch > 1 went undrafted: EAGLE-3 holds skipped steps at batch 1 only")
            new = tuple(torch.cat([a, b], 1) for a, b in zip(self.pending, new))
        self.pending = new

    def _plan(self, tree, device):
        key = (id(tree), str(device))
        hit = self._plans.get(key)
        if hit is None or hit[0] is not tree:
            hit = self._plans[key] = (tree, _plan(list(tree.paths), device), tree.buffers(device).attn_mask[:, 1:])
        return hit[1], hit[2]

    @torch.no_grad()
    def draft(self, hidden_last, root_token, tree) -> torch.Tensor:
        """[B,H] (unused: the draft reads its own features), [B] -> [B, N+1] candidate ids, node 0 = root."""
        if self.pending is None:
            raise RuntimeError("EAGLE-3 drafts from the target's hidden states, but the tree decoder never called "
                               "drafter.observe(); use accel.decoding.tree.generate_tree")
        d = self.net
        g, h_root, p_root = self._advance(root_token)
        B, dev = g.shape[0], g.device
        if self.dynamic is not None:
            return self._grow_dynamic(h_root, p_root, root_token, *self.dynamic)
        levels, anc = self._plan(tree, dev)
        N1 = tree.num_nodes + 1
        cand = torch.empty(B, N1, dtype=torch.long, device=dev)
        cand[:, 0] = root_token
        h_node = g.new_zeros(B, N1, g.shape[-1])
        h_node[:, 0] = h_root
        fl = self.fused
        Lc = self.k.shape[2]
        # the cache's keys then one slot per tree node below the root, filled level by level
        K = torch.cat([self.k, self.k.new_zeros(*self.k.shape[:2], N1 - 1, self.k.shape[3])], 2)
        V = torch.cat([self.v, self.v.new_zeros(*self.v.shape[:2], N1 - 1, self.v.shape[3])], 2)
        parent = tree.buffers(dev).parent
        logits = fl.logits(h_root)[:, None]  # [B, 1, Vd]: the root's children
        for depth, (parents, start, end, flat, kmax) in enumerate(levels, start=1):
            if depth > 1:  # run this level's parents (depth-1 nodes) through the layer
                P = parents.numel()
                hp = h_node[:, parent[parents]]
                ppos = (p_root + depth - 1)[:, None].expand(B, P)
                qq, kk, vv = fl.qkv(self._embed(cand[:, parents], g.dtype), hp, ppos)
                K[:, :, Lc + parents - 1], V[:, :, Lc + parents - 1] = kk, vv
                mask = torch.cat([self.key_valid[:, None, :].expand(B, P, -1), anc[parents][None].expand(B, P, -1)], -1)
                ho = fl.attend(hp, qq, K, V, mask)
                h_node[:, parents] = ho
                logits = fl.logits(ho)
            top, _ = draft_topk(logits, kmax, d.d2t)             # [B, P, kmax] target ids
            cand[:, start:end] = top.flatten(1)[:, flat]
        return cand

    @torch.no_grad()
    def chain_levels(self, hidden_last, root_token, max_depth: int):
        """The top-1 chain one level at a time: yields (token [B], its draft probability [B]) per depth,
        running the layer for level d only when level d is asked for (`accel.decoding.gate.GatedChain`). The
        same tokens as `draft` on `TreeSpec.chain`; the chain's keys stay out of the draft's cache."""
        if self.pending is None:
            raise RuntimeError("EAGLE-3 drafts from the target's hidden states, but the tree decoder never called "
                               "drafter.observe(); use accel.decoding.tree.generate_tree")
        g, h, pos = self._advance(root_token)
        fl, d2t = self.fused, self.net.d2t
        K, V, valid = self.k, self.v, self.key_valid
        tok = None
        for depth in range(1, max_depth + 1):
            if depth > 1:  # the previous level's node through the layer, at the position after its parent's
                qq, kk, vv = fl.qkv(self._embed(tok[:, None], g.dtype), h[:, None], (pos + depth - 1)[:, None])
                K, V = torch.cat([K, kk], 2), torch.cat([V, vv], 2)
                valid = torch.cat([valid, valid.new_ones(valid.shape[0], 1)], 1)
                h = fl.attend(h[:, None], qq, K, V, valid[:, None, :])[:, 0]
            top, p = top1(fl.logits(h))
            tok = top + d2t[top] if d2t is not None else top                         # draft -> target ids
            yield tok, p

    def _advance(self, root_token):
        """The pending accepted positions through the layer, each paired with its successor (the last one
        with `root_token`): (their features g, the layer's output at each row's newest position, its position)."""
        g, valid, pos, tokens = self.pending
        self.pending = None
        B, q = valid.shape
        rows = torch.arange(B, device=g.device)
        last = (valid * torch.arange(1, q + 1, device=g.device)).argmax(1)  # each row's newest valid position
        nxt = torch.cat([tokens[:, 1:], tokens[:, -1:]], 1).clone()
        nxt[rows, last] = root_token.to(nxt.dtype)
        out = self._push(g, self._embed(nxt, g.dtype), valid, pos)
        return g, out[rows, last], pos[rows, last]

    def _grow_dynamic(self, h_root, p_root, root_token, depth: int, topk: int, nodes: int):
        """EAGLE-2: expand the `topk` nodes of each level with the highest cumulative draft log-prob
        into their `topk` best children, then keep the `nodes` best of everything drafted (a child never
        outranks its parent, so the kept set is a tree). One structure for the batch: a node's score is
        summed over rows (at batch 1, EAGLE-2 exactly). Returns (cand [B, N+1], StepTree)."""
        d, fl = self.net, self.fused
        B, dev = h_root.shape[0], h_root.device
        Lc = self.k.shape[2]
        slots = (depth - 1) * topk
        K = torch.cat([self.k, self.k.new_zeros(*self.k.shape[:2], slots, self.k.shape[3])], 2)
        V = torch.cat([self.v, self.v.new_zeros(*self.v.shape[:2], slots, self.v.shape[3])], 2)
        slot_mask = torch.zeros(B, 0, slots, dtype=torch.bool, device=dev)
        logits = fl.logits(h_root)[:, None]                            # [B, 1, Vd]
        par_h, par_score = h_root[:, None], h_root.new_zeros(B, 1)      # the expanded parents' outputs, scores
        par_id, par_anc = [0], [[]]                                     # their node ids, ancestors' key slots
        toks, scores, parent = [root_token[:, None]], [h_root.new_zeros(B, 1)], [0]
        n_slot = 0
        for level in range(1, depth + 1):
            ids, vals = draft_topk(logits, topk, d.d2t)                 # [B, P, k]
            # clamped: rounding must never let a child outrank its parent (the kept set must stay a tree)
            lp = (vals - torch.logsumexp(logits.float(), -1, keepdim=True)).clamp(max=0)
            sc = (par_score[..., None] + lp).flatten(1)                 # [B, P*k] cumulative log-prob
            first = len(parent)
            toks.append(ids.flatten(1))
            scores.append(sc)
            parent += [p for p in par_id for _ in range(topk)]
            anc_of_new = [a for a in par_anc for _ in range(topk)]
            if level == depth:
                break
            best = sc.sum(0).topk(min(topk, sc.shape[1])).indices.sort().values  # the level's nodes to expand
            P = best.numel()
            hp = par_h[:, best // topk]
            qq, kk, vv = fl.qkv(self._embed(toks[-1][:, best], h_root.dtype), hp,
                                (p_root + level)[:, None].expand(B, P))
            K[:, :, Lc + n_slot:Lc + n_slot + P], V[:, :, Lc + n_slot:Lc + n_slot + P] = kk, vv
            par_anc = [anc_of_new[int(i)] + [n_slot + j] for j, i in enumerate(best.tolist())]
            m = torch.zeros(P, slots, dtype=torch.bool, device=dev)
            for j, a in enumerate(par_anc):
                m[j, a] = True
            n_slot += P
            mask = torch.cat([self.key_valid[:, None, :].expand(B, P, -1), m[None].expand(B, P, -1)], -1)
            par_h = fl.attend(hp, qq, K, V, mask)
            logits = fl.logits(par_h)
            par_score, par_id = sc[:, best], [first + int(i) for i in best.tolist()]
        tok, score = torch.cat(toks, 1), torch.cat(scores, 1)
        order = torch.sort(-score[:, 1:].sum(0), stable=True).indices[:nodes] + 1  # ties: the earlier (shallower)
        keep = sorted(order.tolist())
        new = {0: 0, **{n: i + 1 for i, n in enumerate(keep)}}
        tree = StepTree([0] + [new[parent[n]] for n in keep], device=dev)
        return torch.cat([tok[:, :1], tok[:, keep]], 1), tree

    def _push(self, g, emb, valid, pos):
        """The new accepted positions through the layer (attending the cache and each other
        causally); their keys join the cache. Rows append the same number of slots; a key-validity
        mask hides the ones a row did not use (rows accept different numbers of tokens)."""
        B, q = valid.shape
        qq, k, v = self.fused.qkv(emb, g, pos)
        ar = torch.arange(q, device=g.device)
        own = (ar[None, :] <= ar[:, None])[None] & valid[:, None, :] | torch.eye(q, dtype=torch.bool, device=g.device)
        if self.k is None:
            self.k, self.v, self.key_valid, mask = k, v, valid, own
        else:
            mask = torch.cat([self.key_valid[:, None, :].expand(B, q, -1), own], -1)
            self.k, self.v = torch.cat([self.k, k], 2), torch.cat([self.v, v], 2)
            self.key_valid = torch.cat([self.key_valid, valid], 1)
        return self.fused.attend(g, qq, self.k, self.v, mask)

    def _embed(self, ids, dtype):
        return self.embed(ids).to(dtype)


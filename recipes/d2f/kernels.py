"""Fused per-step block update of D2F's pipelined decoder: one launch per forward.

After each forward the decoder must, for every row and every block of the fed tail, decide
which masked positions to unmask and how the pipeline moves on. In eager torch that is a dozen
small kernels (threshold, masked argmax per block, fractions, shifts, row reductions); on a
GPU each launch costs more than the arithmetic. The Triton kernel runs one program per row on
the row's [blocks, block_len] tile in registers.

Inputs (tail = the blocks fed this step, from the first not-yet-cached block on):
  conf [R, NB, BLK] float   confidence (softmax prob of x0) per position
  masked [R, NB, BLK] bool  still [MASK] before this step
  is_end [R, NB, BLK] bool  x0 (masked) / the token (decoded) is an end token
  n_blocks [R] int          blocks of the tail this row has added (>= 1; later ones are ignored)

Rule (docs/recipes/d2f.md), with fractions taken *before* the step:
  a block is active when it is added and has masks; it is fully activated when it is the
  tail's first block (everything before the tail is finished) or its predecessor's decoded
  fraction >= tau_act, else semi-activated. Every active block unmasks the positions with
  conf > tau_conf; a fully activated one also its most confident masked position (lowest index
  on ties). After the step: decoded fraction per block, and add[r] = the row's last added
  block has fraction >= tau_add and no end token is decoded in the row.

Outputs (kernel and reference agree exactly): transfer [R, NB, BLK] bool, frac [R, NB] float32
(after the step; blocks not added report their own fraction, 0), state [R, NB] int8
(0 = not active, 1 = semi-activated, 2 = fully activated), add [R] bool.
"""
from __future__ import annotations


import torch

from accel.core.triton_gate import require_triton, tl, triton, use_triton  # noqa: F401 (tl: the kernels' language)


def block_update_ref(conf, masked, is_end, n_blocks, tau_conf: float, tau_act: float, tau_add: float):
    """Pure-torch reference (contract: module docstring)."""
    R, NB, BLK = conf.shape
    conf = conf.float()
    added = torch.arange(NB, device=conf.device)[None, :] < n_blocks[:, None]
    frac0 = 1.0 - masked.float().sum(-1) / BLK
    prev = torch.cat([torch.ones_like(frac0[:, :1]), frac0[:, :-1]], 1)
    active = added & masked.any(-1)
    full = active & (prev >= tau_act)
    transfer = masked & active[..., None] & (conf > tau_conf)
    c = torch.where(masked, conf, torch.full_like(conf, -1.0))
    best = torch.zeros_like(masked).scatter_(2, c.argmax(-1, keepdim=True), True)
    transfer |= best & masked & full[..., None]
    frac = 1.0 - (masked & ~transfer).float().sum(-1) / BLK
    has_end = (is_end & added[..., None] & (~masked | transfer)).flatten(1).any(1)
    last = (n_blocks.long() - 1).clamp(0, NB - 1)
    add = (frac.gather(1, last[:, None]).squeeze(1) >= tau_add) & ~has_end
    state = torch.where(full, 2, torch.where(active, 1, 0)).to(torch.int8)
    return transfer, frac, state, add


if triton is not None:
    @triton.jit
    def _block_update_kernel(conf_ptr, masked_ptr, end_ptr, nb_ptr, tr_ptr, frac_ptr, state_ptr, add_ptr,
                             NB, BLK, tau_conf, tau_act, tau_add,
                             NBP: tl.constexpr, BLKP: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        b = tl.arange(0, NBP)
        j = tl.arange(0, BLKP)
        inb = (b[:, None] < NB) & (j[None, :] < BLK)
        off = row * NB * BLK + b[:, None] * BLK + j[None, :]
        conf = tl.load(conf_ptr + off, mask=inb, other=-1.0).to(tl.float32)
        m = tl.load(masked_ptr + off, mask=inb, other=0) != 0
        end = tl.load(end_ptr + off, mask=inb, other=0) != 0
        nb = tl.load(nb_ptr + row)
        added = (b < nb) & (b < NB)
        n_masked = tl.sum(m.to(tl.float32), axis=1)
        frac0 = 1.0 - n_masked / BLK
        # predecessor's fraction: frac0 shifted by one block (1.0 for the tail's first block)
        sel = (b[None, :] == (b[:, None] - 1)).to(tl.float32)  # [NBP, NBP]: row b picks column b-1
        prev = tl.sum(sel * frac0[None, :], axis=1)
        prev = tl.where(b == 0, 1.0, prev)
        active = added & (n_masked > 0)
        full = active & (prev >= tau_act)
        tr = m & active[:, None] & (conf > tau_conf)
        c = tl.where(m, conf, -1.0)
        cmax = tl.max(c, axis=1)
        first = tl.min(tl.where((c == cmax[:, None]) & inb, j[None, :], BLKP), axis=1)
        tr = tr | (m & full[:, None] & (j[None, :] == first[:, None]))
        left = m & ~tr
        frac = 1.0 - tl.sum(left.to(tl.float32), axis=1) / BLK
        dec_end = end & added[:, None] & (~m | tr)
        has_end = tl.max(tl.max(dec_end.to(tl.int32), axis=1), axis=0) > 0
        last_frac = tl.sum(tl.where(b == nb - 1, frac, 0.0), axis=0)
        add = (last_frac >= tau_add) & ~has_end
        state = tl.where(full, 2, tl.where(active, 1, 0))
        tl.store(tr_ptr + off, tr.to(tl.int8), mask=inb)
        tl.store(frac_ptr + row * NB + b, frac, mask=b < NB)
        tl.store(state_ptr + row * NB + b, state.to(tl.int8), mask=b < NB)
        tl.store(add_ptr + row, add.to(tl.int8))



def block_update_triton(conf, masked, is_end, n_blocks, tau_conf: float, tau_act: float, tau_add: float):
    """The Triton path (one program per row); same contract as `block_update_ref`."""
    require_triton("block_update_ref")
    R, NB, BLK = conf.shape
    conf = conf.float().contiguous()
    m8 = masked.to(torch.int8).contiguous()
    e8 = is_end.to(torch.int8).contiguous()
    nb = n_blocks.to(torch.int64).contiguous()
    tr = torch.empty((R, NB, BLK), dtype=torch.int8, device=conf.device)
    frac = torch.empty((R, NB), dtype=torch.float32, device=conf.device)
    state = torch.empty((R, NB), dtype=torch.int8, device=conf.device)
    add = torch.empty((R,), dtype=torch.int8, device=conf.device)
    if R:
        _block_update_kernel[(R,)](conf, m8, e8, nb, tr, frac, state, add, NB, BLK, float(tau_conf),
                                   float(tau_act), float(tau_add), NBP=max(2, triton.next_power_of_2(NB)),
                                   BLKP=max(2, triton.next_power_of_2(BLK)))
    return tr.bool(), frac, state, add.bool()


def block_update(conf, masked, is_end, n_blocks, tau_conf: float, tau_act: float, tau_add: float,
                 force: bool = False):
    """Triton on CUDA tensors (when installed), the reference otherwise; force=True runs Triton on
    CPU under TRITON_INTERPRET=1 (how tests check the kernel)."""
    if use_triton(conf, force):
        return block_update_triton(conf, masked, is_end, n_blocks, tau_conf, tau_act, tau_add)
    return block_update_ref(conf, masked, is_end, n_blocks, tau_conf, tau_act, tau_add)

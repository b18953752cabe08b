"""Learn2PD decoding: the filter as a `generate_blockwise` policy (so batching and the prefix /
dual KV caches come from the shared block loop).

Per forward: unmask = {masked positions with sigmoid(filter(confidence)) > tau} ∪ {the vanilla
schedule's own pick for this step: its top-1 most confident masked position}. EoTP (a separate
switch): if the filter accepts an end token at a masked position, the row ends at the first such
position; otherwise, if some masked position's argmax is an end token, it ends at the most
confident such one; the block loop then fills the rest with end tokens and crops the canvas.

Early exit (stop a row once an end token with no mask before it is decoded) follows `eotp` by
default: it is End-of-Text handling without a prediction, so plain `learn2pd` decodes the full
length as in the paper and the EoTP row shows what truncation buys.
"""
from __future__ import annotations

import torch

from accel.decoding.dllm import generate_blockwise
from accel.decoding.policies import BlockDecision, BlockState
from accel.recipes.learn2pd.kernels import decision_ref, learn2pd_step, triton


class Learn2PDPolicy:
    """Callable policy; `fused` = 'auto' (Triton kernel on CUDA at T=0), 'never' or 'force'."""

    def __init__(self, filt, tau: float = 0.96, eotp: bool = True, end_ids=(), k: int = 1,
                 temperature: float = 0.0, fused: str = "auto"):
        if fused not in ("auto", "never", "force"):
            raise ValueError(f"fused must be auto, never or force, got {fused!r}")
        if eotp and not end_ids:
            raise ValueError("EoTP needs the backbone's end token ids")
        self.block_len = filt.block_len
        self.params = [p.detach().float() for p in (filt.fc1.weight, filt.fc1.bias, filt.fc2.weight, filt.fc2.bias)]
        self.tau, self.eotp, self.end_ids, self.k = float(tau), bool(eotp), tuple(end_ids), int(k)
        self.temperature, self.fused = temperature, fused

    def _on(self, device):
        if self.params[0].device != device:
            self.params = [p.to(device) for p in self.params]
        return self.params

    def __call__(self, st: BlockState) -> BlockDecision:
        blk = st.masked.shape[1]
        if blk != self.block_len:
            raise ValueError(f"the filter was trained for block length {self.block_len}, the decoder uses {blk}; "
                             f"decode with block_len={self.block_len}")
        w = self._on(st.logits.device)
        use_kernel = (triton is not None and self.k == 1 and not self.temperature and self.fused != "never"
                      and (st.logits.is_cuda or self.fused == "force"))
        if use_kernel:
            transfer, _, _, end = learn2pd_step(st.logits, st.masked, *w, self.tau, self.end_ids, self.eotp,
                                                force_triton=self.fused == "force")
        else:
            transfer, end = decision_ref(st.confidence, st.x0, st.masked, *w, self.tau, self.end_ids,
                                         self.eotp, self.k)
        if not self.eotp:
            return BlockDecision(transfer)
        return BlockDecision(transfer, torch.where(end >= 0, end + st.block_start, end))


def generate_learn2pd(adapter, prompts: list[list[int]], gen_len: int, filt, tau: float = 0.96, eotp: bool = True,
                      cache: str | None = None, temperature: float = 0.0, generator=None,
                      early_exit: bool | None = None, fused: str = "auto"):
    """Decode `prompts` (token id lists) with the filter; block length = the filter's."""
    policy = Learn2PDPolicy(filt, tau=tau, eotp=eotp, end_ids=adapter.eos_ids, temperature=temperature,
                            fused=fused)
    return generate_blockwise(adapter, prompts, gen_len=gen_len, block_len=filt.block_len, policy=policy,
                              cache=cache, temperature=temperature, generator=generator,
                              early_exit=eotp if early_exit is None else early_exit)

"""The sampler: one transformer layer over the frozen dLLM's final hidden states.

Design (the paper leaves the inputs open; this is the choice, measured in the README; docs/recipes/joint-sampler.md):

- input per position = the backbone's final hidden state h (after its final norm: what its
  lm_head reads) from the ONE full forward at the start of the step; at positions unmasked
  earlier in the same step, a learned projection of the frozen input embedding of the chosen
  token is *added* to h (``token_input="add"``, default) or *replaces* it (``"replace"``).
  The projection starts as the identity scaled to the hidden states' norm (the scale
  `check_head` measures): the built-in teacher's h is ~6x longer than its embeddings, and at
  scale 1 the token was a small perturbation the layer took longer to find than the data lasted
  (held-out block KL stayed at the marginals' 0.033-0.035; scaled, 0.016 after 600 steps).
  Adding keeps the backbone's view of that position (it knew what was likely there) and tells
  the layer which value was drawn. That input only feeds the layer: the output is
  h + (layer(input) - input), so the token input never reaches the lm_head directly (on a
  shifted backbone the slot of position p predicts p+1; leaving E(tok) there boosted repeating
  the token at p+1 through the tied lm_head -- the duplicated digits of issue 8);
- one full-width ``LlamaDecoderLayer`` (the backbone's hidden size, heads and MLP width; rotary
  positions like the backbone) with bidirectional attention over the whole canvas; its output
  projections (attention o_proj, MLP down_proj) start at zero, so the untrained sampler returns
  h unchanged and reproduces the marginal baseline exactly; training only learns the
  correction that conditioning on the step's earlier tokens calls for;
- logits = the backbone's own (frozen) lm_head on the layer output, with the backbone's logit
  alignment (Dream's shift included).

A pass costs one layer over the canvas instead of the backbone's n layers (1/4 of a forward
for the built-in 4-layer teacher, 1/32 for LLaDA-8B). Width reduction was not needed at these
sizes; the layer config is recorded so a narrower one could be added without a format change.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

from accel.models.masks import full_mask, position_ids

LAYER_KEYS = ("hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size", "rms_norm_eps",
              "rope_theta", "max_position_embeddings", "hidden_act", "head_dim")


class HeadMismatch(ValueError):
    """The backbone's lm_head does not read its last hidden state; the sampler cannot reuse it."""


def layer_config(backbone_config) -> dict:
    """The sampler layer's shape, read from the backbone config (Llama-style field names)."""
    c = backbone_config
    H = int(c.hidden_size)
    heads = int(getattr(c, "num_attention_heads", None) or getattr(c, "n_heads"))
    out = {"hidden_size": H, "num_attention_heads": heads,
           "num_key_value_heads": int(getattr(c, "num_key_value_heads", None) or heads),
           "intermediate_size": int(getattr(c, "intermediate_size", None) or 4 * H),
           "rms_norm_eps": float(getattr(c, "rms_norm_eps", 1e-6)),
           "rope_theta": float(getattr(c, "rope_theta", None) or _rope_theta(c)),
           "max_position_embeddings": int(getattr(c, "max_position_embeddings", 4096) or 4096),
           "hidden_act": str(getattr(c, "hidden_act", "silu")),
           "head_dim": int(getattr(c, "head_dim", None) or H // heads)}
    return out


def _rope_theta(c) -> float:
    rp = getattr(c, "rope_parameters", None) or {}
    return float(rp.get("rope_theta", 10000.0)) if isinstance(rp, dict) else 10000.0


class SamplerLayer(nn.Module):
    """h [B, L, H] (+ embeddings of this step's earlier tokens) -> refined hidden [B, L, H]."""

    def __init__(self, cfg: dict, token_input: str = "add"):
        super().__init__()

        if token_input not in ("add", "replace"):
            raise ValueError(f"token_input={token_input!r}: choose add or replace")
        self.cfg = dict(cfg)
        self.token_input = token_input
        lc = LlamaConfig(hidden_size=cfg["hidden_size"], num_attention_heads=cfg["num_attention_heads"],
                         num_key_value_heads=cfg["num_key_value_heads"], intermediate_size=cfg["intermediate_size"],
                         rms_norm_eps=cfg["rms_norm_eps"], max_position_embeddings=cfg["max_position_embeddings"],
                         hidden_act=cfg["hidden_act"], head_dim=cfg["head_dim"], num_hidden_layers=1,
                         attention_dropout=0.0, rope_parameters={"rope_type": "default", "rope_theta": cfg["rope_theta"]})
        lc._attn_implementation = "sdpa"
        H = cfg["hidden_size"]
        self.tok_proj = nn.Linear(H, H, bias=False)
        self.layer = LlamaDecoderLayer(lc, layer_idx=0)
        self.rotary = LlamaRotaryEmbedding(lc)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, token_scale: float = 1.0):
        """Identity at init: zero output projections, token projection = token_scale x identity."""
        nn.init.eye_(self.tok_proj.weight)
        self.tok_proj.weight.mul_(token_scale)
        nn.init.zeros_(self.layer.self_attn.o_proj.weight)
        nn.init.zeros_(self.layer.mlp.down_proj.weight)

    def forward(self, h: torch.Tensor, tok_emb: torch.Tensor, new: torch.Tensor, attn_bias: torch.Tensor,
                position_ids: torch.Tensor) -> torch.Tensor:
        """h, tok_emb [B, L, H]; new [B, L] bool (unmasked earlier in this step); attn_bias [B, 1, L, L]
        additive float mask; position_ids [B, L]."""
        t = self.tok_proj(tok_emb.to(self.tok_proj.weight.dtype))
        h = h.to(t.dtype)
        nm = new[..., None]
        x = torch.where(nm, h + t, h) if self.token_input == "add" else torch.where(nm, t, h)
        pe = self.rotary(x, position_ids)
        out = self.layer(x, attention_mask=attn_bias.to(x.dtype), position_ids=position_ids, position_embeddings=pe)
        out = out[0] if isinstance(out, tuple) else out
        # the token input feeds the layer (its attention and MLP read it) but is taken back out of
        # the residual stream: out = h + the layer's learned update. Left in, it lands in the slot
        # that predicts the NEXT position on shifted (Dream-style) backbones, and with tied
        # embeddings lm_head(h + E(tok)) boosts repeating the chosen token there -- the untrained
        # sampler was then not the marginal baseline, and training had to unlearn that first.
        return out - (x - h)


# ------------------------------------------------------------------ backbone helpers
def additive_mask(mask4d: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """4D bool mask (True = attend) -> additive float mask for the layer (no -inf: no NaN rows)."""
    return torch.zeros(mask4d.shape, dtype=dtype, device=mask4d.device).masked_fill(~mask4d, torch.finfo(dtype).min)


def backbone_forward(adapter, x, attn4d, pos):
    """(aligned logits [B, L, V], final hidden h [B, L, H]) from ONE full forward of the frozen dLLM."""
    logits, out = adapter.forward(x, attn4d, pos, output_hidden_states=True)
    return logits, out.hidden_states[-1]


def head_logits(adapter, hidden: torch.Tensor) -> torch.Tensor:
    """The frozen lm_head on sampler outputs, aligned like the backbone's logits."""
    head = adapter.model.get_output_embeddings()
    logits = head(hidden.to(head.weight.dtype))
    if adapter.shift_logits:
        logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    return logits


def token_embeddings(adapter, ids: torch.Tensor) -> torch.Tensor:
    return adapter.model.get_input_embeddings()(ids)


@torch.no_grad()
def check_head(adapter) -> float:
    """Raises HeadMismatch unless lm_head(last hidden state) reproduces the backbone's logits;
    returns the token scale: mean norm of h on the probe canvas / mean norm of the input embeddings."""
    dev = adapter.device
    x = torch.tensor([[adapter.pad_id] + [adapter.mask_id] * 8], device=dev)
    valid = torch.ones_like(x, dtype=torch.bool)
    logits, h = backbone_forward(adapter, x, full_mask(valid), position_ids(valid))
    again = head_logits(adapter, h)
    if again.shape != logits.shape or not torch.allclose(again.float(), logits.float(), atol=1e-3, rtol=1e-3):
        raise HeadMismatch(f"backbone {adapter.source}: its lm_head does not read the last hidden state "
                           "(hidden_states[-1]); the joint sampler supports Llama/Qwen-style models whose last "
                           "hidden state is final-normed")
    emb = adapter.model.get_input_embeddings().weight.float()
    return float(h.float().norm(dim=-1).mean() / emb.norm(dim=-1).mean().clamp(min=1e-6))


def build_sampler(adapter, token_input: str = "add", seed: int = 0) -> SamplerLayer:
    """A fresh (identity-initialised) float32 sampler layer shaped like the backbone, on its device."""
    scale = check_head(adapter)
    torch.manual_seed(seed)
    layer = SamplerLayer(layer_config(adapter.model.config), token_input)
    layer.reset_parameters(token_scale=scale)
    return layer.to(device=adapter.device)


def sampler_logits(adapter, layer: SamplerLayer, h, x_new, new, attn_bias, pos):
    """Logits [B, L, V] of one sampler pass: x_new holds this step's earlier tokens at `new` positions."""
    emb = token_embeddings(adapter, x_new)
    return head_logits(adapter, layer(h, emb, new, attn_bias, pos))

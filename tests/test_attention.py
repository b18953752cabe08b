"""`accel.models.attention`: the grouped-query attention that reads the cache in place gives the same
logits as transformers' sdpa, and is switched on only where it applies."""
import copy

import pytest
import torch
from transformers import DynamicCache

from accel.decoding.cost_curve import fingerprint
from accel.models.attention import NAME, use_gqa_attention
from accel.models.kv import cache_kwargs, output_cache


@pytest.fixture(scope="module")
def gqa_pair(tiny_model):
    """(transformers' sdpa, the same weights on sdpa_gqa): 4 query heads over 2 key/value heads."""
    ref = tiny_model("ar", seed=3, num_attention_heads=4, num_key_value_heads=2)
    fast = copy.deepcopy(ref)
    assert use_gqa_attention(fast) and fast.config._attn_implementation == NAME
    assert ref.config._attn_implementation == "sdpa"
    return ref, fast


@torch.no_grad()
def test_same_logits_prefill_padding_cached_steps_and_tree_masks(gqa_pair):
    ref, fast = gqa_pair
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 70, (2, 12), generator=g)
    attn = torch.ones(2, 12, dtype=torch.long)
    attn[1, :4] = 0  # a left-padded row: a 2D mask through the sdpa mask function
    caches = []
    for m in (ref, fast):
        o = m(input_ids=ids, attention_mask=attn, use_cache=True, **cache_kwargs(m, DynamicCache()))
        caches.append((o.logits, output_cache(o)))
    torch.testing.assert_close(caches[0][0], caches[1][0], rtol=0, atol=1e-5)
    # three new tokens over the cache: causal (the mask transformers builds), then a tree where the third
    # token sees the root but not the second (two siblings)
    new = torch.randint(5, 70, (2, 3), generator=g)
    pos = attn.sum(1, keepdim=True) + torch.arange(3)[None]
    tree = torch.ones(2, 1, 3, 15, dtype=torch.bool)
    tree[:, :, :, 12:] = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, 1]], dtype=torch.bool)
    tree[1, :, :, :4] = False
    for mask in (torch.cat([attn, torch.ones(2, 3, dtype=torch.long)], 1), tree):
        outs = []
        for m, (_, cache) in zip((ref, fast), caches):
            outs.append(m(input_ids=new, attention_mask=mask, position_ids=pos, use_cache=True,
                          **cache_kwargs(m, cache)).logits)
            cache.crop(-3)
        torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5)


def test_switched_only_for_grouped_heads_on_a_cpu(tiny_model, gqa_pair):
    mha = tiny_model("ar", seed=3)  # as many key/value heads as query heads: nothing to gain
    assert not use_gqa_attention(mha) and mha.config._attn_implementation == "sdpa"
    eager = tiny_model("ar", seed=3, num_attention_heads=4, num_key_value_heads=2)
    eager.set_attn_implementation("eager")  # a user's choice is left alone
    assert not use_gqa_attention(eager) and eager.config._attn_implementation == "eager"


def test_cost_curve_fingerprint_names_the_attention(gqa_pair):
    ref, fast = gqa_pair  # a curve measured with transformers' copies must not price the in-place forward
    assert fingerprint(ref)["attention"] == "sdpa" and fingerprint(fast)["attention"] == NAME

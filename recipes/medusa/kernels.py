"""Medusa's fused kernel: candidate evaluation over the verified tree.

It lives in `accel.decoding.tree_kernels` because Hydra (and any tree drafter) verifies with
the same kernel; re-exported here so each recipe's kernels are found in its own folder.
"""
from accel.decoding.tree_kernels import (evaluate_candidates, evaluate_candidates_ref,  # noqa: F401
                                         evaluate_candidates_triton, node_accept_ref)

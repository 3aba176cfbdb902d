"""The decomposition table: core ATen, minus the ops kiln keeps whole because it fuses them itself."""
from __future__ import annotations

import functools

import torch
from torch._decomp import core_aten_decompositions, remove_decompositions

aten = torch.ops.aten

# Kept whole: kiln lowers these in C++ into the patterns its fusion and rewrites expect.
KEEP_WHOLE = [
    aten._softmax,
    aten._log_softmax,
    aten._softmax_backward_data,
    aten._log_softmax_backward_data,
    aten.embedding_dense_backward,
    aten.gelu,
    aten.silu,
    # SDPA stays whole. core ATen's math decomposition of the CPU flash-attention forward does not
    # produce the logsumexp its (undecomposed) backward expects: gradients come out wrong (seen
    # with torch 2.13). Until kiln lowers SDPA itself, the fused op runs eagerly, forward and backward.
    aten.scaled_dot_product_attention,
    aten._scaled_dot_product_flash_attention_for_cpu,
]


@functools.lru_cache(None)
def decomposition_table() -> dict:
    table = dict(core_aten_decompositions())
    remove_decompositions(table, KEEP_WHOLE)
    return table

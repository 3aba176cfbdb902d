"""Reference models the benchmarks and tests run: the seed's attention and the CS336 TransformerLM."""

from .attention import attention, sdpa_attention
from .transformer import CONFIGS, BasicsTransformerLM, make_model, make_tokens

__all__ = [
    "attention",
    "sdpa_attention",
    "CONFIGS",
    "BasicsTransformerLM",
    "make_model",
    "make_tokens",
]

"""Factories for ../shared/bench/bench_peer.py --other: hyena-glt at the peer's width and depth.

    python ../shared/bench/bench_peer.py --other benchmarks/peer_factory.py:factory > both.tsv
    python ../shared/bench/bench_peer.py --skip-peer --other benchmarks/peer_factory.py:factory_static4 \
        --other-name hyena-glt-static4

`tiny` = d_model 128 x 2 layers (MLP 512), `small` = 256 x 8 (MLP 1024), vocabulary 12 (token ids 0..11),
causal, Hyena order 2, filter MLP width 64 — HyenaDNA's shape. The module returns per-unit hidden states
(B, L, D) as the peer does.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from hyena_glt.config import HyenaGLTConfig
from hyena_glt.model import HyenaGLTModel

SHAPES = {
    "tiny": dict(d_model=128, n_layers=2, d_inner=512),
    "small": dict(d_model=256, n_layers=8, d_inner=1024),
}


class UnitStates(nn.Module):
    def __init__(self, config: HyenaGLTConfig):
        super().__init__()
        self.model = HyenaGLTModel(config)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids).unit_states


def build(config_name: str, patcher: str = "none", **overrides) -> nn.Module:
    if config_name not in SHAPES:
        raise ValueError(f"unknown config {config_name!r} (use {', '.join(SHAPES)})")
    config = HyenaGLTConfig.preset(config_name, **SHAPES[config_name], vocab_size=12, patcher=patcher, **overrides)
    return UnitStates(config).eval()


def factory(config_name: str, max_len: int) -> nn.Module:
    """Patching none: the plain HyenaDNA-style model (max_len is not needed: filters fit any length)."""
    return build(config_name)


def factory_static4(config_name: str, max_len: int) -> nn.Module:
    """Static patches of 4 units, with the local decoder back to per-unit states."""
    return build(config_name, "static:4")


make_model = factory  # the name the README's bench_peer example uses

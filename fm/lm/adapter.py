"""Vision adapters: an encoder's tokens (B, N, C), on their 3D grid, become visual tokens (B, K, H) in
the language model's embedding space. Three kinds, chosen by `AdapterConfig.kind`, as the
published 3D report generators pair them:

- "mlp": every token through a two-layer MLP, K = N (LLaVA, Merlin's linear layer over 490 tokens);
- "perceiver": K learned queries cross-attend to the tokens (RadFM and Reg2RG use 32), built on
  timm's `AttentionPoolLatent`; a fixed 3D sine-cosine position code is added to the tokens first,
  so the queries know where in the volume (and on which side) what they attend to lies;
- "pool": the token grid average-pooled to pool_size^3 cells, then the MLP (M3D-LaMed pools to 256).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from timm.layers import AttentionPoolLatent, Mlp
from torch import nn

from fm.core.errors import look_up

ADAPTER_KINDS = ("mlp", "perceiver", "pool")


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    kind: str = "perceiver"
    num_queries: int = 32  # perceiver: visual tokens
    pool_size: int = 4  # pool: cells per axis (pool_size^3 visual tokens)
    num_heads: int = 8  # perceiver: attention heads (the encoder's token width must divide by it)
    mlp_ratio: float = 2.0  # hidden width of the MLPs, as a multiple of the language model's width

    def __post_init__(self):
        look_up("adapter kind", self.kind, ADAPTER_KINDS)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def num_tokens(self, grid: tuple[int, int, int]) -> int:
        """Visual tokens for an encoder token grid of this shape."""
        if self.kind == "perceiver":
            return self.num_queries
        if self.kind == "pool":
            return self.pool_size**3
        return math.prod(grid)


def build_adapter(config: AdapterConfig, in_features: int, out_features: int) -> nn.Module:
    """An adapter from `in_features`-wide encoder tokens to `out_features`-wide visual tokens."""
    hidden = int(out_features * config.mlp_ratio)
    if config.kind == "mlp":
        return MLPProjector(in_features, hidden, out_features)
    if config.kind == "pool":
        return SpatialPool(in_features, hidden, out_features, config.pool_size)
    return PerceiverResampler(in_features, out_features, config.num_queries, config.num_heads, hidden / out_features)


class MLPProjector(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, out_features: int):
        super().__init__()
        self.mlp = Mlp(in_features, hidden_features, out_features, act_layer=nn.GELU)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        return self.mlp(tokens)


class SpatialPool(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, out_features: int, pool_size: int):
        super().__init__()
        self.pool_size = pool_size
        self.mlp = Mlp(in_features, hidden_features, out_features, act_layer=nn.GELU)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        batch, _, channels = tokens.shape
        volume = tokens.transpose(1, 2).reshape(batch, channels, *grid)
        pooled = F.adaptive_avg_pool3d(volume, self.pool_size).flatten(2).transpose(1, 2)
        return self.mlp(pooled)


class PerceiverResampler(nn.Module):
    def __init__(self, in_features: int, out_features: int, num_queries: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.attend = AttentionPoolLatent(
            in_features, out_features, num_heads=num_heads, latent_len=num_queries, pool_type="", mlp_ratio=mlp_ratio
        )
        # timm starts the latent at zero: every query would be the same and stay so
        nn.init.trunc_normal_(self.attend.latent, std=in_features**-0.5)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        return self.attend(tokens + position_code(grid, tokens.shape[-1]).to(tokens))


def position_code(grid: tuple[int, int, int], channels: int) -> torch.Tensor:
    """(N, channels) fixed sine-cosine code of each cell's position, the grid scaled to [-1, 1] on
    each axis (so any grid size is coded alike): channels split between the three axes, each a sine
    and cosine at frequencies from half a period to eight periods across the grid (finer would
    alias on the coarse token grids of 3D encoders); channels left over stay zero."""
    per_axis = channels // 6  # frequencies per axis, each giving a sine and a cosine
    code = torch.zeros(math.prod(grid), channels)
    if per_axis == 0:
        return code
    axes = torch.meshgrid(*(torch.linspace(-1, 1, n) if n > 1 else torch.zeros(1) for n in grid), indexing="ij")
    frequencies = math.pi * 2.0 ** torch.linspace(0, 4, per_axis)
    parts = []
    for axis in axes:
        angles = axis.reshape(-1, 1) * frequencies
        parts += [angles.sin(), angles.cos()]
    filled = torch.cat(parts, dim=1)
    code[:, : filled.shape[1]] = filled
    return code

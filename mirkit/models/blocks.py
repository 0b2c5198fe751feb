"""The user tower's Transformer: pre-LN blocks whose position-wise half skips padding.

The parameters and their names are `nn.TransformerEncoder`'s (norm first, GELU), so
checkpoints of either load into the other. What differs is the work: histories are
left-padded to the longest in the batch, and on short-history data most positions are
padding (Beauty: about 85 % of a batch). Attention needs the [B, L] layout, but the
feed-forward half, the largest part of a block, runs on the real positions only. A
padding position's output is then not a block's output (it is never read: padding keys
are masked for every real query).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class Dropout(nn.Dropout):
    """`nn.Dropout` with its mask drawn from `torch.rand` on CPU: the same distribution,
    half the cost there (CPU `bernoulli_` draws one number at a time; measured in
    docs/design.md). Other devices use the native kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        keep = (torch.rand_like(x) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * keep


class Block(nn.Module):
    """x + attention(norm1(x)), then + feed-forward(norm2(.)) at the real positions."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()  # the order of nn.TransformerEncoderLayer: the same first weights
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, ff_dim)
        self.dropout = Dropout(dropout)
        self.linear2 = nn.Linear(ff_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """x [B, L, dim]; mask [B * heads, L, L] (True = blocked); real [B, L] bool."""
        h = self.norm1(x)
        x = x + self.dropout1(self.self_attn(h, h, h, attn_mask=mask, need_weights=False)[0])
        rows = x[real]
        hidden = self.dropout(F.gelu(self.linear1(self.norm2(rows))))
        return x.index_put((real,), rows + self.dropout2(self.linear2(hidden)))


class Blocks(nn.Module):
    """`count` blocks, all starting from the same weights (as `nn.TransformerEncoder`
    copies its layer)."""

    def __init__(self, count: int, dim: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()
        first = Block(dim, heads, ff_dim, dropout)
        self.layers = nn.ModuleList([copy.deepcopy(first) for _ in range(count)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask, real)
        return x

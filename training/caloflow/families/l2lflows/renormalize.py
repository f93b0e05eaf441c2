"""Threshold-aware renormalisation of a generated layer to its target energy (method note 3.6, step 4).

Per shower and layer, with the cells sorted ascending (s_k), the reverse cumulative sums R_k = sum_{j>=k} s_j
and the scales r_k = E / R_k: the kept cells are those ranked from k* on, k* the smallest k with
s_k r_k >= threshold, all multiplied by r_{k*}. Every kept cell is then >= threshold, and the kept cells sum
to E whenever E >= threshold (the largest cell alone passes then); otherwise the layer is empty.

``s_k r_k = E s_k / R_k`` rises with k (s_k rises, R_k falls), so the kept cells are exactly the cells at or
above the smallest passing value: the result is computed in the cells' own order with one sort, one
cumulative sum and ``where`` (static shapes; exported graphs run it as TopK + CumSum).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["renormalize"]


def renormalize(cells: Tensor, target: Tensor, threshold: float) -> Tensor:
    """``cells`` (..., C) non-negative, ``target`` (...) energies in the same unit -> renormalised (..., C)."""
    target = target.unsqueeze(-1)
    ascending = torch.sort(cells, dim=-1).values
    remaining = torch.flip(torch.cumsum(torch.flip(ascending, dims=[-1]), dim=-1), dims=[-1])
    passing = ascending * target >= threshold * remaining
    passing = passing & (ascending > 0)
    infinity = torch.full_like(ascending, float("inf"))
    cutoff = torch.where(passing, ascending, infinity).amin(dim=-1, keepdim=True)
    kept = cells >= cutoff
    kept_sum = torch.where(kept, cells, torch.zeros_like(cells)).sum(dim=-1, keepdim=True)
    scale = target / kept_sum.clamp_min(torch.finfo(cells.dtype).tiny)
    return torch.where(kept, cells * scale, torch.zeros_like(cells))

"""One chunked pass over a file's used rows: everything the metrics need, with memory bounded by the plan.

Per chunk the showers are restricted to the plan's crop region when it has one (zeros outside), cut at the
evaluation threshold, then the dataset's feature provider computes the per-shower features, the voxel spectrum
is counted over fixed edges, the showers are summed per incident-energy group (average showers), and the first
``n_low`` / ``n_low_normed`` rows become float32 classifier inputs. Only per-shower features (a few hundred
numbers each), the counts, the sums and the kept classifier rows stay in memory; a Dataset 3 file is never
held whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from caloflow.evaluation.classifier_features import low_level_inputs, low_normed_inputs
from caloflow.evaluation.inputs import ShowerSample, iter_used
from caloflow.evaluation.providers import FeatureProvider
from caloflow.evaluation.region import CropRegion

__all__ = ["FileSummary", "StreamPlan", "summarise"]

Array = NDArray[np.float64]
Float32 = NDArray[np.float32]


@dataclass(frozen=True)
class StreamPlan:
    min_energy_mev: float
    voxel_edges: Array
    groups: Sequence[tuple[float, float]]  # incident-energy ranges of the average showers; () = one group of all
    n_low: int = 0  # rows kept as cls-low inputs
    n_low_normed: int = 0  # rows kept as cls-low-normed inputs
    n_cells: int = 0  # non-zero cut cell energies kept for the W1 of the cell spectrum
    region: CropRegion | None = None  # zero every cell outside it before anything else (None: the whole grid)


@dataclass
class FileSummary:
    features: Any  # the provider's feature type
    voxel_counts: Array
    group_sums: Array  # (groups, V)
    group_counts: Array  # (groups,)
    low: Float32 | None
    low_normed: Float32 | None
    cells: Array

    def mean_showers(self) -> Array:
        """(groups, V) mean cut shower per group (zeros for an empty group)."""
        return self.group_sums / np.maximum(self.group_counts, 1)[:, None]


@dataclass
class _Accumulator:
    parts: list[Any]
    voxel_counts: Array
    group_sums: Array
    group_counts: Array
    low: list[Float32]
    low_normed: list[Float32]
    cells: list[Array]
    rows: int = 0


def summarise(
    sample: ShowerSample, provider: FeatureProvider[Any], plan: StreamPlan, on_chunk: Callable[[], None] | None = None
) -> FileSummary:
    """Stream ``sample``'s used rows once and return what the metrics need."""
    n_groups = max(1, len(plan.groups))
    v = sample.dataset.n_voxels
    acc = _Accumulator([], np.zeros(len(plan.voxel_edges) - 1), np.zeros((n_groups, v)), np.zeros(n_groups), [], [], [])
    for incident, full in iter_used(sample):
        showers = full if plan.region is None else plan.region.mask(full)
        _add_chunk(acc, provider, plan, incident, showers)
        if on_chunk is not None:
            on_chunk()
    return FileSummary(
        features=provider.join(acc.parts),
        voxel_counts=acc.voxel_counts,
        group_sums=acc.group_sums,
        group_counts=acc.group_counts,
        low=np.concatenate(acc.low) if acc.low else None,
        low_normed=np.concatenate(acc.low_normed) if acc.low_normed else None,
        cells=np.concatenate(acc.cells) if acc.cells else np.zeros(0),
    )


def _add_chunk(
    acc: _Accumulator, provider: FeatureProvider[Any], plan: StreamPlan, incident: Array, showers: Array
) -> None:
    cut = np.where(showers < plan.min_energy_mev, 0.0, showers)
    features = provider.features(incident, cut)
    acc.parts.append(features)
    acc.voxel_counts += np.histogram(cut, bins=plan.voxel_edges)[0]
    for g, mask in enumerate(_group_masks(incident, plan.groups)):
        acc.group_sums[g] += cut[mask].sum(axis=0)
        acc.group_counts[g] += int(mask.sum())
    low_rows = max(0, min(len(cut), plan.n_low - acc.rows))
    if low_rows:
        acc.low.append(low_level_inputs(incident[:low_rows], cut[:low_rows]).astype(np.float32))
    normed_rows = max(0, min(len(cut), plan.n_low_normed - acc.rows))
    if normed_rows:
        e_layer = provider.layer_energies(features)[:normed_rows]
        x = low_normed_inputs(incident[:normed_rows], showers[:normed_rows], e_layer, provider.geometry)
        acc.low_normed.append(x.astype(np.float32))
    room = plan.n_cells - sum(len(c) for c in acc.cells)
    if room > 0:
        acc.cells.append(cut[cut > 0][:room])
    acc.rows += len(cut)


def _group_masks(incident: Array, groups: Sequence[tuple[float, float]]) -> list[NDArray[np.bool_]]:
    if not groups:
        return [np.ones(len(incident), dtype=bool)]
    last = len(groups) - 1
    masks = [
        (incident >= lo) & ((incident <= hi) if i == last else (incident < hi)) for i, (lo, hi) in enumerate(groups)
    ]
    return masks

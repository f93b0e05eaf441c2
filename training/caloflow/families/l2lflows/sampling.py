"""Sampling a trained L2LFlows run into an ILD file: ``caloflow sample RUN --flow teacher|student``.

``teacher`` is the published L2LFlows generation (flow-I + the 30 MAF layer flows); its MAF layer flows run in
the fast inverse form (:func:`caloflow.export.fast.fast_flow`: one feature's spline parameters per pass, the same
function up to float rounding; on the ``small`` demo run, 1 thread, batch 100: 3.8 CPU s instead of 42, largest
per-shower relative L1 difference 1e-5). ``student`` is the served chain, eager (the plain module). The file is
the dataset's layout with the model's crop embedded in the full grid, zeros outside, and the attribute ``crop``
saying which cells are modelled: the form ``caloflow evaluate --crop`` reads (:mod:`caloflow.evaluation.region`).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from torch import Tensor, nn

from caloflow.data.grid_geometry import GridGeometry
from caloflow.evaluation.region import CROP_ATTR, CropRegion, crop_from_manifest
from caloflow.export.fast import fast_flow
from caloflow.families.l2lflows.models import LayerFlows
from caloflow.families.l2lflows.runner import TrainedL2LRun, load_l2l_run
from caloflow.families.l2lflows.sampler import L2LSampler
from caloflow.flows import Flow
from caloflow.training.sampling import Attrs, SampleSource, run_attrs

__all__ = ["fast_teacher_chain", "l2l_sample_source"]

CHAINS = ("student", "teacher")


class _FastLayerFlow(nn.Module):
    """A layer flow's sampling direction in the fast form, with the ``sample(z, c)`` the chain calls."""

    def __init__(self, flow: Flow) -> None:
        super().__init__()
        self.inverse = fast_flow(flow)

    def sample(self, z: Tensor, c: Tensor) -> Tensor:
        x: Tensor = self.inverse(z, c)
        return x


def fast_teacher_chain(run: TrainedL2LRun) -> L2LSampler:
    """The teacher chain with every MAF layer flow inverted one feature per pass (same showers, less work)."""
    layers = LayerFlows(_FastLayerFlow(run.teachers.flow(i)) for i in range(len(run.teachers)))
    return L2LSampler(cast(Flow, run.flow1), layers, run.prep, run.preset.window).eval()


def l2l_sample_source(run_dir: str | Path, chain: str, seed: int, device: torch.device | str) -> SampleSource:
    """The ``chain`` of an L2LFlows run as a sample source writing its crop embedded in the dataset's grid."""
    if chain not in CHAINS:
        raise ValueError(f"--flow: an L2LFlows run samples {' or '.join(CHAINS)}, not {chain!r}")
    run = load_l2l_run(run_dir)
    sampler = (fast_teacher_chain(run) if chain == "teacher" else run.sampler("student")).to(device)
    region = _region(run)
    return SampleSource(
        sampler,
        sampler.noise_dim,
        run.ds,
        _attrs(run, chain, seed, region),
        None if region is None else region.embed,
    )


def _region(run: TrainedL2LRun) -> CropRegion | None:
    """Where the run's crop sits in its dataset's grid; None when it covers the grid."""
    grid = run.ds.geometry
    if run.crop.is_full or not isinstance(grid, GridGeometry):
        return None
    return crop_from_manifest({"crop": run.crop.to_dict()}, grid)


def _attrs(run: TrainedL2LRun, chain: str, seed: int, region: CropRegion | None) -> Attrs:
    form = "MAF teachers, fast inverse" if chain == "teacher" else "IAF students, eager"
    what = f"L2LFlows {chain} chain samples ({form})"
    attrs = run_attrs(run.record, run.directory, preset=run.preset.name, flow=chain, seed=seed, what=what)
    attrs.update(family="l2lflows", dataset=run.ds.name)
    if region is not None:
        attrs[CROP_ATTR] = region.text()
    return attrs

"""L2LFlows as one graph, ``(INCIDENT_ENERGY [B, 1] MeV, NOISE [B, L + L C]) -> SHOWERS [B, L C] MeV``: flow-I,
the 30-layer student chain, the renormalisation and the threshold, with no Python loop at run time.

Written with the project's export path (:mod:`caloflow.export`): the eager reference has its MADE masks folded
and, when compact, the students' weights rounded to float16 (:func:`~caloflow.export.packing.fold_flow_weights`);
the exported module is its scanned form (:func:`caloflow.families.l2lflows.scan.scanned_sampler`: flow-I's MAF passes
and the layer chain as ONNX ``Scan`` loops, one copy of each flow's ops in the graph, the float16-exact
stacked student weights stored in float16), then torch.export with a dynamic batch and the ONNX conversion of
:mod:`caloflow.export.onnx_format`. Export time of the ``tiny`` preset: ~30 s instead of ~7 min unrolled
(16 671 ONNX nodes then, ~130 top-level nodes now). Parity is judged against the eager sampler in float64
(:func:`~caloflow.export.parity.check_parity`) on energies spanning the dataset's range.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from caloflow.export._root import ExportRoot
from caloflow.export.errors import ExportError
from caloflow.export.formats import ExportedArtifact, io_spec
from caloflow.export.onnx_format import convert_program, save_onnx
from caloflow.export.packing import fold_flow_weights
from caloflow.export.parity import check_parity
from caloflow.export.torch_export_format import export_root
from caloflow.families.l2lflows.sampler import L2LSampler
from caloflow.families.l2lflows.scan import scanned_sampler

__all__ = ["L2L_FORMATS", "check_l2l_parity", "export_l2l", "l2l_parity_inputs", "reference_l2l_sampler"]

L2L_FORMATS = {"onnx": "model.onnx"}


def reference_l2l_sampler(sampler: L2LSampler, compact: bool = True) -> L2LSampler:
    """The eager sampler an artifact must reproduce: masks folded, the students' weights float16-rounded when
    ``compact`` (flow-I stays float32)."""
    folded = copy.deepcopy(sampler).eval().requires_grad_(False)
    fold_flow_weights(folded.flow1, float16=False)
    fold_flow_weights(folded.layers, float16=compact)
    return folded


def l2l_parity_inputs(
    noise_dim: int, batch: int, energy_range_mev: tuple[float, float], seed: int = 0
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Energies spread evenly over the range (both ends included) and seeded standard normal noise, float32."""
    low, high = energy_range_mev
    energies = np.linspace(low, high, batch, dtype=np.float64).reshape(batch, 1).astype(np.float32)
    noise = torch.randn(batch, noise_dim, generator=torch.Generator().manual_seed(seed)).numpy()
    return energies, noise


def _example(sampler: L2LSampler, energy_range_mev: tuple[float, float]) -> tuple[Tensor, Tensor]:
    energies, noise = l2l_parity_inputs(sampler.noise_dim, 3, energy_range_mev)
    return torch.from_numpy(energies), torch.from_numpy(noise)


def export_l2l(
    reference: L2LSampler,
    out_dir: Path,
    energy_range_mev: tuple[float, float],
    formats: Sequence[str] = ("onnx",),
    *,
    compact: bool = True,
) -> list[ExportedArtifact]:
    """Write ``reference`` (from :func:`reference_l2l_sampler`) as one ONNX graph into ``out_dir``."""
    unknown = [f for f in formats if f not in L2L_FORMATS]
    if unknown or not formats:
        raise ExportError(f"L2LFlows exports {list(L2L_FORMATS)}; got {list(formats)}")
    prepared = scanned_sampler(reference, half=compact)
    path = Path(out_dir) / L2L_FORMATS["onnx"]
    try:
        program = export_root(ExportRoot(prepared), _example(reference, energy_range_mev))
        metadata = {"caloflow.io": io_spec(reference), "caloflow.compact": compact, "caloflow.family": "l2lflows"}
        version = save_onnx(convert_program(program), path, metadata)
    except Exception as error:  # exporter failures arrive as many types; report them as ours
        raise ExportError(f"onnx export of the L2LFlows sampler to {path} failed: {error}") from error
    return [ExportedArtifact(path.name, "onnx", version)]


def check_l2l_parity(
    out_dir: Path,
    artifacts: Sequence[ExportedArtifact],
    reference: L2LSampler,
    energy_range_mev: tuple[float, float],
    batch_sizes: Sequence[int] = (1, 200),
    threads: int | None = None,
) -> dict[str, dict[int, dict[str, float | int]]]:
    """:func:`caloflow.export.parity.check_parity` on energies spanning ``energy_range_mev`` (both ends)."""

    inputs = {
        batch: l2l_parity_inputs(reference.noise_dim, batch, energy_range_mev, seed=batch) for batch in batch_sizes
    }
    return check_parity(out_dir, artifacts, reference, threads=threads, inputs=inputs)

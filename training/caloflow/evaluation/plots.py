"""PNG plots of an evaluation: matplotlib's Agg canvas through ``Figure`` objects (no pyplot state, no LaTeX).

* ``hist_<family>.png``: one panel per feature (e.g. per layer) with the reference filled, the generated
  sample as a line, and a generated / reference ratio panel under it; the separation power in the title;
* ``e_ratio_per_energy.png``: E_tot / E_inc at each incident energy, with chi2/NDF;
* ``average_shower.png``: the mean shower per layer in polar (alpha, r) bins, reference above generated;
* ``layer_correlations.png``: Pearson matrices of the layer energies, reference, generated and difference;
* ``average_shower[_<range>MeV].png`` (:func:`plot_average`): per layer for Dataset 1, averaged over groups of
  five identical layers for Datasets 2 and 3, and for a grid (ILD) the longitudinal profile, the radial profile
  around the mean shower's centre and the mean transverse images;
* ``linearity_resolution.png``: mu90 and sigma90 / mu90 of E_tot / E_inc per incident-energy range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpecFromSubplotSpec
from numpy.typing import NDArray

from caloflow.data.geometry import Geometry
from caloflow.data.grid_geometry import GridGeometry
from caloflow.evaluation.correlations import LayerCorrelations
from caloflow.evaluation.energy import EnergyResponse
from caloflow.evaluation.histograms import HistogramComparison

__all__ = [
    "plot_average",
    "plot_average_showers",
    "plot_energy_response",
    "plot_histograms",
    "plot_layer_correlations",
    "plot_linearity",
]

Array = NDArray[np.float64]
matplotlib.rcParams["text.usetex"] = False  # the reference needs LaTeX; we never do
_REF_COLOUR, _GEN_COLOUR = "#9ecae1", "#d62728"
_DPI = 90
_RING_SEGMENTS = 36
_LAYER_GROUP = 5
_ANNOTATED_LAYERS = 10  # correlation matrices larger than this are drawn without the numbers


def plot_histograms(
    comparisons: Sequence[HistogramComparison], path: Path, *, title: str, labels: Sequence[str], log_x: bool = False
) -> Path:
    """One panel (histogram above, ratio below) per comparison, ``labels`` naming the x axes."""
    n = len(comparisons)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols, 3.6 * rows))
    grid = fig.add_gridspec(
        rows,
        cols,
        left=0.06,
        right=0.98,
        bottom=0.6 / (3.6 * rows),
        top=1 - 0.75 / (3.6 * rows),
        wspace=0.3,
        hspace=0.45,
    )
    for i, (comparison, label) in enumerate(zip(comparisons, labels, strict=True)):
        _histogram_panel(fig, grid[i // cols, i % cols], comparison, label, log_x, first=i == 0)
    fig.suptitle(title, y=1 - 0.15 / (3.6 * rows))
    return _save(fig, path)


def _histogram_panel(
    fig: Figure, cell: object, c: HistogramComparison, label: str, log_x: bool, *, first: bool
) -> None:
    inner = GridSpecFromSubplotSpec(2, 1, subplot_spec=cell, height_ratios=(3, 1), hspace=0.05)  # type: ignore[arg-type]
    top = fig.add_subplot(inner[0])
    bottom = fig.add_subplot(inner[1], sharex=top)
    top.stairs(c.reference, c.edges, fill=True, color=_REF_COLOUR, label="reference")
    top.stairs(c.generated, c.edges, color=_GEN_COLOUR, linewidth=1.2, label="generated")
    top.set_title(f"{c.name}  (sep. power {c.separation_power:.2e})", fontsize=9)
    top.tick_params(labelbottom=False, labelsize=7)
    if first:
        top.legend(fontsize=7)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(c.reference > 0, c.generated / c.reference, np.nan)
    bottom.stairs(ratio, c.edges, color=_GEN_COLOUR)
    bottom.axhline(1.0, color="grey", linewidth=0.8)
    bottom.set_ylim(0.5, 1.5)
    bottom.set_ylabel("gen / ref", fontsize=7)
    bottom.set_xlabel(label, fontsize=8)
    bottom.tick_params(labelsize=7)
    if log_x:
        top.set_xscale("log")
        top.set_yscale("log")


def plot_energy_response(response: EnergyResponse, path: Path, *, title: str) -> Path:
    comparisons = [b.histogram for b in response.bins]
    labels = [f"E_tot/E_inc at {b.energy_mev:g} MeV, chi2/NDF {b.chi2_per_ndf:.2f}" for b in response.bins]
    return plot_histograms(comparisons, path, title=f"{title}: chi2/NDF {response.chi2_per_ndf:.2f}", labels=labels)


def plot_average_showers(
    reference_mean: Array, generated_mean: Array, geometry: Geometry, path: Path, *, title: str
) -> Path:
    """Mean voxel energy (MeV, log colour from 1e-2) per layer; radius drawn as log(1 + r / mm)."""
    n = geometry.n_layers
    fig = Figure(figsize=(3.0 * n, 6.4), layout="constrained")
    vmax = max(float(reference_mean.max(initial=0.0)), float(generated_mean.max(initial=0.0)), 1.0)
    norm = LogNorm(vmin=1e-2, vmax=vmax)
    mesh = None
    for row, (name, mean) in enumerate((("reference", reference_mean), ("generated", generated_mean))):
        for col, (layer, sl) in enumerate(zip(geometry.layers, geometry.layer_slices, strict=True)):
            ax = fig.add_subplot(2, n, row * n + col + 1, projection="polar")
            # a layer without alpha bins is drawn as rings: one bin over 2 pi would be a degenerate polygon
            n_theta = layer.n_alpha if layer.n_alpha > 1 else _RING_SEGMENTS
            theta = np.linspace(-np.pi, np.pi, n_theta + 1)
            radius = np.log1p(np.asarray(layer.r_edges_mm))
            grid = mean[sl].reshape(layer.n_alpha, layer.n_r).T
            values = np.ma.masked_less(np.repeat(grid, n_theta // layer.n_alpha, axis=1), 1e-2)
            mesh = ax.pcolormesh(theta, radius, values, norm=norm, cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}, layer {layer.layer_id}", fontsize=8)
    if mesh is not None:
        fig.colorbar(mesh, ax=fig.axes, shrink=0.6, label="mean voxel energy [MeV]")
    fig.suptitle(title)
    return _save(fig, path)


def plot_average(
    reference_mean: Array, generated_mean: Array, geometry: Geometry | GridGeometry, path: Path, *, title: str
) -> Path:
    """The mean showers in the form that suits the geometry (see the module notes)."""
    if isinstance(geometry, GridGeometry):
        return _plot_grid_average(reference_mean, generated_mean, geometry, path, title=title)
    grouped = _grouped_geometry(geometry)
    if grouped is None:
        return plot_average_showers(reference_mean, generated_mean, geometry, path, title=title)
    return plot_average_showers(
        _group_means(reference_mean, geometry), _group_means(generated_mean, geometry), grouped, path, title=title
    )


def _grouped_geometry(geometry: Geometry) -> Geometry | None:
    """One layer per group of five identical layers (None if the layers are few or differ)."""
    layers = geometry.layers
    same = all((a.r_edges_mm, a.n_alpha) == (layers[0].r_edges_mm, layers[0].n_alpha) for a in layers)
    if len(layers) <= _LAYER_GROUP or not same or len(layers) % _LAYER_GROUP:
        return None
    return Geometry(name=geometry.name, pid=geometry.pid, layers=layers[::_LAYER_GROUP])


def _group_means(mean: Array, geometry: Geometry) -> Array:
    per_layer = mean.reshape(geometry.n_layers, -1)
    return np.asarray(per_layer.reshape(-1, _LAYER_GROUP, per_layer.shape[1]).mean(axis=1).ravel())


def _plot_grid_average(
    reference_mean: Array, generated_mean: Array, geometry: GridGeometry, path: Path, *, title: str
) -> Path:
    fig = Figure(figsize=(16, 4.2), layout="constrained")
    ref, gen = (m.reshape(geometry.shower_shape) for m in (reference_mean, generated_mean))
    ax = fig.add_subplot(1, 4, 1)
    for name, shower, colour in (("reference", ref, _REF_COLOUR), ("generated", gen, _GEN_COLOUR)):
        ax.plot(geometry.layer_ids, shower.sum(axis=(1, 2)), color=colour, label=name, drawstyle="steps-mid")
    ax.set(xlabel="layer", ylabel="mean energy [MeV]", title="longitudinal profile")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 4, 2)
    for name, shower, colour in (("reference", ref, _REF_COLOUR), ("generated", gen, _GEN_COLOUR)):
        ax.plot(*_radial_of_image(shower.sum(axis=0), geometry), color=colour, label=name, drawstyle="steps-mid")
    ax.set(xlabel="distance to the centre [mm]", ylabel="mean energy [MeV]", title="radial profile", yscale="log")
    vmax = max(float(ref.sum(axis=0).max(initial=0.0)), float(gen.sum(axis=0).max(initial=0.0)), 1e-1)
    mesh = None
    for col, (name, shower) in enumerate((("reference", ref), ("generated", gen))):
        ax = fig.add_subplot(1, 4, 3 + col)
        image = np.ma.masked_less(shower.sum(axis=0), 1e-3)
        mesh = ax.imshow(image, norm=LogNorm(vmin=1e-3, vmax=vmax), cmap="viridis", origin="lower")
        ax.set(title=f"{name}: mean x-z image", xlabel="z cell", ylabel="x cell")
    if mesh is not None:
        fig.colorbar(mesh, ax=fig.axes[2:], shrink=0.8, label="mean cell energy [MeV]")
    fig.suptitle(title)
    return _save(fig, path)


def _radial_of_image(image: Array, geometry: GridGeometry) -> tuple[Array, Array]:
    total = max(float(image.sum()), 1e-16)
    cx = float(image.sum(axis=1) @ geometry.x_centres_mm) / total
    cz = float(image.sum(axis=0) @ geometry.z_centres_mm) / total
    r = np.hypot(geometry.x_centres_mm[:, None] - cx, geometry.z_centres_mm[None, :] - cz)
    ring = (r / geometry.cell_mm).astype(np.int64).ravel()
    energy = np.asarray(np.bincount(ring, weights=image.ravel()), dtype=np.float64)
    return (np.arange(len(energy), dtype=np.float64) + 0.5) * float(geometry.cell_mm), energy


def plot_linearity(response: EnergyResponse, path: Path, *, title: str) -> Path:
    """mu90 and sigma90 / mu90 of E_tot / E_inc per range, reference and generated, and their relative difference."""
    fig = Figure(figsize=(11, 6), layout="constrained")
    energies = np.array([b.energy_mev for b in response.bins])
    panels = (
        ("mu90 of E_tot / E_inc", [b.mu90 for b in response.bins]),
        ("resolution sigma90 / mu90", [b.resolution for b in response.bins]),
    )
    for col, (label, pairs) in enumerate(panels):
        ref, gen = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        top, bottom = fig.add_subplot(2, 2, 1 + col), fig.add_subplot(2, 2, 3 + col)
        top.plot(energies, ref, "o-", color=_REF_COLOUR, label="reference")
        top.plot(energies, gen, "s--", color=_GEN_COLOUR, label="generated")
        top.set(xscale="log", ylabel=label)
        top.legend(fontsize=7)
        with np.errstate(divide="ignore", invalid="ignore"):
            bottom.plot(energies, (gen - ref) / ref, "s-", color=_GEN_COLOUR)
        bottom.axhline(0.0, color="grey", linewidth=0.8)
        bottom.set(xscale="log", xlabel="incident energy [MeV]", ylabel="(gen - ref) / ref")
    fig.suptitle(title)
    return _save(fig, path)


def plot_layer_correlations(correlations: LayerCorrelations, path: Path, *, title: str) -> Path:
    fig = Figure(figsize=(13, 4.2), layout="constrained")
    ticks = [str(i) for i in correlations.layer_ids]
    panels = (
        ("reference", correlations.reference, (-1.0, 1.0), "coolwarm"),
        ("generated", correlations.generated, (-1.0, 1.0), "coolwarm"),
        ("generated - reference", correlations.difference, (-0.5, 0.5), "PiYG"),
    )
    for i, (name, matrix, (vmin, vmax), cmap) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        image = ax.imshow(matrix, vmin=vmin, vmax=vmax, cmap=cmap)
        ax.set_xticks(range(len(ticks)), ticks)
        ax.set_yticks(range(len(ticks)), ticks)
        ax.set_xlabel("layer")
        ax.set_title(name, fontsize=9)
        if len(ticks) <= _ANNOTATED_LAYERS:
            for (r, c), v in np.ndenumerate(matrix):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(f"{title}: Pearson correlation of layer energies")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    return path

"""Checks of the geometry a manifest records: layers, voxel count and the flat layer offsets."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from caloflow_repo._fields import check_int, check_mapping, check_number, check_sequence, check_str, fail, require_keys

GEOMETRY_KEYS = ("name", "pid", "n_voxels", "layers", "layer_offsets")
GRID_KEYS = ("name", "pid", "n_voxels", "shape")
LAYER_KEYS = ("id", "r_edges_mm", "n_alpha")


def check_geometry(value: Any) -> int:
    """Validate ``geometry`` and return its voxel count.

    ``kind`` (absent in manifests written before it existed: cylindrical) is "cylindrical" (CaloChallenge
    binning: layers of radial x angular bins) or "cartesian" (a grid: ``shape`` [layers, x, z] cells).
    ``layer_offsets`` holds the start of each layer in the flat voxel vector plus the total at the end
    (``len(layers) + 1`` entries), as ``caloflow.data.geometry.Geometry.layer_offsets`` does.
    """
    geometry = check_mapping(value, "geometry")
    kind = geometry.get("kind", "cylindrical")
    if kind == "cartesian":
        return _check_grid(geometry)
    if kind != "cylindrical":
        fail("geometry.kind", f"must be 'cylindrical' or 'cartesian', got {kind!r}")
    require_keys(geometry, GEOMETRY_KEYS, "geometry")
    check_str(geometry["name"], "geometry.name", nonempty=True)
    check_int(geometry["pid"], "geometry.pid")
    n_voxels = check_int(geometry["n_voxels"], "geometry.n_voxels", minimum=1)
    layers = check_sequence(geometry["layers"], "geometry.layers", min_length=1)
    sizes = [_check_layer(layer, f"geometry.layers[{i}]") for i, layer in enumerate(layers)]
    _check_offsets(geometry["layer_offsets"], sizes, n_voxels)
    return n_voxels


def _check_grid(geometry: Mapping[str, Any]) -> int:
    require_keys(geometry, GRID_KEYS, "geometry")
    check_str(geometry["name"], "geometry.name", nonempty=True)
    check_int(geometry["pid"], "geometry.pid")
    n_voxels = check_int(geometry["n_voxels"], "geometry.n_voxels", minimum=1)
    shape = check_sequence(geometry["shape"], "geometry.shape", min_length=1)
    cells = [check_int(n, f"geometry.shape[{i}]", minimum=1) for i, n in enumerate(shape)]
    if math.prod(cells) != n_voxels:
        fail("geometry.n_voxels", f"is {n_voxels} but the grid {cells} holds {math.prod(cells)} cells")
    return n_voxels


def _check_layer(value: Any, field: str) -> int:
    layer: Mapping[str, Any] = check_mapping(value, field)
    require_keys(layer, LAYER_KEYS, field)
    check_int(layer["id"], f"{field}.id")
    edges = check_sequence(layer["r_edges_mm"], f"{field}.r_edges_mm", min_length=2)
    radii = [check_number(edge, f"{field}.r_edges_mm") for edge in edges]
    if radii[0] < 0 or any(b <= a for a, b in itertools.pairwise(radii)):
        fail(f"{field}.r_edges_mm", f"must be non-negative and strictly increasing, got {radii}")
    n_alpha = check_int(layer["n_alpha"], f"{field}.n_alpha", minimum=1)
    return (len(radii) - 1) * n_alpha


def _check_offsets(value: Any, sizes: list[int], n_voxels: int) -> None:
    expected = [0]
    for size in sizes:
        expected.append(expected[-1] + size)
    offsets = check_sequence(value, "geometry.layer_offsets")
    if list(offsets) != expected:
        fail("geometry.layer_offsets", f"must be {expected} (layer starts plus the total), got {list(offsets)}")
    if expected[-1] != n_voxels:
        fail("geometry.n_voxels", f"is {n_voxels} but the layers hold {expected[-1]} voxels")

"""Read the CaloChallenge binning XML format into a :class:`~caloflow.data.geometry.Geometry`.

The format (``binning_dataset_1_{photons,pions}.xml``)::

    <Bins>
      <Bin pid="22" name="photon" ...>
        <Layer id="0" r_edges="0,5,10,30,50,100,200,400,600" n_bin_alpha="1"/>
        <Layer id="4" r_edges="0" n_bin_alpha="1"/>
        ...

Only layers whose ``r_edges`` hold more than one value are *relevant* and become geometry layers, in
document order (``XMLHandler`` accumulates ``bin_edges`` in that order; layer ids must increase along it).
The built-in ``PHOTON`` / ``PION`` geometries are what the official files define (pinned by a test), so
the product never needs the XML files at run time; this reader is for checking and for other binnings.

Documents with a DOCTYPE are rejected, which rules out entity expansion (internal or external).
"""

from __future__ import annotations

import itertools
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from caloflow.data.geometry import Geometry, Layer
from caloflow.errors import GeometryError

__all__ = ["parse_binning_xml", "read_binning_xml"]


def read_binning_xml(path: str | os.PathLike[str], *, pid: int | None = None) -> Geometry:
    """The geometry of the ``<Bin>`` in the binning file at ``path`` (the one with ``pid`` if several)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GeometryError(f"{source}: cannot read binning file ({exc})") from exc
    return parse_binning_xml(text, source=source, pid=pid)


def parse_binning_xml(text: str, *, source: str = "<string>", pid: int | None = None) -> Geometry:
    """The geometry described by binning XML ``text``; ``source`` names it in error messages."""
    if "<!DOCTYPE" in text.upper():
        raise GeometryError(f"{source}: DOCTYPE declarations are not allowed in a binning file")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise GeometryError(f"{source}: not well-formed XML ({exc})") from exc
    if root.tag != "Bins":
        raise GeometryError(f"{source}: root element is <{root.tag}>, expected <Bins>")
    return _bin_to_geometry(_select_bin(root, source, pid), source)


def _select_bin(root: ET.Element, source: str, pid: int | None) -> ET.Element:
    bins = root.findall("Bin")
    if not bins:
        raise GeometryError(f"{source}: no <Bin> element")
    if pid is not None:
        bins = [b for b in bins if b.get("pid") == str(pid)]
        if not bins:
            raise GeometryError(f"{source}: no <Bin> with pid {pid}")
    if len(bins) > 1:
        pids = ", ".join(str(b.get("pid")) for b in bins)
        raise GeometryError(f"{source}: {len(bins)} <Bin> elements (pids {pids}); choose one with pid=")
    return bins[0]


def _bin_to_geometry(element: ET.Element, source: str) -> Geometry:
    pid = _int_attr(element, "pid", f"{source}: <Bin>")
    where = f"{source}: <Bin pid={pid}>"
    layers = tuple(_parse_layer(e, where) for e in element.findall("Layer"))
    if not layers:
        raise GeometryError(f"{where} has no <Layer> elements")
    _check_layer_order(layers, where)
    relevant = tuple(layer for layer in layers if layer.n_r > 0)
    if not relevant:
        raise GeometryError(f"{where} has no layer with more than one r edge")
    return Geometry(name=element.get("name") or f"pid{pid}", pid=pid, layers=relevant)


def _parse_layer(element: ET.Element, where: str) -> Layer:
    layer_id = _int_attr(element, "id", f"{where} <Layer>")
    here = f"{where} layer {layer_id}"
    n_alpha = _int_attr(element, "n_bin_alpha", here)
    if n_alpha < 1:
        raise GeometryError(f"{here}: n_bin_alpha must be at least 1, got {n_alpha}")
    return Layer(layer_id, _parse_edges(element.get("r_edges"), here), n_alpha)


def _parse_edges(raw: str | None, here: str) -> tuple[float, ...]:
    if raw is None or not raw.strip():
        raise GeometryError(f"{here}: missing or empty r_edges")
    try:
        edges = tuple(float(v) for v in raw.split(","))
    except ValueError:
        raise GeometryError(f"{here}: r_edges {raw!r} is not a comma-separated list of numbers") from None
    if not all(math.isfinite(e) for e in edges) or edges[0] < 0:
        raise GeometryError(f"{here}: r_edges {raw!r} must be finite and non-negative")
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise GeometryError(f"{here}: r_edges {raw!r} are not strictly increasing")
    return edges


def _int_attr(element: ET.Element, name: str, where: str) -> int:
    raw = element.get(name)
    if raw is None:
        raise GeometryError(f"{where}: missing attribute {name!r}")
    try:
        return int(raw.strip())
    except ValueError:
        raise GeometryError(f"{where}: attribute {name}={raw!r} is not an integer") from None


def _check_layer_order(layers: tuple[Layer, ...], where: str) -> None:
    ids = [layer.layer_id for layer in layers]
    if any(b <= a for a, b in itertools.pairwise(ids)):
        raise GeometryError(f"{where}: layer ids {ids} are not strictly increasing in document order")

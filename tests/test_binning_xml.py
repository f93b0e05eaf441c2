"""Parsing binning XML: relevant layers, pid selection, and one clear GeometryError per malformed input."""

from __future__ import annotations

from pathlib import Path

import pytest

from caloflow.data.binning_xml import parse_binning_xml, read_binning_xml
from caloflow.data.geometry import Layer
from caloflow.errors import GeometryError


def _doc(*layers: str, pid: str = "22", name: str = "toy") -> str:
    body = "\n".join(f"    <Layer {attrs}/>" for attrs in layers)
    return f'<Bins>\n  <Bin pid="{pid}" name="{name}">\n{body}\n  </Bin>\n</Bins>\n'


GOOD = _doc(
    'id="0" r_edges="0,5,10" n_bin_alpha="1"',
    'id="1" r_edges="0" n_bin_alpha="1"',
    'id="2" r_edges=" 0, 2.5 ,4,8" n_bin_alpha="4"',
)


def test_relevant_layers_only_in_document_order() -> None:
    g = parse_binning_xml(GOOD)
    assert (g.name, g.pid) == ("toy", 22)
    assert g.layers == (Layer(0, (0.0, 5.0, 10.0), 1), Layer(2, (0.0, 2.5, 4.0, 8.0), 4))
    assert g.n_voxels == 2 + 3 * 4
    assert g.layer_offsets == (0, 2, 14)


def test_reads_file(tmp_path: Path) -> None:
    path = tmp_path / "binning.xml"
    path.write_text(GOOD)
    assert read_binning_xml(path) == parse_binning_xml(GOOD)


def test_selects_bin_by_pid() -> None:
    two = GOOD.replace("</Bins>", '<Bin pid="211" name="pi"><Layer id="0" r_edges="0,1" n_bin_alpha="1"/></Bin></Bins>')
    assert parse_binning_xml(two, pid=211).name == "pi"
    assert parse_binning_xml(two, pid=22).name == "toy"
    with pytest.raises(GeometryError, match="2 <Bin> elements"):
        parse_binning_xml(two)
    with pytest.raises(GeometryError, match="no <Bin> with pid 11"):
        parse_binning_xml(two, pid=11)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<Bins></Bins>", "no <Bin> element"),
        ("<Bins><Bin pid='22'>", "not well-formed XML"),
        ("<Binning/>", "root element is <Binning>"),
        (_doc('id="0" r_edges="0,a,10" n_bin_alpha="1"'), "not a comma-separated list of numbers"),
        (_doc('id="0" r_edges="0,10,5" n_bin_alpha="1"'), "not strictly increasing"),
        (_doc('id="0" r_edges="0,5,5" n_bin_alpha="1"'), "not strictly increasing"),
        (_doc('id="0" r_edges="-5,5" n_bin_alpha="1"'), "finite and non-negative"),
        (_doc('id="0" r_edges="0,nan" n_bin_alpha="1"'), "finite and non-negative"),
        (_doc('id="0" r_edges="" n_bin_alpha="1"'), "missing or empty r_edges"),
        (_doc('id="0" n_bin_alpha="1"'), "missing or empty r_edges"),
        (_doc('id="0" r_edges="0,5" n_bin_alpha="0"'), "n_bin_alpha must be at least 1, got 0"),
        (_doc('id="0" r_edges="0,5" n_bin_alpha="ten"'), "n_bin_alpha='ten' is not an integer"),
        (_doc('id="0" r_edges="0,5"'), "missing attribute 'n_bin_alpha'"),
        (_doc('r_edges="0,5" n_bin_alpha="1"'), "missing attribute 'id'"),
        (_doc('id="0" r_edges="0,5" n_bin_alpha="1"', pid="photon"), "pid='photon' is not an integer"),
        (_doc('id="3" r_edges="0,5" n_bin_alpha="1"', 'id="1" r_edges="0,5" n_bin_alpha="1"'), "layer ids"),
        (_doc('id="0" r_edges="0" n_bin_alpha="1"'), "no layer with more than one r edge"),
        (_doc(), "no <Layer> elements"),
    ],
)
def test_malformed_input_names_file_and_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad_binning.xml"
    path.write_text(text)
    with pytest.raises(GeometryError) as excinfo:
        read_binning_xml(path)
    message = str(excinfo.value)
    assert str(path) in message
    assert problem in message


def test_layer_errors_name_the_layer() -> None:
    text = _doc('id="0" r_edges="0,5" n_bin_alpha="1"', 'id="7" r_edges="0,9,3" n_bin_alpha="1"', pid="211")
    with pytest.raises(GeometryError, match=r"<Bin pid=211> layer 7: r_edges"):
        parse_binning_xml(text)


@pytest.mark.parametrize(
    "text",
    [
        '<!DOCTYPE Bins [<!ENTITY x "0,5">]><Bins><Bin pid="22"><Layer id="0" r_edges="&x;" '
        'n_bin_alpha="1"/></Bin></Bins>',
        '<!doctype Bins SYSTEM "file:///etc/passwd"><Bins/>',
    ],
)
def test_doctype_is_rejected(text: str) -> None:
    with pytest.raises(GeometryError, match="DOCTYPE"):
        parse_binning_xml(text, source="evil.xml")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(GeometryError, match=r"missing\.xml: cannot read binning file"):
        read_binning_xml(tmp_path / "missing.xml")

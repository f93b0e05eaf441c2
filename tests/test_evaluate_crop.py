"""Evaluating a crop model (L2LFlows on the central cells of the ILD grid) against a full-grid reference.

Inputs: a stand-in ILD file (not Geant4, about 300 showers) and a fake served model whose showers are the
reference's own cells inside the crop, written by ``write_served_showers`` as a served crop model's are:

* the writer stores the ILD layout (``30x30`` group, GeV energies, full grid) with the crop embedded, zeros
  outside and the ``crop`` attribute; reading it back gives the crop cells and energies that went in;
* evaluated with ``--crop`` on the same region, every W1 is ~0 and every separation power 0 (the reference
  restricted to the crop IS the generated file); over the whole grid the same files differ, and a file that
  declares a crop is refused without ``--crop``;
* a crop that does not fit the grid, or a manifest crop on another grid, is refused naming the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from caloflow.cli import main
from caloflow.data.datasets import dataset
from caloflow.data.grid_geometry import GridGeometry
from caloflow.data.hdf5 import ShowerWriter, open_shower_file, read_showers
from caloflow.data.standin.files import write_standin_file
from caloflow.evaluation import EvaluationConfig, EvaluationError
from caloflow.evaluation.region import CropRegion, crop_from_manifest, parse_crop
from caloflow.evaluation.served import write_served_showers
from caloflow.families.l2lflows.crop import LateralCrop

ILD = dataset("ild-photon")
GRID = ILD.geometry
assert isinstance(GRID, GridGeometry)
CROP = LateralCrop(GRID.n_layers, GRID.n_x, GRID.n_z, 9, 10, 10)
QUICK = ["--threads", "1", "--no-progress"]


class _CropModel:
    """A stand-in for a loaded served crop model: returns the reference's crop cells, row after row."""

    def __init__(self, crops: np.ndarray) -> None:
        self.crops, self.row = crops, 0
        geometry = {"kind": "cartesian", "crop": CROP.to_dict()}
        self.manifest = SimpleNamespace(
            dataset="ild-photon",
            geometry=geometry,
            n_voxels=CROP.n_voxels,
            noise_dim=3,
            standin=True,
            description="fake crop model",
            particle="photon",
        )
        self.model, self.version, self.sha256 = "fake_crop", 1, "0" * 64

    def run(self, energies: np.ndarray, noise: np.ndarray) -> np.ndarray:
        out = self.crops[self.row : self.row + len(energies)]
        self.row += len(energies)
        return out.reshape(len(energies), *CROP.shower_shape).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("crop")
    reference = write_standin_file("ild-photon", root / "ref.h5", seed=2, scale=0.005, progress=False)
    energies, showers = read_showers(reference, GRID, layout="ild")
    model = _CropModel(CROP.apply(np.asarray(showers)))
    generated = root / "gen.h5"
    incident = np.asarray(energies[:, 0], dtype=np.float64)
    write_served_showers(model, incident, generated, seed=0, batch=64, purpose="crop test")
    return SimpleNamespace(root=root, reference=reference, generated=generated, energies=incident, model=model)


def _evaluate(files: SimpleNamespace, out: str, *extra: str) -> tuple[int, dict[str, Any]]:
    argv = ["evaluate", "--dataset", "ild-photon", "--generated", str(files.generated)]
    code = main([*argv, "--reference", str(files.reference), "--out", str(files.root / out), *QUICK, *extra])
    path = files.root / out / "metrics.json"
    return code, json.loads(path.read_text()) if code == 0 else {}


def test_the_writer_stores_a_crop_model_in_the_ild_layout_and_it_round_trips(files: SimpleNamespace) -> None:
    info = open_shower_file(files.generated, GRID, layout="ild")
    assert info.layout == "ild" and info.shower_shape == GRID.shower_shape
    assert info.attrs["crop"] == "9:19,10:20" and info.attrs["model"] == "fake_crop@1"
    energies, showers = read_showers(files.generated, GRID, layout="ild")
    np.testing.assert_allclose(energies[:, 0], files.energies, rtol=1e-6)
    grid = np.asarray(showers).reshape(-1, *GRID.shower_shape)
    np.testing.assert_array_equal(CROP.apply(np.asarray(showers)), files.model.crops.astype(np.float32))
    outside = grid.copy()
    outside[:, :, 9:19, 10:20] = 0
    assert not outside.any() and grid.any()


def test_the_reference_restricted_to_the_crop_scores_zero_on_the_crop_only(files: SimpleNamespace) -> None:
    code, cropped = _evaluate(files, "cropped", "--crop", "9:19,10:20", "--metrics", "hist,w1")
    assert code == 0 and cropped["crop"]["cells"] == "9:19,10:20" and "crop region only" in cropped["crop"]["note"]
    w1 = cropped["w1"]["per_observable"]
    assert len(w1) > 30 and cropped["w1"]["max_normalised"] < 1e-5  # e_ratio: energies stored as float32 GeV
    assert max(cropped["separation_power"].values()) < 1e-9
    # the same region zeroed in a whole-grid evaluation: the figures would describe cells that were not modelled
    code, _ = _evaluate(files, "other", "--crop", "0:10,0:10", "--metrics", "w1")
    assert code == 2


def test_a_file_declaring_a_crop_is_refused_over_the_whole_grid(
    files: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _evaluate(files, "whole", "--metrics", "w1")
    assert code == 2
    err = capsys.readouterr().err
    assert "attribute 'crop'" in err and "--crop 9:19,10:20" in err


def test_the_crop_restriction_changes_the_figures(files: SimpleNamespace, tmp_path: Path) -> None:
    """Without the generated file's crop (a plain full-grid file), the same cells score far from 0."""
    region = CropRegion(GRID, (9, 19), (10, 20))
    energies, showers = read_showers(files.reference, GRID, layout="ild")
    masked = region.mask(np.asarray(showers, dtype=np.float64))

    plain = tmp_path / "plain.h5"
    with ShowerWriter(plain, GRID.n_voxels, layout="ild", shower_shape=GRID.shower_shape) as writer:
        writer.append(np.asarray(energies, dtype=np.float64), masked)
    argv = ["evaluate", "--dataset", "ild-photon", "--generated", str(plain), "--reference", str(files.reference)]
    assert main([*argv, "--out", str(tmp_path / "out"), "--metrics", "w1", *QUICK]) == 0
    whole = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert whole["w1"]["per_observable"]["n_hits"]["normalised"] > 0.1 and "crop" not in whole


BAD_CROPS = [("0:31,0:10", "x cells 0:31"), ("5:5,0:10", "x cells 5:5"), ("0:10,28:31", "z cells 28:31")]


def test_a_generated_file_in_the_crop_shape_is_refused_saying_what_to_write(
    files: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crop_shaped = tmp_path / "crop_shaped.h5"
    with ShowerWriter(crop_shaped, CROP.n_voxels, layout="ild", shower_shape=CROP.shower_shape) as writer:
        writer.append(files.energies[:5, None], files.model.crops[:5].astype(np.float64))
    argv = ["evaluate", "--dataset", "ild-photon", "--generated", str(crop_shaped), "--crop", "9:19,10:20"]
    assert main([*argv, "--reference", str(files.reference), "--out", str(tmp_path / "out"), *QUICK]) == 2
    err = capsys.readouterr().err
    assert "generated file" in err and "30x10x10" in err and "[30, 30, 30] with the crop [30, 10, 10] embedded" in err


def _client_file(files: SimpleNamespace, path: Path, crop: str | None) -> Path:
    """The crop model's showers as ``caloflow generate`` writes them (the client's writer): group ``10x10``,
    layers (N, 30, 10, 10), GeV energies; the ``crop`` attribute added when ``crop`` is given."""
    import h5py

    from caloflow_client.files import Hdf5ShowerWriter
    from caloflow_client.results import GenerationInfo, ShowerChunk

    n = len(files.energies)
    info = GenerationInfo(
        server="http://127.0.0.1:1", transport="http", model="l2lflows_ild", version=1, particle="photon",
        artifact_sha256="0" * 64, seed=1, seed_drawn=False, start_index=0, count=n, n_voxels=CROP.n_voxels,
        chunk_showers=n, deterministic=True, extrapolated=False, standin=True, energy_mev=None,
        dataset="ild-photon", shower_shape=CROP.shower_shape, file_layout="ild",
    )  # fmt: skip
    writer = Hdf5ShowerWriter(path, info)
    chunk = ShowerChunk(0, files.model.crops.astype(np.float32), files.energies.astype(np.float32))
    writer.append(chunk)
    writer.close()
    if crop is not None:
        with h5py.File(path, "a") as h5:
            h5.attrs["crop"] = crop
    return path


def test_a_clients_crop_file_is_read_embedded_by_its_crop_attribute_or_crop(
    files: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``caloflow generate``'s form of a crop model (the crop's cells alone) is evaluated on its crop: the reference
    restricted to the crop scores ~0, as the embedded form does; the crop from the file's attribute (checked
    against ``--crop``) or, without one, from ``--crop``; neither, or a disagreement, is refused naming the field."""
    declared = _client_file(files, tmp_path / "declared.h5", "9:19,10:20")
    plain = _client_file(files, tmp_path / "plain.h5", None)
    for generated, extra in ((declared, []), (plain, ["--crop", "9:19,10:20"])):
        run = SimpleNamespace(**{**vars(files), "generated": generated})
        code, metrics = _evaluate(run, f"client-{generated.stem}-{len(extra)}", "--metrics", "w1", *extra)
        assert code == 0 and metrics["crop"]["cells"] == "9:19,10:20" and metrics["n_showers"] == len(files.energies)
        assert metrics["w1"]["max_normalised"] < 1e-5
    code, _ = _evaluate(SimpleNamespace(**{**vars(files), "generated": plain}), "none", "--metrics", "w1")
    assert code == 2 and "no attribute 'crop'" in capsys.readouterr().err
    code, _ = _evaluate(SimpleNamespace(**{**vars(files), "generated": declared}), "x", "--crop", "8:18,10:20")
    err = capsys.readouterr().err
    assert code == 2 and "attribute 'crop' says it holds cells 9:19,10:20" in err and "--crop says 8:18,10:20" in err


@pytest.mark.parametrize(("text", "field"), [*BAD_CROPS, ("0:10", "is not X0:X1,Z0:Z1")])
def test_a_crop_that_does_not_fit_is_refused_naming_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(EvaluationError, match="--crop") as info:
        EvaluationConfig(tmp_path / "g.h5", tmp_path / "r.h5", "ild-photon", tmp_path, crop=text)
    assert field in str(info.value)
    with pytest.raises(EvaluationError, match="not a Cartesian grid"):
        EvaluationConfig(tmp_path / "g.h5", tmp_path / "r.h5", "ds1-photon", tmp_path, crop="0:1,0:1")


def test_manifest_crops_are_read_and_checked_naming_the_field() -> None:
    region = crop_from_manifest({"crop": CROP.to_dict()}, GRID)
    assert region is not None and region.text() == parse_crop("9:19,10:20", GRID).text()
    assert crop_from_manifest({"kind": "cartesian"}, GRID) is None
    with pytest.raises(EvaluationError, match=r"geometry\.crop\.full_shape"):
        crop_from_manifest({"crop": {**CROP.to_dict(), "full_shape": [30, 20, 20]}}, GRID)
    with pytest.raises(EvaluationError, match=r"geometry\.crop: z cells 25:35"):
        crop_from_manifest({"crop": {**CROP.to_dict(), "z_cells": [25, 35]}}, GRID)
    with pytest.raises(EvaluationError, match="neither the crop"):
        region.embed(np.zeros((2, 30, 10, 9)))

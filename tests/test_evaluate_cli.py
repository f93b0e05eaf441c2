"""``caloflow evaluate`` end to end, as a real process on real stand-in HDF5 files.

* Two independent stand-in photon files (seeds 11 and 12, scale 0.25: 30 250 showers each; the
  classifiers validate on 5 250 showers per class, where a calibrated classifier that sees no
  difference has an AUC spread of about 0.006) must give AUC 0.5 +- 0.02 for all three classifiers,
  chi2/NDF near 1, and every output file (metrics.json, the PNGs, index.html showing each PNG).
* A deliberately broken generator (layer 2 energies scaled by 1.3) must give AUC > 0.7.
* Bad inputs fail with exit code 2 and a message naming the file.

The classifiers are the published architecture at width 64, trained for 8 epochs in batches of 250 at
lr 1e-3 (about 1 300 Adam steps): small enough for CI, yet the same settings must catch the broken
generator, so the 0.5 of the null test is not the 0.5 of an untrained network.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from caloflow.cli import main
from caloflow.data.datasets import DS1_PHOTON_GEOMETRY as PHOTON
from caloflow.data.hdf5 import read_showers, write_showers
from caloflow.data.standin import write_standin_file

CALOFLOW = str(Path(sys.executable).with_name("caloflow"))
SCALE = 0.25
QUICK = [
    "--cls-hidden", "64", "--cls-epochs", "8", "--cls-batch-size", "250", "--cls-lr", "1e-3", "--threads", "1",
    "--fpd-min-samples", "2000", "--fpd-max-samples", "10000", "--kpd-batch-size", "2000", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    reference, generated = root / "reference.h5", root / "generated.h5"
    write_standin_file("photon", reference, seed=11, scale=SCALE, progress=False)
    write_standin_file("photon", generated, seed=12, scale=SCALE, progress=False)
    return reference, generated


def _evaluate(generated: Path, reference: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [CALOFLOW, "evaluate", "--generated", str(generated), "--reference", str(reference)]
    command += ["--particle", "photon", "--out", str(out), *QUICK, *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


def test_two_independent_standin_files_are_indistinguishable(files, tmp_path):
    reference, generated = files
    done = _evaluate(generated, reference, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"separation_power", "energy_response", "layer_correlations", "classifiers", "fpd", "kpd"} <= set(metrics)
    assert metrics["n_showers"] == 30_250 and metrics["energy_multisets_equal"]
    assert "not Geant4" in metrics["notice"]
    for mode in ("cls-low", "cls-low-normed", "cls-high"):
        auc = metrics["classifiers"][mode]["auc_mean"]
        assert abs(auc - 0.5) <= 0.02, f"{mode}: AUC {auc}"
    assert metrics["classifiers"]["cls-high"]["n_inputs"] == 30
    assert metrics["classifiers"]["cls-low"]["split_per_class"] == {"train": 20_000, "test": 5_000, "validation": 5_250}
    assert 0.5 < metrics["energy_response"]["chi2_per_ndf"] < 1.6
    assert len(metrics["energy_response"]["per_energy"]) == 15
    assert metrics["separation_power"]["e_ratio"] < 0.02
    assert {f"e_layer_{i}" for i in PHOTON.layer_ids} <= set(metrics["separation_power"])
    assert metrics["layer_correlations"]["max_abs_difference"] < 0.1
    corr = metrics["layer_correlations"]
    assert 0 < corr["frobenius"] < 2 * corr["frobenius_split_half_floor"]
    assert metrics["prdc"]["n_reference"] == 10_000 and metrics["prdc"]["coverage"] > 0.9
    _check_outputs(tmp_path / "out", metrics)


def _check_outputs(out: Path, metrics: dict) -> None:
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(metrics["plots"])
    expected = {
        "average_shower.png",
        "layer_correlations.png",
        "e_ratio_per_energy.png",
        "hist_e_layer.png",
        "hist_voxel.png",
    }
    assert expected <= set(pngs)
    for png in pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    assert set(re.findall(r'<img src="([^"]+)"', page)) == set(pngs)
    assert "not Geant4" in page


def test_a_broken_generator_is_caught(files, tmp_path):
    reference, generated = files
    energies, showers = read_showers(generated, PHOTON)
    layer = PHOTON.layer_slices[2]
    showers = showers.copy()
    showers[:, layer] *= 1.3
    broken = tmp_path / "broken.h5"
    write_showers(broken, energies, showers)
    done = _evaluate(broken, reference, tmp_path / "out", "--metrics", "energy,cls-low,cls-high")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["classifiers"]) == {"cls-low", "cls-high"}
    assert metrics["classifiers"]["cls-high"]["auc_mean"] > 0.7
    assert metrics["classifiers"]["cls-low"]["auc_mean"] > 0.7
    assert metrics["energy_response"]["chi2_per_ndf"] > 5.0


def test_bad_inputs_name_the_file(files, tmp_path, capsys):
    reference, _ = files
    missing = tmp_path / "missing.h5"
    assert _main(missing, reference, tmp_path) == 2
    err = capsys.readouterr().err
    assert "generated file" in err and str(missing) in err
    pions = tmp_path / "pions.h5"
    write_showers(pions, np.full((4, 1), 1024.0), np.ones((4, 533)))
    assert _main(reference, pions, tmp_path) == 2
    err = capsys.readouterr().err
    assert "reference file" in err and str(pions) in err and "533 voxels" in err
    assert _main(reference, reference, tmp_path, "--metrics", "hist,cls-resnet") == 2
    assert "--metrics" in capsys.readouterr().err


def _main(generated: Path, reference: Path, tmp_path: Path, *extra: str) -> int:
    """The command in-process: these fail before any work (and before any thread setting)."""
    argv = ["evaluate", "--generated", str(generated), "--reference", str(reference), "--particle", "photon"]
    return main([*argv, "--out", str(tmp_path / "out"), "--no-progress", *extra])

"""``caloflow evaluate --dataset D`` for Datasets 2, 3 and the ILD ECAL, and the W1 metric.

The inputs are the datasets' stand-in files (not Geant4), written and checked through the CLI as a user would:
``caloflow data standin --dataset D`` for two seeds, ``caloflow data check``, then ``caloflow evaluate``.

* every new dataset runs through the real CLI and writes metrics.json, index.html and the PNGs;
* two independent Dataset 2 stand-in files (seeds 21 and 22, 16 000 showers each: 3 200 per class validate,
  where a calibrated classifier that sees nothing has an AUC spread of about 0.007) give cls-high AUC
  0.5 +- 0.02;
* the seed-22 file with layers 10-14 scaled by 1.3 is caught by the classifier, by the separation power and by
  the W1 of that group's energy;
* W1 is taken on samples, not on histogram heights (the published bug): a shift by d gives d, and a
  shifted histogram, whose heights are the same multiset, is not scored 0.

Classifiers: the published architecture at width 64, 8 epochs, batches of 250, lr 1e-3 (as the Dataset 1
CLI test), so the 0.5 of the null test is not the 0.5 of an untrained network.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from caloflow.cli import main
from caloflow.data.datasets import dataset
from caloflow.data.hdf5 import read_showers, write_showers
from caloflow.evaluation.histograms import linear_edges
from caloflow.evaluation.ild_observables import grid_observables
from caloflow.evaluation.w1 import w1_distances, w1_from_histogram, w1_samples

CALOFLOW = str(Path(sys.executable).with_name("caloflow"))
QUICK = [
    "--cls-hidden", "64", "--cls-epochs", "8", "--cls-batch-size", "250", "--cls-lr", "1e-3", "--threads", "1",
    "--fpd-min-samples", "200", "--fpd-max-samples", "400", "--kpd-batch-size", "200", "--no-progress",
]  # fmt: skip
BROKEN_LAYERS = (10, 11, 12, 13, 14)
N_NULL = 16_000


def _standin(name: str, path: Path, count: int, seed: int) -> Path:
    """``count`` (about: the spectrum is drawn) stand-in showers of ``name``, written and checked through the CLI."""
    scale = str(count / dataset(name).showers_per_file)
    write = [CALOFLOW, "data", "standin", "--dataset", name, "--out", str(path), "--seed", str(seed), "--scale", scale]
    for command in (write, [CALOFLOW, "data", "check", str(path), "--dataset", name]):
        done = subprocess.run([*command, "--no-progress"], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    assert f"is a valid {name} file" in done.stdout
    return path


def _evaluate(ds: str, generated: Path, reference: Path, out: Path, *extra: str) -> dict:
    command = [CALOFLOW, "evaluate", "--dataset", ds, "--generated", str(generated), "--reference", str(reference)]
    done = subprocess.run([*command, "--out", str(out), *QUICK, *extra], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "metrics.json").read_text())


def _check_outputs(out: Path, metrics: dict) -> None:
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(metrics["plots"]) and pngs
    for png in pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    assert set(re.findall(r'<img src="([^"]+)"', page)) == set(pngs)
    assert "1-Wasserstein" in page


@pytest.mark.parametrize(("name", "count", "metrics"), [
    ("ds2-electron", 300, "hist,energy,avg,corr,cls-low,cls-low-normed,cls-high,kpd,w1"),
    ("ds3-electron", 120, "hist,energy,avg,corr,cls-low,cls-high,kpd,w1"),
])  # fmt: skip
def test_calochallenge_datasets_2_and_3_through_the_cli(tmp_path, name, count, metrics):
    ds = dataset(name)
    gen = _standin(name, tmp_path / "gen.h5", count, seed=1)
    ref = _standin(name, tmp_path / "ref.h5", count, seed=2)
    m = _evaluate(name, gen, ref, tmp_path / "out", "--metrics", metrics)
    assert m["dataset"] == name and m["min_energy_mev"] == pytest.approx(ds.threshold_mev)
    assert m["classifiers"]["cls-high"]["n_inputs"] == 362
    assert m["classifiers"]["cls-low"]["n_inputs"] == ds.n_voxels + 1
    groups = [f"e_layer_{a}-{a + 4}" for a in range(0, ds.n_layers, 5)]
    assert set(groups) <= set(m["separation_power"]) and "voxel" in m["separation_power"]
    assert f"e_layer_{ds.n_layers - 1}" not in m["separation_power"]  # shown in groups of five
    assert [b["energy_low_mev"] for b in m["energy_response"]["per_energy"]] == [1e3, 1e4, 1e5]
    assert {f"average_shower_{a:g}-{10 * a:g}MeV.png" for a in (1e3, 1e4, 1e5)} <= set(m["plots"])
    assert len(m["layer_correlations"]["layer_ids"]) == ds.n_layers
    assert set(groups) <= set(m["w1"]["per_observable"])
    assert "kpd" in m
    if "cls-low-normed" in metrics:
        assert m["classifiers"]["cls-low-normed"]["n_inputs"] == ds.n_voxels + 1 + ds.n_layers
    _check_outputs(tmp_path / "out", m)


def test_ild_through_the_cli(tmp_path):
    ds = dataset("ild-photon")
    gen = _standin("ild-photon", tmp_path / "gen.h5", 300, seed=1)
    ref = _standin("ild-photon", tmp_path / "ref.h5", 300, seed=2)
    m = _evaluate("ild-photon", gen, ref, tmp_path / "out", "--metrics", "all")
    assert m["min_energy_mev"] == pytest.approx(ds.threshold_mev)
    observables = {"e_vis", "n_hits", "cog_x", "cog_y", "cog_z", "e_layer_0", "e_radial_0", "cell_energy"}
    assert observables <= set(m["w1"]["per_observable"])
    assert {"hist_e_vis.png", "hist_n_hits.png", "hist_voxel.png", "linearity_resolution.png"} <= set(m["plots"])
    bins = m["energy_response"]["per_energy"]
    assert len(bins) == 9 and all(b["resolution_reference"] > 0 for b in bins)
    assert m["classifiers"]["cls-low"]["n_inputs"] == ds.n_voxels + 1
    assert "fpd" in m and "kpd" in m and len(m["layer_correlations"]["layer_ids"]) == ds.n_layers
    _check_outputs(tmp_path / "out", m)


@pytest.fixture(scope="module")
def ds2_files(tmp_path_factory):
    root, ds = tmp_path_factory.mktemp("ds2"), dataset("ds2-electron")
    reference = _standin(ds.name, root / "reference.h5", N_NULL, seed=21)
    generated = _standin(ds.name, root / "generated.h5", N_NULL, seed=22)
    energies, showers = read_showers(generated, ds.geometry)
    broken_voxels = np.isin(ds.geometry.voxel_layer, BROKEN_LAYERS)
    showers[:, broken_voxels] *= showers.dtype.type(1.3)
    broken = root / "broken.h5"
    write_showers(broken, energies, showers, attrs={"description": "stand-in, not Geant4, layers 10-14 x 1.3"})
    return reference, generated, broken


def test_two_files_of_one_distribution_are_indistinguishable(ds2_files, tmp_path):
    reference, generated, _ = ds2_files
    m = _evaluate("ds2-electron", generated, reference, tmp_path / "out", "--metrics", "hist,cls-high,w1")
    auc = m["classifiers"]["cls-high"]["auc_mean"]
    assert abs(auc - 0.5) <= 0.02, f"AUC {auc}"
    assert m["classifiers"]["cls-high"]["split_per_class"]["validation"] == 3_200
    assert m["separation_power"]["e_layer_10-14"] < 0.01


def test_a_broken_group_of_layers_is_caught(ds2_files, tmp_path):
    reference, _, broken = ds2_files
    m = _evaluate("ds2-electron", broken, reference, tmp_path / "out", "--metrics", "hist,cls-high,w1")
    assert m["classifiers"]["cls-high"]["auc_mean"] > 0.7
    separation = {k: v for k, v in m["separation_power"].items() if k.startswith("e_layer_")}
    assert max(separation, key=separation.__getitem__) == "e_layer_10-14"
    w1 = {k: v["normalised"] for k, v in m["w1"]["per_observable"].items() if k.startswith("e_layer_")}
    others = [v for k, v in w1.items() if k != "e_layer_10-14"]
    assert w1["e_layer_10-14"] > 5 * max(others)


def test_the_dataset_option_and_its_short_form(ds2_files, tmp_path, capsys):
    reference, generated, _ = ds2_files
    argv = ["evaluate", "--generated", str(generated), "--reference", str(reference), "--out", str(tmp_path)]
    assert main([*argv, "--dataset", "ds1-pion", "--particle", "photon"]) == 2
    assert "--particle photon means ds1-photon" in capsys.readouterr().err
    assert main([*argv, "--dataset", "ild-photon"]) == 2
    err = capsys.readouterr().err
    assert "generated file" in err and "not a ild-photon file" in err and "ds2-electron" in err


def test_w1_is_taken_on_samples_and_a_shift_by_d_gives_d():
    rng = np.random.default_rng(0)
    x = rng.normal(size=5_000)
    assert w1_samples(x, x) == 0.0
    assert w1_samples(x, x + 0.37) == pytest.approx(0.37, rel=1e-9)
    (d,) = w1_distances({"a": x}, {"a": 3.0 * x + 1.0})
    assert d.reference_std == pytest.approx(np.std(x))
    scaled = w1_distances({"a": 10 * x}, {"a": 10 * (3.0 * x + 1.0)})[0]
    assert scaled.normalised == pytest.approx(d.normalised)  # invariant under a common rescaling


def test_w1_on_histogram_heights_is_the_published_bug():
    """The published getEMD passed density heights as samples: a histogram shifted by d scores about 0."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=50_000)
    d = 1.0
    edges = linear_edges(-6.0, 7.0, 130)  # the shift is exactly 10 bins
    h_ref = np.histogram(x, edges, density=True)[0]
    h_gen = np.histogram(x + d, edges, density=True)[0]
    on_heights = wasserstein_distance(h_ref, h_gen)  # what the paper computed
    assert on_heights < 1e-3  # the same multiset of heights: blind to the shift
    assert w1_samples(x, x + d) == pytest.approx(d, rel=1e-9)
    width = edges[1] - edges[0]
    assert abs(w1_from_histogram(edges, h_ref, h_gen) - d) <= width / 2
    assert abs(w1_from_histogram(edges, h_ref, h_ref[::-1]) - 0.0) > 0.1  # permuting the bins changes W1


def test_grid_observables_of_a_single_hit():
    ds = dataset("ild-photon")
    g = ds.geometry
    shower = np.zeros((1, *ds.shower_shape))
    shower[0, 7, 4, 20] = 5.0
    obs = grid_observables(shower.reshape(1, -1), g, np.array([5e4]))
    assert obs.n_hits[0] == 1 and obs.e_vis[0] == 5.0 and obs.e_ratio[0] == pytest.approx(1e-4)
    assert obs.cog_x[0] == pytest.approx(g.x_centres_mm[4]) and obs.cog_z[0] == pytest.approx(g.z_centres_mm[20])
    assert obs.cog_y[0] == pytest.approx(g.layer_position_mm[7] - g.layer_position_mm[0])
    assert obs.width_x[0] == pytest.approx(0.0, abs=1e-6) and obs.e_radial[0, 0] == 5.0
    assert obs.e_layer[0, 7] == 5.0 and obs.e_layer.sum() == 5.0

"""The committed demo models in model_repo/: they verify, say "stand-in", carry only the artifact the server runs,
generate sensible showers, and a corrupted artifact is refused by `caloflow repo verify` and by the server's loading
code."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from caloflow.cli import main
from caloflow_repo import MANIFEST_FILENAME, QUALITY_CHECKSUM_FILENAME, QUALITY_FILENAME, ModelRepository
from caloflow_server.noise import shower_noise
from caloflow_server.runtime import ArtifactIntegrityError, load_runtime

REPO = Path(__file__).resolve().parents[1] / "model_repo"


@dataclass(frozen=True)
class Demo:
    dataset: str
    particle: str
    n_voxels: int
    energy_range_mev: tuple[float, float]
    served: str  # the one artifact the version ships
    max_bytes: int  # that artifact's size bound (each demo model <= 25 MB)
    energy_mev: float  # where plausibility is checked
    visible_fraction: tuple[float, float]  # bounds of the mean (sum of served cells) / E_inc there


# Visible fractions of the stand-in data: DS1 photons ~0.99, pions ~0.8 at 65 GeV, DS2/DS3 electrons 0.99 +- 0.02
# (30-150 GeV); ILD photons deposit ~1.8 %
# of E_inc in the silicon of the served 10 x 10 crop (0.0179 +- 0.0016 over 2 000 seed-2 stand-in showers).
DEMO_MODELS = {
    "caloflow_photon": Demo(
        "ds1-photon", "photon", 368, (256.0, 4194304.0), "model.fast.onnx", 15_000_000, 65536.0, (0.8, 1.2)
    ),
    "caloflow_pion": Demo(
        "ds1-pion", "pion", 533, (256.0, 4194304.0), "model.fast.onnx", 15_000_000, 65536.0, (0.3, 1.2)
    ),
    "icaloflow_ds2": Demo(
        "ds2-electron", "electron", 6480, (1000.0, 1000000.0), "model.fast.onnx", 25_000_000, 65536.0, (0.8, 1.2)
    ),
    "icaloflow_ds3": Demo(
        "ds3-electron", "electron", 40500, (1000.0, 1000000.0), "model.fast.onnx", 25_000_000, 65536.0, (0.8, 1.2)
    ),
    "l2lflows_ild": Demo(
        "ild-photon", "photon", 3000, (10000.0, 100000.0), "model.onnx", 25_000_000, 50000.0, (0.012, 0.024)
    ),
}


@pytest.mark.parametrize("model", sorted(DEMO_MODELS))
def test_demo_model_verifies_and_says_standin(model: str) -> None:
    repo = ModelRepository(REPO)
    manifest = repo.verify(model)
    demo = DEMO_MODELS[model]
    assert manifest.dataset == demo.dataset and manifest.particle == demo.particle
    assert manifest.n_voxels == demo.n_voxels
    assert manifest.standin is True and "not geant4" in manifest.description.lower()
    assert manifest.training["preset"] == "small"
    assert manifest.energy_range_mev == pytest.approx(demo.energy_range_mev)
    assert manifest.total_size_bytes < demo.max_bytes


@pytest.mark.parametrize("model", sorted(DEMO_MODELS))
def test_demo_model_carries_only_the_artifact_it_serves(model: str) -> None:
    repo = ModelRepository(REPO)
    manifest = repo.manifest(model)
    served = load_runtime(repo, model, None, device="cpu", intra_op_threads=1).artifact
    assert [a.filename for a in manifest.artifacts] == [served.filename] == [DEMO_MODELS[model].served]
    version_dir = REPO / model / str(manifest.version)
    allowed = {MANIFEST_FILENAME, served.filename, QUALITY_FILENAME, QUALITY_CHECKSUM_FILENAME}
    assert {p.name for p in version_dir.iterdir()} <= allowed
    assert set(manifest.extra["parity"]) == {served.format}  # no parity figures of a file that is not shipped


def test_committed_model_repo_stays_within_its_budget() -> None:
    """Every model directory at most 25 MB, the repository at most 100 MB (room for the DS2/DS3 models)."""
    sizes = {d.name: sum(p.stat().st_size for p in d.rglob("*") if p.is_file()) for d in REPO.iterdir() if d.is_dir()}
    assert set(sizes) == set(DEMO_MODELS)
    assert all(size < 25_000_000 for size in sizes.values()), sizes
    assert sum(p.stat().st_size for p in REPO.rglob("*") if p.is_file()) < 100_000_000


@pytest.mark.parametrize("model", sorted(DEMO_MODELS))
def test_demo_model_generates_plausible_showers(model: str) -> None:
    demo = DEMO_MODELS[model]
    loaded = load_runtime(ModelRepository(REPO), model, None, backend="onnx", device="cpu", intra_op_threads=1)
    energies = np.full((64, 1), demo.energy_mev, dtype=np.float32)
    noise = shower_noise(seed=7, start_index=0, count=64, dim=loaded.manifest.noise_dim).numpy()
    showers = loaded.run(energies, noise)
    assert showers.shape == (64, demo.n_voxels) and showers.dtype == np.float32
    assert np.isfinite(showers).all() and (showers >= 0).all()
    ratio = showers.sum(axis=1) / energies[:, 0]
    low, high = demo.visible_fraction
    assert low < ratio.mean() < high


def test_a_corrupted_demo_artifact_is_refused(tmp_path: Path, capsys) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy)
    repo = ModelRepository(copy)
    manifest = repo.verify("caloflow_photon")
    artifact = copy / "caloflow_photon" / str(manifest.version) / manifest.artifacts[0].filename
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))

    assert main(["repo", "verify", "caloflow_photon", "--repo", str(copy)]) == 2
    assert manifest.artifacts[0].filename in capsys.readouterr().err
    with pytest.raises(ArtifactIntegrityError, match=manifest.artifacts[0].filename):
        load_runtime(repo, "caloflow_photon", None, backend="onnx", device="cpu")


@pytest.mark.parametrize("model", sorted(DEMO_MODELS))
def test_repo_show_describes_each_demo_model_by_its_dataset(model: str, capsys) -> None:
    assert main(["repo", "show", model, "--repo", str(REPO)]) == 0
    out = capsys.readouterr().out
    demo = DEMO_MODELS[model]
    assert f"dataset        {demo.dataset}" in out and "STAND-IN showers, not Geant4" in out
    if demo.dataset == "ild-photon":  # a crop model says where its cells sit in the full grid
        assert "shower shape   30 x 10 x 10" in out and "of [30, 30, 30]" in out

"""The committed demo models in model_repo/: they verify, say "stand-in", carry only the artifact the server runs,
generate sensible showers, and a corrupted artifact is refused by `caloflow repo verify` and by the server's loading
code."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from caloflow.cli import main
from caloflow_repo import MANIFEST_FILENAME, QUALITY_CHECKSUM_FILENAME, QUALITY_FILENAME, ModelRepository
from caloflow_server.noise import shower_noise
from caloflow_server.runtime import ArtifactIntegrityError, load_runtime

REPO = Path(__file__).resolve().parents[1] / "model_repo"
DEMO_MODELS = {"caloflow_photon": ("photon", 368), "caloflow_pion": ("pion", 533)}


@pytest.mark.parametrize("model", sorted(DEMO_MODELS))
def test_demo_model_verifies_and_says_standin(model: str) -> None:
    repo = ModelRepository(REPO)
    manifest = repo.verify(model)
    particle, voxels = DEMO_MODELS[model]
    assert manifest.particle == particle and manifest.n_voxels == voxels
    assert manifest.standin is True and "NOT Geant4" in manifest.description
    assert manifest.training["preset"] == "small"
    assert manifest.energy_range_mev == pytest.approx((256.0, 4194304.0))
    assert manifest.total_size_bytes < 15_000_000  # model.fast.onnx alone, ~13 MB for the pion


@pytest.mark.parametrize("model", sorted(DEMO_MODELS))
def test_demo_model_carries_only_the_artifact_it_serves(model: str) -> None:
    repo = ModelRepository(REPO)
    manifest = repo.manifest(model)
    served = load_runtime(repo, model, None, device="cpu", intra_op_threads=1).artifact
    assert [a.filename for a in manifest.artifacts] == [served.filename] == ["model.fast.onnx"]
    version_dir = REPO / model / str(manifest.version)
    allowed = {MANIFEST_FILENAME, served.filename, QUALITY_FILENAME, QUALITY_CHECKSUM_FILENAME}
    assert {p.name for p in version_dir.iterdir()} <= allowed
    assert set(manifest.extra["parity"]) == {served.format}  # no parity figures of a file that is not shipped


def test_committed_demo_artifacts_stay_small() -> None:
    total = sum(p.stat().st_size for p in REPO.rglob("*") if p.is_file())
    assert total < 25_000_000


@pytest.mark.parametrize("model", sorted(DEMO_MODELS))
def test_demo_model_generates_plausible_showers(model: str) -> None:
    loaded = load_runtime(ModelRepository(REPO), model, None, backend="onnx", device="cpu", intra_op_threads=1)
    energies = np.full((64, 1), 65536.0, dtype=np.float32)
    noise = shower_noise(seed=7, start_index=0, count=64, dim=loaded.manifest.noise_dim).numpy()
    showers = loaded.run(energies, noise)
    assert showers.shape == (64, DEMO_MODELS[model][1]) and showers.dtype == np.float32
    assert np.isfinite(showers).all() and (showers >= 0).all()
    ratio = showers.sum(axis=1) / energies[:, 0]
    low = 0.8 if model == "caloflow_photon" else 0.3  # stand-in photons ~0.99, pions ~0.8 at 65 GeV
    assert low < ratio.mean() < 1.2


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

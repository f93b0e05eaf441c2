"""``caloflow data ...`` through ``caloflow.cli.main``, the file summary, and official-file verification."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from caloflow.cli import main
from caloflow.data.datasets import DS1_PHOTON_GEOMETRY as PHOTON
from caloflow.data.datasets import dataset, ds1_dataset, ds1_energy_multiset
from caloflow.data.hdf5 import write_showers
from caloflow.data.official import OFFICIAL_FILES, training_split, verify_official_file
from caloflow.data.summary import STANDIN_WARNING, summarize_shower_file
from caloflow.errors import ShowerFileError

STANDIN_ATTRS = {"generator": "caloflow test generator", "note": "stand-in, not Geant4", "seed": 5}


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    """Photon showers at 256 and 1024 MeV with known E_tot/E_inc and layer occupancy."""
    energies = np.array([256.0, 256.0, 1024.0, 1024.0, 1024.0])
    showers = np.zeros((5, PHOTON.n_voxels))
    showers[:, 8] = 0.5 * energies  # layer 1, one voxel
    showers[:2, 170] = [0.3 * 256.0, 0.5 * 256.0]  # layer 2; E_tot/E_inc 0.8 and 1.0 at 256 MeV
    path = tmp_path / "good.h5"
    write_showers(path, energies, showers, attrs=STANDIN_ATTRS)
    return path


def test_summary_values(good_file: Path) -> None:
    s = summarize_shower_file(good_file, dataset("photon"), chunk_rows=2)
    assert [(r.low_mev, r.count) for r in s.energies] == [(256.0, 2), (1024.0, 3)]
    assert s.energies[0].ratio_mean == pytest.approx(0.9) and s.energies[0].ratio_std == pytest.approx(0.1)
    assert s.energies[1].ratio_mean == pytest.approx(0.5) and s.energies[1].ratio_std == pytest.approx(0.0)
    assert s.layer_sparsity[0] == 1.0 and s.layer_sparsity[1] == pytest.approx(1 - 1 / 160)
    assert s.layer_sparsity[2] == pytest.approx(1 - 2 / 5 / 190)
    total = 0.5 * (2 * 256 + 3 * 1024) + 0.8 * 256
    assert s.layer_energy_share[2] == pytest.approx(0.8 * 256 / total)
    assert s.standin and STANDIN_WARNING in s.render()


def test_check_good_file(good_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(good_file), "--particle", "photon", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"OK: {good_file} is a valid ds1-photon file (5 showers)" in out
    assert STANDIN_WARNING in out and "stand-in, not Geant4" in out
    assert "256 MeV" in out and "1,024 MeV" in out


def test_check_bad_file_exits_2_with_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    showers = np.zeros((3, PHOTON.n_voxels))
    showers[1, 17] = -1.2
    path = tmp_path / "bad.h5"
    write_showers(path, [256.0] * 3, showers)
    assert main(["data", "check", str(path), "--particle", "photon", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"caloflow: error: {path}: showers row 1 has a negative voxel (-1.2 MeV at voxel 17)"


def test_check_wrong_particle_and_missing_file(good_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(good_file), "--particle", "pion", "--no-progress"]) == 2
    assert "not a ds1-pion file" in (err := capsys.readouterr().err) and "it fits ds1-photon" in err
    assert main(["data", "check", str(good_file.with_name("nope.h5")), "--particle", "photon"]) == 2
    assert "nope.h5: no such file" in capsys.readouterr().err


def test_real_prints_where_and_how(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "real"]) == 0
    out = capsys.readouterr().out
    assert "10.5281/zenodo.8099322" in out and "cannot be downloaded" in out
    for f in OFFICIAL_FILES:
        assert f.name in out
    assert "84700" in out and "36300" in out and "84560" in out and "36240" in out
    assert "caloflow data real --verify" in out


def test_official_split_and_sizes() -> None:
    assert training_split("photon") == (84_700, 36_300)
    assert training_split("pion") == (84_560, 36_240)
    sizes = {f.name: (f.n_showers, f.n_voxels, f.role) for f in OFFICIAL_FILES}
    assert sizes["dataset_1_photons_1.hdf5"] == (121_000, 368, "training")
    assert sizes["dataset_1_pions_2.hdf5"] == (120_800, 533, "evaluation")


@pytest.fixture(scope="module")
def full_photon_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The exact Dataset 1 photon energy multiset, shuffled, with all-zero float32 showers (cheap in gzip)."""
    energies = np.random.default_rng(0).permutation(ds1_energy_multiset("photon"))
    path = tmp_path_factory.mktemp("official") / "dataset_1_photons_2.hdf5"
    write_showers(path, energies, np.zeros((len(energies), PHOTON.n_voxels)), dtype=np.float32)
    return path


def test_verify_full_multiset(full_photon_file: Path) -> None:
    report = verify_official_file(full_photon_file, "photon", chunk_rows=50_000)
    data = full_photon_file.read_bytes()
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    assert report.md5 == hashlib.md5(data).hexdigest()
    assert report.info.n_showers == 121_000 and not report.checksum_known
    assert report.official is not None and report.official.role == "evaluation"


def test_verify_via_cli_infers_particle_from_name(full_photon_file: Path, capsys) -> None:
    assert main(["data", "real", "--verify", str(full_photon_file), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "evaluation file" in out and hashlib.sha256(full_photon_file.read_bytes()).hexdigest() in out
    assert main(["data", "real", "--verify", str(full_photon_file), "--particle", "pion"]) == 2
    assert "name says photon" in capsys.readouterr().err


def test_verify_rejects_wrong_multiset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    counts = dict(ds1_dataset("photon").energies.counts)
    energies = np.concatenate([np.full(n - (e == 2.0**18), e) for e, n in counts.items()] + [[1000.0]])
    path = tmp_path / "almost.h5"
    write_showers(path, energies, np.zeros((len(energies), PHOTON.n_voxels)), dtype=np.float32)
    with pytest.raises(ShowerFileError) as excinfo:
        verify_official_file(path, "photon")
    message = str(excinfo.value)
    assert message.startswith(f"{path}: not the Dataset 1 photon energy multiset")
    assert "262144 MeV: 9999 showers, expected 10000" in message
    assert "1 showers at energies outside Dataset 1 (e.g. 1000 MeV)" in message
    assert main(["data", "real", "--verify", str(path), "--particle", "photon", "--no-progress"]) == 2
    assert "262144 MeV: 9999 showers" in capsys.readouterr().err


def test_verify_needs_particle_for_unofficial_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "real", "--verify", str(tmp_path / "mine.h5")]) == 2
    assert "--particle" in capsys.readouterr().err


def test_standin_then_check_both_particles(tmp_path: Path, capsys) -> None:
    """The issue's done-when: `data standin` writes files that `data check` accepts, for both particles."""
    for particle in ("photon", "pion"):
        out = tmp_path / f"{particle}.h5"
        argv = ["data", "standin", "--particle", particle, "--out", str(out), "--seed", "9", "--scale", "0.01"]
        assert main([*argv, "--no-progress"]) == 0
        assert "NOT Geant4" in capsys.readouterr().out
        assert main(["data", "check", str(out), "--particle", particle, "--no-progress"]) == 0
        report = capsys.readouterr().out
        assert "stand-in" in report.lower() and f"valid ds1-{particle} file" in report


def test_standin_rejects_a_bad_seed(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bad.h5"
    assert main(["data", "standin", "--particle", "photon", "--out", str(out), "--seed", "-3", "--no-progress"]) == 2
    assert "seed" in capsys.readouterr().err
    assert not out.exists()

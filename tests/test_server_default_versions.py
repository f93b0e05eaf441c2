"""The server's cached default version: read once, re-read whenever the repository changed what it says."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_repo_support import make_manifest, stage

from caloflow_repo import ModelRepository, RepositoryError
from caloflow_server.default_versions import DefaultVersions

MODEL = "caloflow_photon"


def _add(repo: ModelRepository, tmp_path: Path) -> int:
    staging = stage(tmp_path / f"staging-{len(list(tmp_path.iterdir()))}")
    return repo.add_version(MODEL, staging, make_manifest(MODEL))


class _Counting(ModelRepository):
    reads = 0

    def default_version(self, model: str) -> int:
        self.reads += 1
        return super().default_version(model)


def test_reads_the_repository_once_while_nothing_changes(tmp_path: Path) -> None:
    repo = _Counting(tmp_path / "model_repo")
    _add(repo, tmp_path)
    repo.reads = 0
    defaults = DefaultVersions(repo)
    assert [defaults.get(MODEL) for _ in range(5)] == [1] * 5
    assert repo.reads == 1


def test_follows_set_default_added_and_removed_versions_and_a_hand_edited_pointer(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "model_repo")
    _add(repo, tmp_path)
    _add(repo, tmp_path)
    defaults = DefaultVersions(repo)
    assert defaults.get(MODEL) == 1  # the first version stays the default
    repo.set_default(MODEL, 2)
    assert defaults.get(MODEL) == 2
    pointer = repo.root / MODEL / "default"
    pointer.unlink()  # no pointer: the highest version, after a third one is added
    assert defaults.get(MODEL) == 2
    _add(repo, tmp_path)
    assert defaults.get(MODEL) == 3
    pointer.write_text("1\n")
    assert defaults.get(MODEL) == 1
    shutil.rmtree(repo.root / MODEL / "3")
    pointer.unlink()
    assert defaults.get(MODEL) == 2


def test_errors_are_the_repositorys_and_never_cached(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "model_repo")
    defaults = DefaultVersions(repo)
    with pytest.raises(RepositoryError):
        defaults.get(MODEL)
    _add(repo, tmp_path)
    (repo.root / MODEL / "default").write_text("7\n")
    with pytest.raises(RepositoryError, match="names version 7"):
        defaults.get(MODEL)
    (repo.root / MODEL / "default").write_text("1\n")
    assert defaults.get(MODEL) == 1

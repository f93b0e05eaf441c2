"""``ModelRepository`` on real files: publishing, the default pointer, verification, path safety."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from pathlib import Path

import pytest
from test_repo_support import ONNX_BYTES, PT_BYTES, make_manifest, stage

import caloflow_repo._repository as repository_module
from caloflow_repo import (
    ArtifactNotFoundError,
    ChecksumError,
    InvalidNameError,
    Manifest,
    ManifestError,
    ModelNotFoundError,
    ModelRepository,
    RepositoryError,
    VersionNotFoundError,
    sha256_file,
)


@pytest.fixture
def repo(tmp_path: Path) -> ModelRepository:
    return ModelRepository(tmp_path / "model_repo")


def add(repo: ModelRepository, tmp_path: Path, model: str = "caloflow_photon", **kwargs: object) -> int:
    staging = stage(tmp_path / f"staging-{model}-{len(list(tmp_path.iterdir()))}")
    return repo.add_version(model, staging, make_manifest(model), **kwargs)  # type: ignore[arg-type]


def test_add_version_publishes_checksummed_versions(repo: ModelRepository, tmp_path: Path) -> None:
    assert add(repo, tmp_path) == 1 and add(repo, tmp_path) == 2
    (repo.root / "README.md").write_text("not a model\n")
    assert repo.models() == ["caloflow_photon"] and repo.versions("caloflow_photon") == [1, 2]
    manifest = repo.manifest("caloflow_photon", 2)
    assert manifest.version == 2 and manifest.model == "caloflow_photon"
    onnx = manifest.artifact("model.onnx")
    assert onnx.sha256 == hashlib.sha256(ONNX_BYTES).hexdigest() and onnx.size_bytes == len(ONNX_BYTES)
    assert manifest.artifact("model.pt").size_bytes == len(PT_BYTES)
    version_dir = repo.root / "caloflow_photon" / "2"
    assert sorted(p.name for p in version_dir.iterdir()) == ["manifest.json", "model.onnx", "model.pt"]
    assert Manifest.from_json((version_dir / "manifest.json").read_text()) == manifest
    assert not [p for p in (repo.root / "caloflow_photon").iterdir() if p.name.startswith(".tmp")]


def test_published_files_are_readable_by_a_server_running_as_another_user(
    repo: ModelRepository, tmp_path: Path
) -> None:
    add(repo, tmp_path)
    model_dir = repo.root / "caloflow_photon"
    for path in (model_dir / "1", model_dir / "default", model_dir / "config.pbtxt", model_dir / "1" / "manifest.json"):
        assert path.stat().st_mode & 0o004, path


def test_first_version_becomes_default_and_config_follows(repo: ModelRepository, tmp_path: Path) -> None:
    add(repo, tmp_path)
    add(repo, tmp_path)
    model_dir = repo.root / "caloflow_photon"
    assert (model_dir / "default").read_text() == "1\n" and repo.default_version("caloflow_photon") == 1
    assert repo.manifest("caloflow_photon").version == 1
    assert "versions: [ 1 ]" in (model_dir / "config.pbtxt").read_text()
    assert add(repo, tmp_path, make_default=True) == 3
    assert repo.default_version("caloflow_photon") == 3
    assert "versions: [ 3 ]" in (model_dir / "config.pbtxt").read_text()


def test_remove_version_removes_only_versions_that_are_not_the_default(repo: ModelRepository, tmp_path: Path) -> None:
    add(repo, tmp_path)
    add(repo, tmp_path, make_default=True)
    with pytest.raises(RepositoryError, match="is the default"):
        repo.remove_version("caloflow_photon", 2)
    with pytest.raises(VersionNotFoundError):
        repo.remove_version("caloflow_photon", 3)
    repo.remove_version("caloflow_photon", "1")
    assert repo.versions("caloflow_photon") == [2] and repo.default_version("caloflow_photon") == 2
    assert sorted(p.name for p in (repo.root / "caloflow_photon").iterdir()) == ["2", "config.pbtxt", "default"]
    assert add(repo, tmp_path) == 3  # numbers are never reused while a later version exists


def test_set_default_rolls_back(repo: ModelRepository, tmp_path: Path) -> None:
    add(repo, tmp_path)
    add(repo, tmp_path, make_default=True)
    assert repo.set_default("caloflow_photon", "1").version == 1
    assert repo.default_version("caloflow_photon") == 1
    assert 'name: "caloflow_photon"' in (config := (repo.root / "caloflow_photon" / "config.pbtxt").read_text())
    assert "versions: [ 1 ]" in config
    with pytest.raises(VersionNotFoundError, match="no version 7"):
        repo.set_default("caloflow_photon", 7)
    with pytest.raises(InvalidNameError):
        repo.set_default("caloflow_photon", "01")
    assert not [p for p in (repo.root / "caloflow_photon").iterdir() if p.name.startswith(".tmp")]


def test_default_without_pointer_is_highest(repo: ModelRepository, tmp_path: Path) -> None:
    add(repo, tmp_path)
    add(repo, tmp_path)
    (repo.root / "caloflow_photon" / "default").unlink()
    assert repo.default_version("caloflow_photon") == 2


def test_dangling_or_bad_pointer_is_an_error(repo: ModelRepository, tmp_path: Path) -> None:
    add(repo, tmp_path)
    pointer = repo.root / "caloflow_photon" / "default"
    pointer.write_text("5\n")
    with pytest.raises(VersionNotFoundError, match="names version 5"):
        repo.default_version("caloflow_photon")
    pointer.write_text("../1\n")
    with pytest.raises(RepositoryError, match="default: invalid version"):
        repo.default_version("caloflow_photon")


def test_set_default_refuses_a_corrupt_version(repo: ModelRepository, tmp_path: Path) -> None:
    add(repo, tmp_path)
    add(repo, tmp_path)
    (repo.root / "caloflow_photon" / "2" / "model.pt").write_bytes(b"")
    with pytest.raises(ChecksumError, match=r"model\.pt"):
        repo.set_default("caloflow_photon", 2)
    assert repo.default_version("caloflow_photon") == 1


def test_verify_detects_flipped_byte(repo: ModelRepository, tmp_path: Path) -> None:
    add(repo, tmp_path)
    assert repo.verify("caloflow_photon").version == 1
    path = repo.root / "caloflow_photon" / "1" / "model.onnx"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"1/model\.onnx: sha256 .* differs"):
        repo.verify("caloflow_photon", 1)


def test_verify_detects_truncated_and_missing_artifacts(repo: ModelRepository, tmp_path: Path) -> None:
    add(repo, tmp_path)
    path = repo.root / "caloflow_photon" / "1" / "model.pt"
    path.write_bytes(PT_BYTES[:-1])
    with pytest.raises(
        ChecksumError, match=rf"model\.pt: {len(PT_BYTES) - 1} bytes, the manifest says {len(PT_BYTES)}"
    ):
        repo.verify("caloflow_photon")
    path.unlink()
    with pytest.raises(ChecksumError, match=r"model\.pt: missing"):
        repo.verify("caloflow_photon")


def test_verify_warns_about_unlisted_files(
    repo: ModelRepository, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add(repo, tmp_path)
    (repo.root / "caloflow_photon" / "1" / "notes.txt").write_text("hello")
    with caplog.at_level(logging.WARNING, logger="caloflow_repo"):
        repo.verify("caloflow_photon")
    assert "notes.txt is not listed" in caplog.text


def test_failing_copy_leaves_nothing(repo: ModelRepository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add(repo, tmp_path)
    real_copy = repository_module.copy_with_sha256
    calls: list[Path] = []

    def failing_copy(source: Path, target: Path) -> tuple[str, int]:
        calls.append(source)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_copy(source, target)

    monkeypatch.setattr(repository_module, "copy_with_sha256", failing_copy)
    with pytest.raises(OSError, match="No space left"):
        add(repo, tmp_path)
    assert len(calls) == 2
    model_dir = repo.root / "caloflow_photon"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.pbtxt", "default"]
    assert repo.versions("caloflow_photon") == [1]


def test_first_add_failing_leaves_no_model(
    repo: ModelRepository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_copy(source: Path, target: Path) -> tuple[str, int]:
        target.write_bytes(b"partial")
        raise OSError(5, "I/O error")

    monkeypatch.setattr(repository_module, "copy_with_sha256", failing_copy)
    with pytest.raises(OSError, match="I/O error"):
        add(repo, tmp_path)
    assert repo.models() == [] and list((repo.root / "caloflow_photon").iterdir()) == []


def test_concurrent_adds_get_distinct_versions(repo: ModelRepository, tmp_path: Path) -> None:
    stagings = [stage(tmp_path / f"staging{i}") for i in range(6)]
    results: list[int] = []
    errors: list[BaseException] = []

    def publish(staging: Path) -> None:
        try:
            results.append(ModelRepository(repo.root).add_version("caloflow_photon", staging, make_manifest()))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(s,)) for s in stagings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and sorted(results) == [1, 2, 3, 4, 5, 6]
    assert repo.versions("caloflow_photon") == [1, 2, 3, 4, 5, 6]
    for version in results:
        assert repo.verify("caloflow_photon", version).version == version


def test_publish_retries_when_the_number_is_taken(
    repo: ModelRepository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that loses the race for a number (its rename fails) takes the next one and clobbers nothing."""
    add(repo, tmp_path)
    real_iterdir = Path.iterdir
    sneaked: list[bool] = []

    def racing_iterdir(self: Path):  # type: ignore[no-untyped-def]
        entries = list(real_iterdir(self))
        publishing = any(entry.name.startswith(".tmp-") for entry in entries)
        if self.name == "caloflow_photon" and publishing and not sneaked:
            sneaked.append(True)  # another writer publishes version 2 right after this scan
            (self / "2").mkdir()
            (self / "2" / "manifest.json").write_text("{}")
        return iter(entries)

    monkeypatch.setattr(Path, "iterdir", racing_iterdir)
    assert add(repo, tmp_path) == 3
    assert sneaked and (repo.root / "caloflow_photon" / "2" / "manifest.json").read_text() == "{}"
    assert repo.verify("caloflow_photon", 3).version == 3


def test_add_version_refuses_bad_input(repo: ModelRepository, tmp_path: Path) -> None:
    staging = stage(tmp_path / "staging")
    with pytest.raises(ManifestError, match="is being added to 'other'"):
        repo.add_version("other", staging, make_manifest())
    with pytest.raises(InvalidNameError):
        repo.add_version("../evil", staging, make_manifest("../evil"))
    with pytest.raises(ManifestError, match="'noise_dim'"):
        repo.add_version("caloflow_photon", staging, make_manifest(noise_dim=0))
    (staging / "stray.bin").write_bytes(b"x")
    with pytest.raises(ManifestError, match=r"stray\.bin: not listed"):
        repo.add_version("caloflow_photon", staging, make_manifest())
    (staging / "stray.bin").unlink()
    (staging / "model.pt").unlink()
    with pytest.raises(ArtifactNotFoundError, match=r"model\.pt: listed in the manifest"):
        repo.add_version("caloflow_photon", staging, make_manifest())
    assert not repo.root.exists() or repo.models() == []


def test_add_version_checks_given_checksums(repo: ModelRepository, tmp_path: Path) -> None:
    staging = stage(tmp_path / "staging")
    good = make_manifest()
    artifacts = tuple(
        dataclasses.replace(
            a, sha256=sha256_file(staging / a.filename), size_bytes=(staging / a.filename).stat().st_size
        )
        for a in good.artifacts
    )
    assert repo.add_version("caloflow_photon", staging, dataclasses.replace(good, artifacts=artifacts)) == 1
    wrong = (dataclasses.replace(artifacts[0], sha256="f" * 64), artifacts[1])
    with pytest.raises(ChecksumError, match=r"model\.onnx: copied"):
        repo.add_version("caloflow_photon", staging, dataclasses.replace(good, artifacts=wrong))
    assert repo.versions("caloflow_photon") == [1]


def test_versions_of_one_model_share_a_signature(repo: ModelRepository, tmp_path: Path) -> None:
    add(repo, tmp_path)
    staging = stage(tmp_path / "staging-pion")
    with pytest.raises(ManifestError, match="particle 'pion' differs from version 1's 'photon'"):
        repo.add_version("caloflow_photon", staging, make_manifest(particle="pion"))


def test_lookup_errors(repo: ModelRepository, tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="does not exist"):
        repo.models()
    add(repo, tmp_path)
    with pytest.raises(ModelNotFoundError, match="no model 'caloflow_pion'"):
        repo.versions("caloflow_pion")
    with pytest.raises(VersionNotFoundError, match=r"no version 4 \(versions: \[1\]\)"):
        repo.manifest("caloflow_photon", 4)
    with pytest.raises(InvalidNameError):
        repo.manifest("caloflow_photon", "../1")
    (repo.root / "caloflow_photon" / "01").mkdir()  # Triton ignores leading zeros; so do we
    (repo.root / "caloflow_photon" / ".tmp-abandoned").mkdir()
    assert repo.versions("caloflow_photon") == [1]


def test_manifest_errors_name_the_file(repo: ModelRepository, tmp_path: Path) -> None:
    add(repo, tmp_path)
    add(repo, tmp_path)
    path = repo.root / "caloflow_photon" / "2" / "manifest.json"
    path.write_text(path.read_text().replace('"noise_dim": 8', '"noise_dim": "8"'))
    with pytest.raises(ManifestError, match=r"2/manifest\.json: manifest field 'noise_dim'"):
        repo.manifest("caloflow_photon", 2)
    path.write_text(repo.manifest("caloflow_photon", 1).to_json())
    with pytest.raises(ManifestError, match="says model 'caloflow_photon' version 1, but lies in caloflow_photon/2"):
        repo.manifest("caloflow_photon", 2)
    path.unlink()
    with pytest.raises(ManifestError, match=r"2/manifest\.json: missing"):
        repo.verify("caloflow_photon", 2)


def test_artifact_path(repo: ModelRepository, tmp_path: Path) -> None:
    add(repo, tmp_path)
    path = repo.artifact_path("caloflow_photon", 1, "model.onnx")
    assert path == repo.root / "caloflow_photon" / "1" / "model.onnx" and path.read_bytes() == ONNX_BYTES
    for bad in ("../../etc/passwd", "/etc/passwd", "manifest.json/.."):
        with pytest.raises(InvalidNameError):
            repo.artifact_path("caloflow_photon", 1, bad)
    with pytest.raises(ArtifactNotFoundError, match=r"no artifact 'model\.pt2'"):
        repo.artifact_path("caloflow_photon", 1, "model.pt2")
    with pytest.raises(InvalidNameError):
        repo.artifact_path("..", 1, "model.onnx")

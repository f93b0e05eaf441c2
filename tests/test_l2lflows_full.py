"""L2LFlows on the whole 30 x 30 grid (issue 15 item 3): the context compression, the full-grid presets, a layer
never seeing a later one (by gradients) with compressed contexts, the scanned export chain equal to the eager loop,
and the halo measurement on a small ILD stand-in file (stand-in, not Geant4)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch

from caloflow.cli import main
from caloflow.data.datasets import dataset
from caloflow.data.standin import write_standin_file
from caloflow.families.l2lflows import L2LPreprocessing, L2LSampler, get_l2l_preset, make_flow1
from caloflow.families.l2lflows.context import ContextPooling, context_widths
from caloflow.families.l2lflows.crop import LateralCrop
from caloflow.families.l2lflows.halo import halo_report
from caloflow.families.l2lflows.inputs import batch_inputs
from caloflow.families.l2lflows.models import make_layer_students, make_layer_teachers, truncated_degrees
from caloflow.families.l2lflows.runner import describe_l2l_preset, l2l_parameter_counts
from caloflow.families.l2lflows.scan import scanned_sampler
from caloflow.families.l2lflows.transforms import fractions_to_logit, logit_to_fractions
from caloflow.training.data import ShowerTensors

ILD = dataset("ild-photon")
N_LAYERS = ILD.n_layers
CELLS = ILD.n_voxels // ILD.n_layers


def tiny_full_sampler(chain: str = "student", seed: int = 0) -> L2LSampler:
    preset = get_l2l_preset("tiny-full", ILD)
    teachers = make_layer_teachers(preset, N_LAYERS, CELLS, seed)
    layers = teachers if chain == "teacher" else make_layer_students(preset, teachers, seed)
    prep = L2LPreprocessing(N_LAYERS, CELLS, ILD.threshold_mev, ratio_scale=0.05, context_pool=preset.context_pool)
    return L2LSampler(make_flow1(preset, N_LAYERS, seed), layers, prep, preset.window).eval()


# ------------------------------------------------------------------------------------------ context compression
def test_context_pooling_sums_the_fractions_of_each_block() -> None:
    rng = np.random.default_rng(0)
    cells = torch.from_numpy(rng.exponential(1.0, size=(4, 36)) * (rng.random((4, 36)) < 0.4))
    energy = cells.sum(dim=1)
    image = fractions_to_logit(cells, energy, 1e-6)
    pooled = logit_to_fractions(ContextPooling(6, 3, 1e-6)(image), 1e-6)
    expected = (cells / energy[:, None]).numpy().reshape(4, 2, 3, 2, 3).sum(axis=(2, 4)).reshape(4, 4)
    np.testing.assert_allclose(pooled.numpy(), expected, atol=1e-5)
    assert ContextPooling(6, 1, 1e-6)(image) is image
    with pytest.raises(ValueError, match="must divide"):
        ContextPooling(30, 4, 1e-6)


def test_full_preset_covers_the_grid_with_a_compressed_context() -> None:
    preset = get_l2l_preset("full", ILD)
    assert preset.crop_cells == 30 and preset.context_pool == 3
    widths = context_widths(N_LAYERS, CELLS, preset.window, preset.context_pool)
    assert widths[:7] == [2, 102, 202, 302, 402, 502, 502]  # as wide as the crop model's, for 9x the cells
    assert truncated_degrees(preset, CELLS) and not truncated_degrees(get_l2l_preset("small", ILD), 100)
    counts = l2l_parameter_counts(preset, ILD)
    assert counts["generation"] == counts["flow1"] + counts["students"]
    text = describe_l2l_preset(preset, ILD)
    assert f"{counts['students']:,d}" in text and "30 x 30" in text and "context pooled 3 x 3" in text
    assert "degrees 1 .. 32 of 899" in text
    declared = LateralCrop(N_LAYERS, 30, 30, 0, 0, 30).geometry_dict(ILD.geometry)  # type: ignore[arg-type]
    assert "crop" not in declared and declared["shape"] == [N_LAYERS, 30, 30] and declared["n_voxels"] == ILD.n_voxels


# ------------------------------------------------------------------------------------------ no future layers
def test_a_full_grid_layer_never_depends_on_later_layers_noise() -> None:
    sampler = tiny_full_sampler("student")
    noise = torch.randn(2, N_LAYERS, CELLS, requires_grad=True)
    images = sampler.images(torch.full((2, 1), 5e4), torch.full((2, N_LAYERS), 50.0), noise)
    assert images.shape == (2, N_LAYERS, CELLS)
    for layer in (0, 6, N_LAYERS - 1):
        (grad,) = torch.autograd.grad(images[:, layer].sum(), noise, retain_graph=True)
        per_layer = grad.abs().sum(dim=(0, 2))
        assert per_layer[layer + 1 :].sum() == 0 and per_layer[layer] > 0
        if layer > 0:
            assert per_layer[layer - 1] > 0  # the previous layer reaches it through the pooled context


def test_a_full_grid_teachers_density_never_depends_on_later_layers() -> None:
    sampler = tiny_full_sampler("teacher")
    batch = ShowerTensors(torch.rand(3, N_LAYERS, CELLS) * 5, torch.full((3, 1), 3e4))
    inputs = batch_inputs(batch, sampler.prep, torch.Generator().manual_seed(0))
    assert inputs.pooling is not None and inputs.context(7, 5).shape == (3, 502)
    images = inputs.images.detach().requires_grad_(True)
    for layer in (0, 4, 12, N_LAYERS - 1):
        log_prob = sampler.layers.flow(layer).log_prob(images[:, layer], inputs.context(layer, 5, images))
        (grad,) = torch.autograd.grad(log_prob.sum(), images)
        per_layer = grad.abs().sum(dim=(0, 2))
        assert per_layer[layer + 1 :].sum() == 0 and per_layer[layer] > 0
        assert (per_layer[max(layer - 5, 0) : layer] > 0).all()
        assert per_layer[: max(layer - 5, 0)].sum() == 0


def test_the_scanned_export_chain_pools_its_carry_like_the_eager_loop() -> None:
    sampler = tiny_full_sampler("student", seed=2)
    energies = torch.linspace(1e4, 1e5, 3).reshape(3, 1)
    noise = torch.randn(3, sampler.noise_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager = sampler(energies, noise)
        scanned = scanned_sampler(sampler).forward(energies, noise)
    assert eager.shape == (3, N_LAYERS * CELLS)
    torch.testing.assert_close(scanned, eager, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------ the halo the crop loses
@pytest.fixture(scope="module")
def ild_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("l2l_full") / "ild_standin.h5"
    return write_standin_file("ild-photon", path, seed=1, scale=0.0005, progress=False)


def test_halo_report_measures_what_the_crop_leaves_out(ild_file: Path) -> None:
    report = halo_report(ild_file, ILD, crop_cells=10)
    assert report.crop.size == 10 and len(report.incident_mev) == 50
    assert ((report.energy_outside > 0) & (report.energy_outside < 0.5)).all()
    assert (report.hits_outside > report.energy_outside).mean() > 0.9  # the halo is sparse: many hits, little energy
    shifts = {str(row["observable"]): float(cast(float, row["shift_over_std"])) for row in report.observable_shifts()}
    assert shifts["width_x"] > 1.0 and shifts["cog_y"] < shifts["width_x"]
    whole = halo_report(ild_file, ILD, crop=LateralCrop(N_LAYERS, 30, 30, 0, 0, 30))
    assert (whole.energy_outside == 0).all() and all(row["shift_over_std"] == 0 for row in whole.observable_shifts())


def test_the_cli_dry_run_prints_the_full_preset_and_other_families_refuse_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", "all", "--dataset", "ild-photon", "--preset", "full", "--dry-run"]) == 0
    assert "the whole 30 x 30 grid (900 cells)" in capsys.readouterr().out
    assert main(["train", "all", "--particle", "photon", "--preset", "full", "--dry-run"]) == 2
    assert "--preset full: a whole-grid L2LFlows preset" in capsys.readouterr().err

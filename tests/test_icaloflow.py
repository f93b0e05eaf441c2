"""iCaloFlow (Datasets 2 and 3): parameter counts, the flows' contract for the new context layout, what each
condition may see, the generation path, and tiny seeded, resumable training on a small stand-in file."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from caloflow.data.datasets import dataset
from caloflow.data.standin import write_standin_file
from caloflow.errors import CaloflowError
from caloflow.families.icaloflow.context import Conditioning
from caloflow.families.icaloflow.data import LayerSplit, load_layer_data
from caloflow.families.icaloflow.models import FLOW_NAMES, build_models, parameter_counts
from caloflow.families.icaloflow.presets import get_preset, preset_from_dict
from caloflow.families.icaloflow.runner import PUBLISHED, describe_preset
from caloflow.families.icaloflow.sampler import ICaloFlowSampler, noise_dim
from caloflow.families.icaloflow.training import TrainContext, make_conditioning, train_run, trained_models
from caloflow.flows import IncompleteDegreesWarning
from caloflow.training.stage import Stage

DS2, DS3 = dataset("ds2-electron"), dataset("ds3-electron")
SMALL = Conditioning(n_layers=4, layer_size=6)
"""A 4-layer, 6-voxel stand-in geometry for the contract tests: every flow is cheap."""


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------ parameter counts
@pytest.mark.parametrize("ds", [DS2, DS3], ids=lambda d: d.name)
def test_paper_preset_reproduces_the_published_parameter_counts(ds: object) -> None:
    ds_ = dataset(str(ds.name))
    counts = parameter_counts(get_preset("paper", ds_), Conditioning(ds_.n_layers, ds_.n_voxels // ds_.n_layers))
    assert {k: counts[k] for k in PUBLISHED[ds_.name]} == PUBLISHED[ds_.name]
    assert counts["flow1"] == 2_752_600
    assert counts["training"] == {"ds2-electron": 41_237_080, "ds3-electron": 187_423_704}[ds_.name]


def test_ds3_paper_truncates_degrees_and_full_degrees_removes_it() -> None:
    text = describe_preset(get_preset("paper", DS3), DS3)
    assert text.count("MADE degrees truncated: H 256 < D - 1 = 899") == 4  # flows 2, 3 and both students
    full = describe_preset(get_preset("paper", DS3, full_degrees=True), DS3)
    assert "truncated" not in full and "hidden 899" in full
    assert "truncated" not in describe_preset(get_preset("paper", DS2), DS2)


def test_preset_round_trips_through_its_dict() -> None:
    preset = get_preset("small", DS3, renormalise=True)
    assert preset_from_dict(preset.to_dict()) == preset


# ------------------------------------------------------------------------------------------ flow contract
def _flows() -> dict[str, torch.nn.Module]:
    preset = get_preset("tiny", DS2, full_degrees=True)
    models = build_models(preset, SMALL, seed=3)
    return {name: models.get(name).eval() for name in FLOW_NAMES}


CONTEXTS = {"flow1": 1, "flow2": 2, "flow3": SMALL.flow3_context_size, "student2": 2, "student3": 3 + 6 + 3}


@pytest.mark.parametrize("name", FLOW_NAMES)
def test_flow_contract_with_the_icaloflow_context_layout(name: str) -> None:
    flow = _flows()[name]
    assert flow.block(0).autoregressive_net.context_layer.in_features == CONTEXTS[name]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, flow.features, generator=generator) * 3
    c = torch.randn(8, CONTEXTS[name], generator=generator)
    log_prob = flow.log_prob(x, c)
    assert torch.isfinite(log_prob).all()
    z = flow.forward_trace(x, c).out
    assert torch.allclose(flow.sample(z, c), x, atol=1e-4)
    _, log_q = flow.sample_and_log_prob(z, c)
    assert torch.allclose(log_q, log_prob, atol=1e-3)
    flow.train()
    (-flow.log_prob(x[:4], c[:4]).mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in flow.parameters())


def test_students_share_their_teachers_permutations_and_blocks() -> None:
    flows = _flows()
    for teacher, student in (("flow2", "student2"), ("flow3", "student3")):
        t, s = flows[teacher], flows[student]
        assert (t.n_blocks, s.block(0).inverse_autoregressive, t.block(0).inverse_autoregressive) == (2, True, False)
        for i in range(t.n_blocks - 1):
            assert torch.equal(t.permutation(i).indices, s.permutation(i).indices)
        assert t.permutation(t.n_blocks - 1) is None  # the last permutation is deleted, as nflows' layout


def test_tiny_ds3_flows_warn_about_truncated_degrees_only_when_asked_not_to() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompleteDegreesWarning)
        build_models(get_preset("tiny", DS3), Conditioning(45, 900), seed=0, device="meta")  # silenced, counted
    with pytest.raises(ValueError, match="covers degrees"):
        from caloflow.flows import MADE

        MADE(900, 16, 947, 11)


# ------------------------------------------------------------------------------------------ conditions
def _split(seed: int = 0, n: int = 5) -> LayerSplit:
    generator = torch.Generator().manual_seed(seed)
    layers = torch.rand(n, SMALL.n_layers, SMALL.layer_size, generator=generator) * 100
    return LayerSplit(layers, torch.full((n, 1), 5e4))


def test_energy_logit_is_finite_at_and_above_the_scale() -> None:
    energies = torch.tensor([0.0, 1e-3, 6.5e4, 6.6e4, 1e9])
    x = SMALL.energy_logit(energies)
    assert torch.isfinite(x).all() and x[3] == x[2] == x[4]
    assert torch.allclose(SMALL.energy_from_logit(x[:3]), energies[:3], rtol=1e-4, atol=0.02)


def test_flow3_condition_sees_only_the_sum_of_its_own_layer_and_nothing_after_it() -> None:
    split, pairs = _split(), torch.arange(15)
    _, c = split.flow3_batch(pairs, SMALL, torch.Generator().manual_seed(1))
    changed = split.layers.clone()
    changed[:, 2] = changed[:, 2].flip(-1)  # layer 2's pattern changes, its sum does not
    changed[:, 3] *= 7.0  # the last layer changes entirely
    _, c2 = LayerSplit(changed, split.incident).flow3_batch(pairs, SMALL, torch.Generator().manual_seed(1))
    step = pairs % (SMALL.n_layers - 1) + 1
    for n, may_change in ((1, False), (2, False), (3, True)):  # pair for layer n: sees layer n-1's pattern
        rows = step == n
        assert torch.allclose(c[rows], c2[rows], atol=1e-4) != (may_change or n == 3)
    previous = c[:, 3 : 3 + SMALL.layer_size]
    assert torch.equal(c[:, 3 + SMALL.layer_size :].argmax(1), step - 1)  # the one-hot names the step
    assert previous.shape == (15, SMALL.layer_size)


def test_flow2_condition_is_incident_and_layer_zero_energy_only() -> None:
    split = _split()
    _, c = split.flow2_batch(torch.arange(5), SMALL, torch.Generator().manual_seed(1))
    shuffled = split.layers.clone()
    shuffled[:, 0] = shuffled[:, 0].flip(-1)
    shuffled[:, 1:] = 0.0
    _, c2 = LayerSplit(shuffled, split.incident).flow2_batch(torch.arange(5), SMALL, torch.Generator().manual_seed(1))
    assert c.shape == (5, 2) and torch.allclose(c, c2, atol=1e-5)


# ------------------------------------------------------------------------------------------ generation
def _sampler(renormalise: bool = False) -> ICaloFlowSampler:
    models = build_models(get_preset("tiny", DS2, full_degrees=True), SMALL, seed=3)
    return ICaloFlowSampler(models.flow1, models.student2, models.student3, SMALL, 1.0, renormalise).eval()


def test_generated_layer_depends_only_on_earlier_noise_and_cuts_every_stage() -> None:
    sampler = _sampler()
    energies = torch.full((4, 1), 3e4)
    noise = torch.randn(4, noise_dim(SMALL), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        showers = sampler(energies, noise).reshape(4, SMALL.n_layers, SMALL.layer_size)
        later, size, steps = noise.clone(), SMALL.layer_size, SMALL.n_layers - 1
        latent_3 = SMALL.n_layers + size * 3  # [flow-1 | flow-2 | latents of layers 1, 2, 3 | dequantisation]
        later[:, latent_3 : latent_3 + size] = 5.0  # layer 3's latent
        later[:, latent_3 + size * steps :] = 0.0  # the dequantisation of layer 2, which conditions layer 3
        again = sampler(energies, later).reshape(4, SMALL.n_layers, SMALL.layer_size)
    assert torch.equal(showers[:, :3], again[:, :3]) and not torch.equal(showers[:, 3], again[:, 3])
    nonzero = showers[showers > 0]
    assert (showers >= 0).all() and (nonzero >= sampler.cut_mev).all()


def test_renormalise_makes_layer_sums_equal_flow1_energies() -> None:
    energies = torch.full((6, 1), 3e4)
    noise = torch.randn(6, noise_dim(SMALL), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        target = _sampler().layer_energies(energies, noise[:, : SMALL.n_layers])
        plain = _sampler(False)(energies, noise).reshape(6, SMALL.n_layers, -1).sum(-1)
        scaled = _sampler(True)(energies, noise).reshape(6, SMALL.n_layers, -1).sum(-1)
    assert (scaled <= target * (1 + 1e-5)).all()
    assert torch.allclose(scaled, target, rtol=1e-4, atol=SMALL.layer_size * 1.0)  # up to cut voxels (< 1 MeV)
    assert not torch.allclose(plain, target, rtol=1e-2)


# ------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def ds2_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_standin_file(DS2.name, tmp_path_factory.mktemp("icf") / "ds2.h5", seed=5, scale=0.003, progress=False)


def _context(path: Path, out: Path, seed: int = 0, resume: bool = False) -> TrainContext:
    preset = get_preset("tiny", DS2)
    data = load_layer_data(path, DS2)
    return TrainContext(
        out, DS2, preset, make_conditioning(DS2, preset, data), data, seed, torch.device("cpu"), False, resume
    )


def test_training_is_seeded_and_resumes_to_the_same_weights(
    ds2_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stages = ("flow1", "flow3")
    train_run(_context(ds2_file, tmp_path / "a"), stages)
    original = Stage._checkpoint
    calls = {"n": 0}

    def interrupted(self: Stage, *args: object) -> None:
        original(self, *args)  # type: ignore[arg-type]
        calls["n"] += 1
        if calls["n"] == 3:  # flow-3's first epoch is saved, then the machine "dies"
            raise KeyboardInterrupt

    monkeypatch.setattr(Stage, "_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_run(_context(ds2_file, tmp_path / "b"), stages)
    monkeypatch.setattr(Stage, "_checkpoint", original)
    train_run(_context(ds2_file, tmp_path / "b", resume=True), ("flow3",))
    for stage in stages:
        a = torch.load(tmp_path / "a" / stage / "last.pt", weights_only=True)
        b = torch.load(tmp_path / "b" / stage / "last.pt", weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a), stage
    other = tmp_path / "c"
    train_run(_context(ds2_file, other, seed=1), ("flow1",))
    c = torch.load(other / "flow1" / "last.pt", weights_only=True)
    a = torch.load(tmp_path / "a" / "flow1" / "last.pt", weights_only=True)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_all_stages_train_and_students_load_and_generate(ds2_file: Path, tmp_path: Path) -> None:
    ctx = _context(ds2_file, tmp_path / "run")
    summary = train_run(ctx)
    assert list(summary["stages"]) == list(FLOW_NAMES)
    assert all(stage["best_epoch"] >= 0 for stage in summary["stages"].values())
    assert summary["stages"]["student3"]["select_key"] == "kl"
    models = trained_models(ctx.directory, ctx.preset, ctx.cond, ctx.seed)
    sampler = ICaloFlowSampler(models.flow1, models.student2, models.student3, ctx.cond, DS2.threshold_mev, False)
    with torch.no_grad():
        showers = sampler.eval()(torch.tensor([[2e3], [5e5]]), torch.randn(2, sampler.noise_dim))
    assert showers.shape == (2, DS2.n_voxels) and torch.isfinite(showers).all()
    (ctx.directory / "flow3" / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CaloflowError, match=r"flow3/best.pt: cannot load the flow3 checkpoint"):
        trained_models(ctx.directory, ctx.preset, ctx.cond, ctx.seed)


@pytest.mark.parametrize("chain", ["student", "teacher"])
def test_fast_form_matches_the_float64_sampler(chain: str) -> None:
    from caloflow.export.parity import compare, exact_showers
    from caloflow.families.icaloflow.fast import fast_icaloflow_sampler

    models = build_models(get_preset("tiny", DS2, full_degrees=True), SMALL, seed=4)
    flow2, flow3 = (models.student2, models.student3) if chain == "student" else (models.flow2, models.flow3)
    eager = ICaloFlowSampler(models.flow1, flow2, flow3, SMALL, 1.0, False).eval()
    generator = torch.Generator().manual_seed(5)
    energies = torch.exp(torch.empty(64, 1).uniform_(7.0, 13.8, generator=generator))
    noise = torch.randn(64, noise_dim(SMALL), generator=generator)
    exact = exact_showers(eager, energies.numpy(), noise.numpy())
    chain_fast = fast_icaloflow_sampler(eager)
    with torch.no_grad():
        fast = chain_fast(energies, noise).numpy()
        chain_fast.chunk = 10  # 64 rows in 7 calls, the last of 4
        in_passes = chain_fast(energies, noise).numpy()
    assert exact.any() and compare(fast, exact, eager.threshold_mev)["violations"] == 0
    assert compare(in_passes, exact, eager.threshold_mev)["violations"] == 0
    assert compare(fast * 1.05, exact, eager.threshold_mev)["violations"] > 0  # the criterion can fail


@pytest.mark.parametrize("form", ["plain", "fast"])
def test_scanned_form_samples_what_the_layer_loop_samples(form: str) -> None:
    from caloflow.families.icaloflow.fast import fast_icaloflow_sampler
    from caloflow.families.icaloflow.scanned import scanned_generation

    eager = _sampler(renormalise=True)
    chain = fast_icaloflow_sampler(eager) if form == "fast" else eager
    energies = torch.exp(torch.empty(5, 1).uniform_(7.0, 13.8, generator=torch.Generator().manual_seed(6)))
    noise = torch.randn(5, noise_dim(SMALL), generator=torch.Generator().manual_seed(7))
    scanned = scanned_generation(chain)
    swapped = noise.clone()
    swapped[:, -SMALL.layer_size :] = 0.0  # the last step's dequantisation: only the scanned steps see it
    with torch.no_grad():
        looped, showers, other = chain(energies, noise), scanned(energies, noise), scanned(energies, swapped)
    assert looped[:, -SMALL.layer_size :].any()
    torch.testing.assert_close(showers, looped, rtol=1e-5, atol=1e-3)
    assert not torch.allclose(other, looped, rtol=1e-5, atol=1e-3)

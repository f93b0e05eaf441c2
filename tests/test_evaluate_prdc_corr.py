"""PRDC on known cases and the correlation Frobenius distance with its split-half floor (evaluation note 5.5)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from caloflow.evaluation.correlations import LayerCorrelations, frobenius_distance, layer_correlations
from caloflow.evaluation.errors import EvaluationError
from caloflow.evaluation.prdc import prdc


def _gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def test_prdc_of_identical_sets_is_one_and_of_disjoint_sets_zero():
    x = _gaussian(1_500, 8, 0)
    same = prdc(x, x.copy(), k=5)
    assert (same.precision, same.recall, same.coverage) == (1.0, 1.0, 1.0)
    assert same.density == pytest.approx(6 / 5, rel=0.02)  # each point lies in its own ball and its k neighbours'
    far = prdc(x, _gaussian(1_500, 8, 1, shift=50.0), k=5)
    assert (far.precision, far.recall, far.density, far.coverage) == (0.0, 0.0, 0.0, 0.0)


def test_prdc_of_two_draws_of_one_gaussian_matches_the_paper():
    """Naeem et al.: for one distribution, coverage -> 1 - 2^-k (0.969 at k = 5) and density -> 1."""
    r = prdc(_gaussian(3_000, 16, 2), _gaussian(3_000, 16, 3), k=5)
    assert r.coverage == pytest.approx(0.969, abs=0.02)
    assert r.density == pytest.approx(1.0, abs=0.12)
    assert r.precision > 0.8 and r.recall > 0.8


def test_a_dropped_mode_lowers_recall_and_coverage_but_not_precision():
    ref = np.concatenate([_gaussian(1_000, 4, 4), _gaussian(1_000, 4, 5, shift=12.0)])
    one_mode = _gaussian(2_000, 4, 6)  # only the first mode, with every generated shower
    r = prdc(ref, one_mode, k=5)
    assert r.precision > 0.9
    assert r.recall < 0.6 and r.coverage < 0.6


def test_prdc_subsamples_with_its_seed_and_checks_its_inputs():
    ref, gen = _gaussian(3_000, 4, 7), _gaussian(2_500, 4, 8)
    a, b = prdc(ref, gen, max_samples=1_000, seed=3), prdc(ref, gen, max_samples=1_000, seed=3)
    assert a == b and (a.n_reference, a.n_generated) == (1_000, 1_000)
    assert prdc(ref, gen, max_samples=1_000, seed=4) != a
    with pytest.raises(EvaluationError, match="features"):
        prdc(ref, gen[:, :3])
    with pytest.raises(EvaluationError, match="k=5"):
        prdc(ref[:5], gen)


def test_frobenius_distance_identical_analytic_and_constant_layers():
    eye = np.eye(3)
    perturbed = eye.copy()
    perturbed[0, 1] = perturbed[1, 0] = 0.3
    perturbed[1, 2] = perturbed[2, 1] = -0.4
    assert frobenius_distance(eye, eye) == 0.0
    assert frobenius_distance(eye, perturbed) == pytest.approx(math.sqrt(2 * 0.3**2 + 2 * 0.4**2), rel=1e-12)
    rng = np.random.default_rng(9)
    values = rng.normal(size=(2_000, 4))
    values[:, 2] = 0.0  # a layer that is always empty: skipped and counted, not NaN for the whole matrix
    corr = layer_correlations((0, 1, 2, 3), values, values)
    assert corr.frobenius == 0.0 and corr.n_constant_layers == 1
    assert math.isfinite(corr.split_half_floor) and corr.split_half_floor > 0.0
    assert math.isnan(LayerCorrelations((0,), np.full((1, 1), np.nan), np.full((1, 1), np.nan)).frobenius)


def test_split_half_floor_separates_noise_from_a_wrong_correlation():
    rng = np.random.default_rng(10)
    mixing = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.3, 0.5, 0.8]])
    reference = rng.normal(size=(20_000, 3)) @ mixing.T
    same = rng.normal(size=(20_000, 3)) @ mixing.T
    independent_layers = rng.normal(size=(20_000, 3)) * reference.std(axis=0)
    close = layer_correlations((0, 1, 2), reference, same)
    wrong = layer_correlations((0, 1, 2), reference, independent_layers)
    assert close.frobenius < 1.5 * close.split_half_floor  # a draw of the same distribution sits near the floor
    assert wrong.frobenius > 20 * wrong.split_half_floor

"""Unit tests of the evaluation metrics on inputs whose answers can be worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from caloflow.data.datasets import DS1_PHOTON_GEOMETRY as PHOTON
from caloflow.data.datasets import DS1_PION_GEOMETRY as PION
from caloflow.data.features import compute_features
from caloflow.evaluation.classifier import (
    ClassifierSettings,
    build_dnn,
    calibrated_metrics,
    jsd_from_probabilities,
    split_sizes,
)
from caloflow.evaluation.classifier_features import high_level_inputs, low_level_inputs, low_normed_inputs
from caloflow.evaluation.config import METRICS, parse_metrics
from caloflow.evaluation.correlations import pearson_matrix
from caloflow.evaluation.energy import chi2_two_histograms, energy_response
from caloflow.evaluation.errors import EvaluationError
from caloflow.evaluation.fpd_kpd import fpd, frechet_distance, kpd, mmd_poly_unbiased
from caloflow.evaluation.histograms import separation_power


def test_separation_power_identical_disjoint_and_by_hand():
    edges = np.array([0.0, 1.0, 2.0])
    assert separation_power(np.array([0.5, 0.5]), np.array([0.5, 0.5]), edges) == 0.0
    assert separation_power(np.array([1.0, 0.0]), np.array([0.0, 1.0]), edges) == pytest.approx(1.0)
    # h1 = (1, 0), h2 = (0.5, 0.5): 1/2 (0.25 / 1.5 + 0.25 / 0.5) = 1/3
    assert separation_power(np.array([1.0, 0.0]), np.array([0.5, 0.5]), edges) == pytest.approx(1 / 3)
    # density times bin width: bins of width 2 and density 0.25 each hold 1/2
    assert separation_power(np.array([0.5, 0.0]), np.array([0.0, 0.5]), np.array([0.0, 2.0, 4.0])) == pytest.approx(1.0)


def test_chi2_two_histograms_by_hand():
    # N = M = 30: each bin (30*10 - 30*20)^2 / (30*30*30) = 10/3; the empty bin is skipped
    chi2, ndf = chi2_two_histograms(np.array([10.0, 20.0, 0.0]), np.array([20.0, 10.0, 0.0]))
    assert chi2 == pytest.approx(20 / 3)
    assert ndf == 1
    # unequal totals with equal shapes: chi2 = 0
    chi2, ndf = chi2_two_histograms(np.array([10.0, 30.0]), np.array([20.0, 60.0]))
    assert chi2 == pytest.approx(0.0)
    assert ndf == 1


def test_energy_response_counts_showers_outside_the_range():
    rng = np.random.default_rng(1)
    energies = np.full(2000, 256.0)
    reference = (energies, rng.normal(0.9, 0.05, 2000))
    same = (energies, rng.normal(0.9, 0.05, 2000))
    outside = (energies, np.full(2000, 3.0))  # above the [0.4, 1.4] histogram range
    assert energy_response("photon", reference, same).chi2_per_ndf < 2.0
    broken = energy_response("photon", reference, outside)
    assert broken.chi2_per_ndf > 50.0
    assert broken.bins[0].mean_ratio == pytest.approx(3.0 / reference[1].mean())


def test_jsd_by_hand():
    labels = np.array([1.0, 0.0])
    assert jsd_from_probabilities(np.array([0.5, 0.5]), labels) == pytest.approx(0.0)
    assert jsd_from_probabilities(np.array([1.0, 0.0]), labels) == pytest.approx(1.0, abs=1e-5)
    # BCE = -ln 0.75 for both showers
    expected = (math.log(2) + math.log(0.75)) / math.log(2)
    assert jsd_from_probabilities(np.array([0.75, 0.25]), labels) == pytest.approx(expected)


def test_calibration_keeps_a_perfect_separation_and_flattens_noise():
    rng = np.random.default_rng(2)
    labels = np.repeat([0.0, 1.0], 500)
    separable = labels * 0.5 + rng.uniform(0, 0.4, 1000)
    auc, jsd = calibrated_metrics(separable, labels, separable, labels)
    assert auc == pytest.approx(1.0)
    assert jsd > 0.99
    auc, jsd = calibrated_metrics(rng.uniform(size=1000), labels, rng.uniform(size=1000), labels)
    assert abs(auc - 0.5) < 0.06
    assert jsd < 0.05


def test_frechet_distance_by_hand():
    # 1-d: (0 - 1)^2 + 1 + 4 - 2 sqrt(1 * 4) = 2
    assert frechet_distance(np.array([0.0]), np.array([[1.0]]), np.array([1.0]), np.array([[4.0]])) == pytest.approx(
        2.0
    )
    # diagonal 2-d: the sum of the 1-d distances
    d = frechet_distance(np.zeros(2), np.diag([1.0, 9.0]), np.array([1.0, 2.0]), np.diag([4.0, 1.0]))
    assert d == pytest.approx((1 + 1 + 4 - 4) + (4 + 9 + 1 - 6))


def test_mmd_polynomial_kernel_by_hand():
    x, y = np.array([[1.0], [1.0]]), np.array([[0.0], [0.0]])
    # k(1, 1) = 16 off the diagonal of XX, k(0, 0) = 1 for YY, k(1, 0) = 1: 16 + 1 - 2
    assert mmd_poly_unbiased(x, y) == pytest.approx(15.0)
    assert mmd_poly_unbiased(x, x) == pytest.approx(0.0)


def test_fpd_and_kpd_separate_a_shifted_sample_from_the_same_one():
    rng = np.random.default_rng(3)
    real, same, shifted = rng.normal(size=(4000, 5)), rng.normal(size=(4000, 5)), rng.normal(0.3, 1.0, size=(4000, 5))
    options = {"min_samples": 500, "max_samples": 2000, "num_batches": 5, "num_points": 4}
    null, off = fpd(real, same, **options), fpd(real, shifted, **options)
    assert null.value < 2e-3
    assert off.value > 10 * max(null.value, 1e-4)
    assert abs(kpd(real, same, batch_size=500, num_batches=5).value) < 2e-3
    assert kpd(real, shifted, batch_size=500, num_batches=5).value > 1e-2


def test_pearson_matrix_signs_and_constant_columns():
    a = np.arange(10.0)
    m = pearson_matrix(np.stack([a, 2 * a + 1, -a, np.ones(10)], axis=1))
    assert m[0, 1] == pytest.approx(1.0)
    assert m[0, 2] == pytest.approx(-1.0)
    assert np.isnan(m[3]).all() and np.isnan(m[:, 3]).all()


def test_published_split_and_network_size():
    assert split_sizes(121_000, "photon").__dict__ == {"train": 80_000, "test": 20_000, "validation": 21_000}
    assert split_sizes(120_800, "pion").__dict__ == {"train": 80_000, "test": 20_000, "validation": 20_800}
    with pytest.raises(ValueError, match="too few"):
        split_sizes(3, "photon")
    dnn = build_dnn(369, ClassifierSettings())
    assert sum(p.numel() for p in dnn.parameters()) == 369 * 2048 + 2048 + 2 * (2048 * 2048 + 2048) + 2048 + 1


@pytest.mark.parametrize(("geometry", "dims"), [(PHOTON, (369, 374, 30)), (PION, (534, 541, 46))])
def test_classifier_input_dimensions(geometry, dims):
    rng = np.random.default_rng(4)
    showers = rng.exponential(10.0, size=(7, geometry.n_voxels))
    energies = np.full(7, 65536.0)
    hlf = compute_features(showers, geometry, energies)
    low = low_level_inputs(energies, showers)
    normed = low_normed_inputs(energies, showers, hlf.e_layer, geometry)
    high = high_level_inputs(hlf)
    assert (low.shape[1], normed.shape[1], high.shape[1]) == dims
    assert np.allclose(low[:, 1:], showers / 65536.0)
    # the normalised voxels of each layer sum to one
    first = geometry.layer_slices[1]
    assert np.allclose(normed[:, 1:][:, first].sum(axis=1), 1.0)


def test_parse_metrics_names_the_option():
    assert parse_metrics("all") == METRICS
    assert parse_metrics("cls-high, hist") == ("hist", "cls-high")
    with pytest.raises(EvaluationError, match="--metrics"):
        parse_metrics("hist,cls-resnet")

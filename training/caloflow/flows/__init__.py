"""CaloFlow's normalizing-flow building blocks: MADE, rational-quadratic splines, MAF/IAF blocks,
permutations, the composite flow and builders of flow-I, the MAF teacher and the IAF student."""

from caloflow.flows.autoregressive import AutoregressiveRQS, BlockOutput
from caloflow.flows.builders import build_flow1, build_student, build_teacher, teacher_permutations
from caloflow.flows.flow import Flow, TraceOutput, standard_normal_log_prob
from caloflow.flows.made import MADE, IncompleteDegreesWarning, MaskedLinear, fold_masks
from caloflow.flows.permutations import (
    Permutation,
    layerwise_inversion,
    layerwise_random_permutation,
    random_permutation,
)
from caloflow.flows.spline import SplineConfig, rqs_forward, rqs_inverse, rqs_knots

__all__ = [
    "MADE",
    "AutoregressiveRQS",
    "BlockOutput",
    "Flow",
    "IncompleteDegreesWarning",
    "MaskedLinear",
    "Permutation",
    "SplineConfig",
    "TraceOutput",
    "build_flow1",
    "build_student",
    "build_teacher",
    "fold_masks",
    "layerwise_inversion",
    "layerwise_random_permutation",
    "random_permutation",
    "rqs_forward",
    "rqs_inverse",
    "rqs_knots",
    "standard_normal_log_prob",
    "teacher_permutations",
]

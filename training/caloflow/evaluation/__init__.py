"""CaloChallenge-style evaluation of generated showers against a reference file (``caloflow evaluate``).

The metrics follow the official ``evaluate.py`` (see the method notes, section 6): feature histograms
with separation powers, E_tot / E_inc per incident energy with chi2/NDF, the voxel spectrum, layer-energy
correlations, the three DNN classifier tests (calibrated AUC and JSD, repeated runs), and FPD / KPD as
``jetnet`` computes them; plus PNG plots, ``metrics.json`` and an HTML page. ``evaluate`` is the entry
point; each metric lives in its own module and knows nothing of files or the command line.
"""

from caloflow.evaluation.classifier import ClassifierSettings
from caloflow.evaluation.config import METRICS, EvaluationConfig, parse_metrics
from caloflow.evaluation.errors import EvaluationError
from caloflow.evaluation.run import EvaluationResult, evaluate

__all__ = [
    "METRICS",
    "ClassifierSettings",
    "EvaluationConfig",
    "EvaluationError",
    "EvaluationResult",
    "evaluate",
    "parse_metrics",
]

"""``caloflow evaluate compare A B``: two quality reports' figures side by side, or a refusal.

Figures only compare when the same evaluator computed them against the same reference: a report made with
another settings hash (classifier size, N, FPD sizes...) or another reference file is refused with an error
naming the field and both values (``--force`` compares anyway, and says so). Each row is a figure of A and
of B, B - A, and the combined error where both reports carry one (classifier run spread, FPD / KPD errors).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caloflow.evaluation.errors import EvaluationError

__all__ = ["ComparisonRow", "compare_reports", "load_report", "render_comparison"]

# (row name, path of the value, path of its error or None)
_FIGURES: tuple[tuple[str, tuple[str, ...], tuple[str, ...] | None], ...] = (
    *(
        (f"AUC {mode}", ("metrics", "classifiers", mode, "auc_mean"), ("metrics", "classifiers", mode, "auc_std"))
        for mode in ("cls-low", "cls-low-normed", "cls-high")
    ),
    ("FPD x1e3", ("metrics", "fpd", "value_x1e3"), ("metrics", "fpd", "error_x1e3")),
    ("KPD x1e3", ("metrics", "kpd", "value_x1e3"), ("metrics", "kpd", "error_x1e3")),
    ("chi2/NDF E_tot/E_inc", ("metrics", "energy_response", "chi2_per_ndf"), None),
    ("W1/std mean", ("metrics", "w1", "mean_normalised"), None),
    ("W1/std max", ("metrics", "w1", "max_normalised"), None),
    ("corr Frobenius", ("metrics", "layer_correlations", "frobenius"), None),
    ("corr split-half floor", ("metrics", "layer_correlations", "frobenius_split_half_floor"), None),
    *((f"PRDC {k}", ("metrics", "prdc", k), None) for k in ("precision", "recall", "density", "coverage")),
    ("showers/s", ("speed", "showers_per_s"), None),
    ("peak host RSS MiB", ("memory", "peak_host_rss_bytes"), None),
)
# fields two reports must share, unless forced
_MUST_MATCH = (("evaluator", "settings_hash"), ("reference", "sha256"))


@dataclass(frozen=True)
class ComparisonRow:
    name: str
    a: float | None
    b: float | None
    error: float | None  # sqrt(error_a^2 + error_b^2) when both have one

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


def load_report(path: Path) -> dict[str, Any]:
    """A quality report (``quality.json``), checked to be one."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"{path}: not a readable JSON quality report ({exc})") from None
    for section, key in _MUST_MATCH:
        if not isinstance(report, dict) or not isinstance(report.get(section), dict) or key not in report[section]:
            raise EvaluationError(f"{path}: not a quality report (no {section}.{key})")
    checked: dict[str, Any] = report
    return checked


def compare_reports(a: dict[str, Any], b: dict[str, Any], *, force: bool = False) -> list[ComparisonRow]:
    """The rows of the comparison; EvaluationError naming the field when the reports do not compare."""
    for section, key in _MUST_MATCH:
        left, right = a[section][key], b[section][key]
        if left != right and not force:
            raise EvaluationError(
                f"{section}.{key} differs ({left[:16]}... vs {right[:16]}...): the figures were made "
                f"{'with other evaluator settings' if section == 'evaluator' else 'against another reference file'}"
                " and do not compare (--force compares anyway)"
            )
    rows = []
    for name, path, error_path in _FIGURES:
        va, vb = _get(a, path), _get(b, path)
        if va is None and vb is None:
            continue
        if name.endswith("MiB"):
            va, vb = (None if v is None else v / 2**20 for v in (va, vb))
        ea, eb = (_get(r, error_path) if error_path else None for r in (a, b))
        error = math.hypot(ea, eb) if ea is not None and eb is not None else None
        rows.append(ComparisonRow(name, va, vb, error))
    return rows


def _get(report: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = report
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def render_comparison(a: dict[str, Any], b: dict[str, Any], rows: list[ComparisonRow]) -> str:
    """The printed table, headed by what A and B are (and a warning when they did not match)."""
    forced = any(a[section][key] != b[section][key] for section, key in _MUST_MATCH)
    lines = [f"A: {a.get('model')} version {a.get('version')}", f"B: {b.get('model')} version {b.get('version')}"]
    lines.append(f"evaluator settings {a['evaluator']['settings_hash'][:16]}, reference {a['reference'].get('file')}")
    if forced:
        lines.append("FORCED: the reports differ in evaluator settings or reference; the deltas may mean nothing")
    header = ("figure", "A", "B", "B - A", "+- combined")
    table = [header] + [(r.name, _cell(r.a), _cell(r.b), _cell(r.delta), _cell(r.error)) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        lines.append(
            "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
    return "\n".join(lines)

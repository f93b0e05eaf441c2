"""``metrics.json`` and ``index.html`` of an evaluation, both built from one metrics dictionary.

The JSON holds plain numbers (NaN written as null, so any JSON reader takes it); the HTML page shows the
headline table, the classifier, energy-response and separation-power tables, and every PNG written.
A file produced from stand-in data says so at the top of both.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from caloflow import __version__

if TYPE_CHECKING:
    from caloflow.evaluation.run import EvaluationResult

__all__ = ["CROP_NOTICE", "STANDIN_NOTICE", "is_standin", "metrics_dict", "write_reports"]

PRDC_KEYS = ("precision", "recall", "density", "coverage")
CROP_NOTICE = (
    "both files restricted to these cells (x0:x1,z0:z1 of every layer; zeros outside): "
    "the figures describe the crop region only, not the whole grid"
)
STANDIN_NOTICE = "stand-in data, not Geant4: these figures say nothing about the official datasets"


def is_standin(attrs: dict[str, Any]) -> bool:
    """True for files the stand-in generator wrote or models trained on stand-in data generated."""
    if attrs.get("trained_on_standin") or attrs.get("standin"):
        return True
    return any(isinstance(v, str) and "not geant4" in v.lower() for v in attrs.values())


def metrics_dict(result: EvaluationResult) -> dict[str, Any]:
    c = result.config
    metrics: dict[str, Any] = {
        "caloflow_version": __version__,
        "dataset": c.dataset,
        "particle": c.spec.particle,
        "metrics": list(c.metrics),
        "seed": c.seed,
        "runs": c.runs,
        "device": result.device,
        "min_energy_mev": c.cut_mev,
        "n_showers": len(result.reference),
        "files": {s.role: _file_entry(s) for s in (result.generated, result.reference)},
        "energy_multisets_equal": _same_multiset(result),
    }
    if c.crop is not None:
        metrics["crop"] = {"cells": c.crop, "note": CROP_NOTICE}
    if metrics["files"]["generated"]["standin"] or metrics["files"]["reference"]["standin"]:
        metrics["notice"] = STANDIN_NOTICE
    if result.histograms:
        metrics["separation_power"] = {h.name: h.separation_power for h in result.histograms}
    if result.energy is not None:
        metrics["energy_response"] = _energy_entry(result)
    if result.correlations is not None:
        metrics["layer_correlations"] = _correlation_entry(result)
    if result.w1:
        metrics["w1"] = _w1_entry(result)
    if result.prdc is not None:
        metrics["prdc"] = asdict(result.prdc) | {"features": "cls-high, standardised by the reference"}
    if result.classifiers:
        metrics["classifiers"] = {mode: _classifier_entry(r) for mode, r in result.classifiers.items()}
    for name, distance in (("fpd", result.fpd), ("kpd", result.kpd)):
        if distance is not None:
            metrics[name] = {
                "value": distance.value,
                "error": distance.error,
                "value_x1e3": distance.value * 1e3,
                "error_x1e3": distance.error * 1e3,
            }
    metrics["plots"] = [p.name for p in result.plots]
    metrics["seconds"] = dict(result.seconds)
    finite: dict[str, Any] = _finite(metrics)
    return finite


def _file_entry(sample: Any) -> dict[str, Any]:
    return {
        "path": str(sample.path),
        "n_in_file": sample.n_in_file,
        "n_used": len(sample),
        "standin": is_standin(sample.attrs),
        "description": str(sample.attrs.get("description", "")),
    }


def _same_multiset(result: EvaluationResult) -> bool:
    import numpy as np

    return bool(np.array_equal(np.sort(result.generated.incident_mev), np.sort(result.reference.incident_mev)))


def _energy_entry(result: EvaluationResult) -> dict[str, Any]:
    assert result.energy is not None
    return {
        "chi2": result.energy.chi2,
        "ndf": result.energy.ndf,
        "chi2_per_ndf": result.energy.chi2_per_ndf,
        "per_energy": [
            {
                "energy_mev": b.energy_mev,
                "n_reference": b.n_reference,
                "n_generated": b.n_generated,
                "chi2": b.chi2,
                "ndf": b.ndf,
                "chi2_per_ndf": b.chi2_per_ndf,
                "mean_ratio": b.mean_ratio,
                "rms_ratio": b.rms_ratio,
                "separation_power": b.histogram.separation_power,
                "energy_low_mev": b.energy_low_mev,
                "energy_high_mev": b.energy_high_mev,
                "mu90_reference": b.mu90[0],
                "mu90_generated": b.mu90[1],
                "resolution_reference": b.resolution[0],
                "resolution_generated": b.resolution[1],
            }
            for b in result.energy.bins
        ],
    }


def _w1_entry(result: EvaluationResult) -> dict[str, Any]:
    normalised = [d.normalised for d in result.w1 if math.isfinite(d.normalised)]
    return {
        "on": "samples (scipy.stats.wasserstein_distance of the per-shower values, not of histogram heights)",
        "mean_normalised": sum(normalised) / len(normalised) if normalised else None,
        "max_normalised": max(normalised) if normalised else None,
        "per_observable": {
            d.name: {"value": d.value, "normalised": d.normalised, "reference_std": d.reference_std} for d in result.w1
        },
    }


def _correlation_entry(result: EvaluationResult) -> dict[str, Any]:
    corr = result.correlations
    assert corr is not None
    return {
        "layer_ids": list(corr.layer_ids),
        "reference": corr.reference.tolist(),
        "generated": corr.generated.tolist(),
        "max_abs_difference": corr.max_abs_difference,
        "frobenius": corr.frobenius,
        "frobenius_split_half_floor": corr.split_half_floor,
        "n_constant_layers": corr.n_constant_layers,
    }


def _classifier_entry(r: Any) -> dict[str, Any]:
    return {
        "auc_mean": r.auc_mean,
        "auc_std": r.auc_std,
        "jsd_mean": r.jsd_mean,
        "jsd_std": r.jsd_std,
        "n_inputs": r.n_inputs,
        "split_per_class": asdict(r.split),
        "showers_per_class": r.split.train + r.split.test + r.split.validation,
        "settings": asdict(r.settings),
        "runs": [asdict(run) for run in r.runs],
    }


def _finite(value: Any) -> Any:
    """NaN and infinities become None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_reports(result: EvaluationResult) -> dict[str, Any]:
    metrics = metrics_dict(result)
    out = result.config.out
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "index.html").write_text(render_html(metrics))
    return metrics


# ------------------------------------------------------------------------------------------------ HTML


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _headline(m: dict[str, Any]) -> str:
    cls = m.get("classifiers", {})
    rows = [[mode, e["auc_mean"], e["auc_std"], e["jsd_mean"], e["jsd_std"], e["n_inputs"]] for mode, e in cls.items()]
    parts = []
    if rows:
        parts.append("<h2>Classifiers (label 0 generated, 1 reference; calibrated AUC and JSD)</h2>")
        parts.append(_table(["mode", "AUC mean", "AUC std", "JSD mean", "JSD std", "inputs"], rows))
    dist = [[n.upper(), m[n]["value_x1e3"], m[n]["error_x1e3"]] for n in ("fpd", "kpd") if n in m]
    if dist:
        parts.append("<h2>FPD and KPD on the high-level features (x 1e3)</h2>")
        parts.append(_table(["metric", "value x 1e3", "error x 1e3"], dist))
    if "prdc" in m:
        p = m["prdc"]
        parts.append(f"<h2>PRDC on the high-level features (k = {p['k']}, {p['n_reference']} reference showers)</h2>")
        parts.append(_table(["precision", "recall", "density", "coverage"], [[p[k] for k in PRDC_KEYS]]))
    if "layer_correlations" in m:
        c = m["layer_correlations"]
        parts.append("<h2>Layer-energy correlations: ||C_gen - C_ref||_F beside the reference's split-half floor</h2>")
        row = [c["frobenius"], c["frobenius_split_half_floor"], c["max_abs_difference"], c["n_constant_layers"]]
        parts.append(_table(["Frobenius", "split-half floor", "max |difference|", "constant layers skipped"], [row]))
    return "".join(parts)


def _energy_html(m: dict[str, Any]) -> str:
    if "energy_response" not in m:
        return ""
    e = m["energy_response"]
    rows = [
        [
            b["energy_mev"],
            b["n_reference"],
            b["n_generated"],
            b["chi2_per_ndf"],
            b["mean_ratio"],
            b["rms_ratio"],
            b["separation_power"],
            b["mu90_reference"],
            b["mu90_generated"],
            b["resolution_reference"],
            b["resolution_generated"],
        ]
        for b in e["per_energy"]
    ]
    header = ["E_inc [MeV]", "N ref", "N gen", "chi2/NDF", "mean ratio", "RMS ratio", "sep. power"]
    header += ["mu90 ref", "mu90 gen", "sigma90/mu90 ref", "sigma90/mu90 gen"]
    return (
        f"<h2>E_tot / E_inc per incident energy: chi2/NDF {_fmt(e['chi2_per_ndf'])} (chi2 {_fmt(e['chi2'])}, "
        f"NDF {e['ndf']})</h2>" + _table(header, rows)
    )


def _w1_html(m: dict[str, Any]) -> str:
    if "w1" not in m:
        return ""
    w = m["w1"]
    rows = [[name, e["value"], e["normalised"]] for name, e in w["per_observable"].items()]
    return (
        f"<h2>1-Wasserstein distance per observable, on the samples: mean W1/std_ref {_fmt(w['mean_normalised'])}, "
        f"max {_fmt(w['max_normalised'])}</h2>" + _table(["observable", "W1", "W1 / std(reference)"], rows)
    )


def _separation_html(m: dict[str, Any]) -> str:
    if "separation_power" not in m:
        return ""
    rows = [[name, value] for name, value in m["separation_power"].items()]
    return "<h2>Separation power per histogram</h2>" + _table(["histogram", "separation power"], rows)


def _file_html(entry: dict[str, Any]) -> str:
    return f"{html.escape(entry['path'])} ({entry['n_used']} of {entry['n_in_file']} showers)"


def render_html(m: dict[str, Any]) -> str:
    files = m["files"]
    notice = f'<p class="notice">{html.escape(m["notice"])}</p>' if "notice" in m else ""
    images = "".join(
        f'<figure><img src="{html.escape(name)}" alt="{html.escape(name)}"><figcaption>{html.escape(name)}'
        "</figcaption></figure>"
        for name in m["plots"]
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>caloflow evaluation: {html.escape(m["dataset"])}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #bbb;padding:2px 8px;text-align:right}} .notice{{background:#fee;padding:.5em;font-weight:bold}}
img{{max-width:100%}}</style></head><body>
<h1>Evaluation: {html.escape(m["dataset"])}</h1>{notice}
<p>generated: {_file_html(files["generated"])}; reference: {_file_html(files["reference"])};
voxels below {m["min_energy_mev"]} MeV set to 0; seed {m["seed"]};
{m["runs"]} classifier run(s); device {html.escape(m["device"])}; caloflow {html.escape(m["caloflow_version"])}.</p>
{_headline(m)}{_energy_html(m)}{_w1_html(m)}{_separation_html(m)}<h2>Plots</h2>{images}</body></html>
"""

"""Sampling a trained iCaloFlow run into its CaloChallenge file: ``caloflow sample RUN --flow teacher|student``.

Both chains run in the fast form (:func:`caloflow.families.icaloflow.fast.fast_icaloflow_sampler`: the same
function up to float rounding). ``teacher`` is flow-1 + the MAF flow-2 and flow-3 teachers (each MAF inverted one
feature per pass - slow, D passes per block and layer); ``student`` is flow-1 + the distilled IAF students,
the chain the server runs (in float32 here; the served artifact stores the students in float16).
``renormalise`` overrides the run's generation option (scale every generated layer to flow-1's energy before
the cut; method note 2.8) so both settings can be compared on one run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from caloflow.families.icaloflow.export import load_run
from caloflow.families.icaloflow.fast import fast_icaloflow_sampler
from caloflow.training.sampling import SampleSource, run_attrs

__all__ = ["icaloflow_sample_source"]

CHAINS = ("student", "teacher")


def icaloflow_sample_source(
    run_dir: str | Path, chain: str, seed: int, device: torch.device | str, renormalise: bool | None = None
) -> SampleSource:
    """The ``chain`` of an iCaloFlow run as a sample source; ``renormalise`` None keeps the run's setting."""
    if chain not in CHAINS:
        raise ValueError(f"--flow: an iCaloFlow run samples {' or '.join(CHAINS)}, not {chain!r}")
    run = load_run(run_dir)
    sampler = fast_icaloflow_sampler(run.sampler(chain, renormalise)).to(device)
    form = "MAF teachers" if chain == "teacher" else "IAF students"
    what = f"iCaloFlow {chain} chain samples ({form}, fast form)"
    attrs = run_attrs(run.record, run.directory, preset=run.preset.name, flow=chain, seed=seed, what=what)
    attrs.update(family="icaloflow", dataset=run.ds.name, renormalise=int(sampler.renormalise))
    return SampleSource(sampler, sampler.noise_dim, run.ds, attrs)

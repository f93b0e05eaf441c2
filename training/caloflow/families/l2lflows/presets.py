"""L2LFlows sizes: ``paper`` (documented, partly UNVERIFIED), ``small`` (the demo model), ``tiny`` (tests) and the
full-grid ``full`` / ``tiny-full`` (beyond the paper).

The original's MADE/RQS sizes are not public (method note 3.2, 8.1: UNVERIFIED). ``paper`` therefore takes:

* flow-I: ConvL2LFlow's ILD energy flow ``MAFlow`` (note 3.2: 6 RQS-MADE blocks, 1 hidden block of 64,
  8 bins, random permutations) - the best public proxy;
* the 30 layer teachers: the note's recommended default [EST] of 8 RQS-MADE blocks, K = 8, one hidden layer
  of 256 units, on the 10 x 10 crop with the slides' 5-layer window (context 2 ... 502);
* the 30 IAF students (beyond the paper): the teachers' shape (our choice; the slides only say "work in
  progress");
* schedules: ConvL2LFlow's recipe as a proxy (note 3.4: batch 1024, 200 epochs).

``caloflow train all --dataset ild-photon --preset paper --dry-run`` prints the resulting parameter counts
(note 3.2 estimates ~6 M per layer flow, ~180 M in total; the published count is UNVERIFIED).

``small`` is sized for 2 CPU cores and the 25 MB budget of a served model: 2 blocks of 4-bin splines, the
narrowest exact MADE (H = D - 1). ``tiny`` covers a 4 x 4 crop so that tests run the whole chain in seconds;
it is not expected to be good.

``full`` (issue 15 item 3, beyond the paper) covers the whole 30 x 30 grid: every layer flow is over all 900
cells. Two choices keep it servable:

* the context: each previous image enters summed over 3 x 3 cell blocks (``context_pool`` 3: a 10 x 10 image of
  the blocks' energy shares, :class:`~caloflow.families.l2lflows.context.ContextPooling`), a fixed per-image map,
  so the context is 2 + 100 x min(i, 5) wide as in the crop model (uncompressed it would be 2 + 4 500), no
  parameter is added and a layer still never sees a later one (gradient tests in ``tests/test_l2lflows_full.py``);
* the MADE: an exact MADE over 900 cells (H = 899) with 4-bin splines is ~8.9 M weights per block: 0.5-1 GB
  of float16 students for 30 layers x 2 blocks. ``full`` takes H = 32 (``FULL_HIDDEN``) and 2-bin splines:
  the served students are 11.6 M parameters (the exported graph of random weights measured 23.3 MB; with 4-bin
  splines 45.5 MB, over the 25 MB budget). With H < D - 1 the MADE covers degrees 1 .. 32 only: in each block,
  the cells after the first 32 of that block's order depend on those 32 cells and on the context, not on each
  other. The layer order is raster (x outer, z inner) and the second block sees it reversed, so the coupled
  cells are the grid's edge rows, which are nearly always empty: per layer, ``full`` is close to a factorised
  model given the pooled previous layers, E_i and E_inc. A centre-out cell order would couple the core instead
  (not done).

Measured costs and the halo the crop loses are in the README's L2LFlows section (``caloflow.families.l2lflows.
cost`` and ``caloflow.families.l2lflows.halo``). ``tiny-full`` is ``full``'s shape at test size (H = 8, one
block, 2 bins).
"""

from __future__ import annotations

from dataclasses import dataclass

from caloflow.data.datasets import Dataset
from caloflow.training.presets import Flow1Config, Preset, PresetName, Schedule, StudentConfig, TeacherConfig

__all__ = ["L2L_PRESET_NAMES", "L2LPreset", "get_l2l_preset"]

L2L_PRESET_NAMES: tuple[PresetName, ...] = ("paper", "small", "tiny", "full", "tiny-full")


FULL_HIDDEN = 32
"""The ``full`` preset's MADE width (see the module docstring: what keeps the served chain under 25 MB)."""


@dataclass(frozen=True)
class L2LPreset(Preset):
    """The project's preset (flow-I, the layer teachers, the layer students, spline size) plus L2LFlows' own."""

    crop_cells: int = 10
    """Side of the lateral crop (10: the faithful 10 x 10; the grid's side: the whole layer)."""
    window: int = 5
    """Previous layers in a layer flow's context (the slides: 5)."""
    context_pool: int = 1
    """Previous images enter a context summed over ``context_pool`` x ``context_pool`` blocks (1: as they are)."""
    generated_context_fraction: float = 0.5
    """Share of each student batch whose z-path contexts are the student chain's own previous layers."""

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> L2LPreset:
        values = dict(data)
        sections = {"flow1": Flow1Config, "teacher": TeacherConfig, "student": StudentConfig}
        for key, kind in sections.items():
            section = dict(values[key])  # type: ignore[call-overload]
            section["schedule"] = Schedule(**section["schedule"])
            values[key] = kind(**section)
        return cls(**values)  # type: ignore[arg-type]


def _paper(particle: str) -> L2LPreset:
    flow1 = Flow1Config(
        hidden=64, n_hidden_blocks=1, n_blocks=6, schedule=Schedule(batch_size=1024, epochs=200, max_lr=1e-3)
    )
    teacher = TeacherConfig(hidden=256, n_blocks=8, dropout=0.0, schedule=Schedule(batch_size=1024, epochs=200))
    student = StudentConfig(hidden=256, dropout=0.0, schedule=Schedule(batch_size=1024, epochs=100))
    return L2LPreset("paper", particle, flow1, teacher, student, crop_cells=10, window=5)


def _small(particle: str, cells: int) -> L2LPreset:
    flow1 = Flow1Config(hidden=64, n_hidden_blocks=1, n_blocks=4, schedule=Schedule(batch_size=500, epochs=20))
    teacher = TeacherConfig(
        hidden=cells - 1, n_blocks=2, dropout=0.0, schedule=Schedule(batch_size=256, epochs=6, pct_start=0.3)
    )
    student = StudentConfig(
        hidden=cells - 1,
        dropout=0.0,
        kl_eval_size=500,
        schedule=Schedule(batch_size=256, epochs=4, max_train_batches=100, pct_start=0.3),
    )
    return L2LPreset("small", particle, flow1, teacher, student, bins=4, crop_cells=10, window=5)


def _tiny(particle: str, cells: int) -> L2LPreset:
    quick = Schedule(batch_size=64, epochs=2, max_train_batches=3, pct_start=0.3)
    flow1 = Flow1Config(hidden=32, n_hidden_blocks=1, n_blocks=2, schedule=quick)
    teacher = TeacherConfig(hidden=cells - 1, n_blocks=2, dropout=0.0, schedule=quick)
    student = StudentConfig(hidden=cells - 1, dropout=0.0, kl_eval_size=64, nll_eval_size=8, schedule=quick)
    return L2LPreset("tiny", particle, flow1, teacher, student, bins=4, crop_cells=4, window=5)


def _full(particle: str, hidden: int) -> L2LPreset:
    flow1 = Flow1Config(hidden=64, n_hidden_blocks=1, n_blocks=4, schedule=Schedule(batch_size=500, epochs=20))
    teacher = TeacherConfig(
        hidden=hidden, n_blocks=2, dropout=0.0, schedule=Schedule(batch_size=256, epochs=6, pct_start=0.3)
    )
    student = StudentConfig(
        hidden=hidden,
        dropout=0.0,
        kl_eval_size=500,
        schedule=Schedule(batch_size=256, epochs=4, max_train_batches=100, pct_start=0.3),
    )
    return L2LPreset("full", particle, flow1, teacher, student, bins=2, crop_cells=30, window=5, context_pool=3)


def _tiny_full(particle: str) -> L2LPreset:
    quick = Schedule(batch_size=32, epochs=1, max_train_batches=2, pct_start=0.3)
    flow1 = Flow1Config(hidden=32, n_hidden_blocks=1, n_blocks=2, schedule=quick)
    teacher = TeacherConfig(hidden=8, n_blocks=1, dropout=0.0, schedule=quick)
    student = StudentConfig(hidden=8, dropout=0.0, kl_eval_size=32, nll_eval_size=8, schedule=quick)
    return L2LPreset("tiny-full", particle, flow1, teacher, student, bins=2, crop_cells=30, window=5, context_pool=3)


def get_l2l_preset(name: str, ds: Dataset) -> L2LPreset:
    """The preset ``name`` for ``ds``; sizes tied to the crop take its cells per layer (``crop_cells`` squared)."""
    if name == "paper":
        return _paper(ds.particle)
    if name == "small":
        return _small(ds.particle, 10 * 10)
    if name == "tiny":
        return _tiny(ds.particle, 4 * 4)
    if name == "full":
        return _full(ds.particle, FULL_HIDDEN)
    if name == "tiny-full":
        return _tiny_full(ds.particle)
    raise ValueError(f"unknown L2LFlows preset {name!r}; expected one of {list(L2L_PRESET_NAMES)}")

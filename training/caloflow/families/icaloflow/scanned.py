"""The iCaloFlow generator with its two long loops as ONNX ``Scan`` loops, for export: the graph holds one copy of
flow-1's pass and one of the flow-3 step instead of 360 and 44.

* flow-1 (MAF): in the fast form, the one-feature-per-pass inverse scanned over the 45 features
  (:class:`~caloflow.export.scanned_fast.ScannedMAFInverse`); in the plain form, the D-pass solve scanned
  (:class:`~caloflow.export.scanned.ScannedSampling`);
* the 44 flow-3 steps: one shared flow-3 applied 44 times, :meth:`GenerationChain.step` scanned over the layers
  with the carry the generated previous layer and the per-step inputs (flow-3 latent, dequantisation noise,
  E_n and what :meth:`GenerationChain.prepare_flow3` computed once for all steps: in the fast form the constant
  part of each block's context term, in the plain form the static conditions and the one-hot) as the scanned
  inputs.

Same arithmetic in the same order as the chain it is built from. Export of the ``tiny`` preset: seconds instead
of the 7-12 minutes of the unrolled graph (README, iCaloFlow section).
"""

from __future__ import annotations

import copy

from torch import Tensor, nn
from torch._higher_order_ops.scan import scan

from caloflow.export.scanned import ScannedSampling
from caloflow.export.scanned_fast import scan_maf_inverses
from caloflow.families.icaloflow.fast import FastICaloFlowSampler
from caloflow.families.icaloflow.sampler import GenerationChain, ICaloFlowSampler

__all__ = ["ScannedGeneration", "scanned_generation"]


class ScannedGeneration(GenerationChain):
    """``chain`` (an eval-mode copy whose flow-1 is already scanned) with the flow-3 loop scanned."""

    def __init__(self, chain: GenerationChain) -> None:
        super().__init__(chain.cond, chain.threshold_mev, chain.renormalise)
        self.chain = chain

    def sample_flow1(self, z: Tensor, c: Tensor) -> Tensor:
        return self.chain.sample_flow1(z, c)

    def sample_flow2(self, z: Tensor, c: Tensor) -> Tensor:
        return self.chain.sample_flow2(z, c)

    def prepare_flow3(self, static: Tensor, codes: Tensor) -> list[Tensor]:
        return self.chain.prepare_flow3(static, codes)

    def sample_flow3(self, z: Tensor, previous_logit: Tensor, prepared: list[Tensor]) -> Tensor:
        return self.chain.sample_flow3(z, previous_logit, prepared)

    def flow3_loop(self, layer0: Tensor, per_step: list[Tensor]) -> Tensor:
        def one_step(previous: Tensor, x: list[Tensor]) -> tuple[Tensor, Tensor]:
            layer = self.step(previous, x)
            return layer, layer.clone()

        _, layers = scan(one_step, layer0, per_step)  # (L - 1, B, layer size)
        out: Tensor = layers.transpose(0, 1).reshape(layer0.shape[0], -1)
        return out


def scanned_generation(chain: GenerationChain) -> ScannedGeneration:
    """The scanned form of an eager :class:`ICaloFlowSampler` or a :class:`FastICaloFlowSampler` (a copy)."""
    prepared = copy.deepcopy(chain).eval().requires_grad_(False)
    flow1: nn.Module
    if isinstance(prepared, FastICaloFlowSampler):
        flow1 = scan_maf_inverses(prepared.flow1)
    elif isinstance(prepared, ICaloFlowSampler):
        flow1 = ScannedSampling(prepared.flow1)
    else:
        raise TypeError(f"no scanned form for {type(chain).__name__}")
    prepared.add_module("flow1", flow1)
    return ScannedGeneration(prepared).eval()

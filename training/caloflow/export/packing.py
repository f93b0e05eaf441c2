"""Export-ready copies of a sampler: MADE masks folded, the flow-II student optionally packed.

Every :class:`~caloflow.flows.MaskedLinear` of a MADE keeps ``W[i, j]`` only where the degree rule
``out_degree[i] - in_degree[j] >= offset`` holds (offset 0 for input and hidden layers, 1 for the output
layer), so about half of each matrix is structurally zero. Two export forms:

* **dense** (``compact=False``): every masked layer becomes a plain ``nn.Linear`` holding ``W * mask`` in
  float32.
* **compact** (``compact=True``): the flow-II (student) layers become :class:`PackedMaskedLinear`, which
  stores only the kept entries, row-major, rounded to float16 once, plus the two small degree vectors; the
  graph rebuilds the dense float32 weight from them with static-shape ops (compare degrees -> mask, cumsum
  of the mask -> index into ``[0, packed...]``, gather, reshape). Everything feeding the rebuild is a
  constant, so ONNX Runtime folds it into a dense initializer when the session is created and the run-time
  graph is a plain Gemm. :class:`MaterializingPackedLinear` is the TorchScript variant: ``materialize()``
  rebuilds the weight once and keeps it; before that every call rebuilds it.

Flow-I stays dense float32 in both forms: it is 1-2 % of the parameters, it alone sets the layer energies
(the showers are renormalised to them), and as a MAF it runs its MADE once per feature, so a packed
flow-I would repeat the rebuild (and, in ONNX, its folded constant) D times per block.

:func:`folded_copy` with ``float16=True`` gives the eager sampler with exactly the weights a compact
artifact holds, the reference for parity checks. Biases and the context layers stay float32.

(No ``from __future__ import annotations`` here: TorchScript must see the class annotations as types.)
"""

import copy
import warnings
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from caloflow.flows import MADE, MaskedLinear
from caloflow.flows.made import input_degrees
from caloflow.sampler import CaloFlowSampler

__all__ = [
    "MaterializingPackedLinear",
    "PackedMaskedLinear",
    "dense_masked_weight",
    "fold_flow_weights",
    "folded_copy",
    "prepare_for_export",
    "replace_made_layers",
]


def dense_masked_weight(layer: MaskedLinear) -> Tensor:
    """``W`` with masked entries exactly 0 (a new tensor, float32)."""
    return torch.where(layer.mask.bool(), layer.weight.detach(), torch.zeros_like(layer.weight)).float()


def _degree_offset(layer: MaskedLinear, in_degrees: Tensor) -> int:
    """0 if the layer keeps ``out >= in``, 1 if it keeps ``out > in``; anything else is refused."""
    difference = layer.degrees[:, None].cpu() - in_degrees[None, :].cpu()
    mask = layer.mask.bool().cpu()
    for offset in (0, 1):
        if torch.equal(mask, difference >= offset):
            return offset
    raise ValueError("MaskedLinear mask does not follow the MADE degree rule; cannot pack it")


class PackedMaskedLinear(nn.Module):
    """``F.linear(x, W, b)`` with ``W`` rebuilt in the graph from its unmasked float16 entries."""

    packed: Tensor
    in_degrees: Tensor
    out_degrees: Tensor
    bias: Tensor

    def __init__(self, packed: Tensor, in_degrees: Tensor, out_degrees: Tensor, offset: int, bias: Tensor) -> None:
        super().__init__()
        self.register_buffer("packed", packed.to(torch.float16))
        self.register_buffer("in_degrees", in_degrees.to(torch.int32))
        self.register_buffer("out_degrees", out_degrees.to(torch.int32))
        self.register_buffer("bias", bias.detach().float().clone())
        self.offset = offset

    def mask(self) -> Tensor:
        """(out, in) bool mask from the degree vectors."""
        return (self.out_degrees[:, None] - self.in_degrees[None, :]) >= self.offset

    def dense_weight(self) -> Tensor:
        """The (out, in) float32 weight: the k-th kept entry (row-major) is ``packed[k]``, the rest 0."""
        keep = self.mask()
        flat = keep.reshape(-1).to(torch.int64)
        index = torch.cumsum(flat, dim=0) * flat  # 1-based position among kept entries, 0 where masked
        values = torch.cat([torch.zeros(1, dtype=torch.float32, device=self.packed.device), self.packed.float()])
        return values[index].reshape(keep.shape)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.dense_weight(), self.bias)


class MaterializingPackedLinear(PackedMaskedLinear):
    """TorchScript variant: ``materialize()`` keeps the rebuilt weight; until then each call rebuilds it."""

    weight: Tensor

    def __init__(self, packed: Tensor, in_degrees: Tensor, out_degrees: Tensor, offset: int, bias: Tensor) -> None:
        super().__init__(packed, in_degrees, out_degrees, offset, bias)
        self.register_buffer("weight", torch.empty(0))

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight if self.weight.numel() > 0 else self.dense_weight()
        return F.linear(x, weight, self.bias)

    @torch.jit.export
    def materialize(self) -> Tensor:
        """Rebuild and keep the dense weight; returns its number of entries (a 0-d int64 tensor)."""
        self.weight = self.dense_weight()
        return torch.tensor(self.weight.numel())

    @torch.jit.export
    def release(self) -> None:
        """Drop the dense weight again (before saving, so the artifact stays compact)."""
        self.weight = torch.empty(0, device=self.packed.device)


def _packed(layer: MaskedLinear, in_degrees: Tensor, materializing: bool) -> PackedMaskedLinear:
    offset = _degree_offset(layer, in_degrees)
    values = layer.weight.detach()[layer.mask.bool()]
    cls = MaterializingPackedLinear if materializing else PackedMaskedLinear
    return cls(values, in_degrees, layer.degrees, offset, layer.bias.detach())


def _dense(layer: MaskedLinear) -> nn.Linear:
    linear = nn.Linear(layer.in_features, layer.out_features, device=layer.weight.device)
    with torch.no_grad():
        linear.weight.copy_(dense_masked_weight(layer))
        linear.bias.copy_(layer.bias.detach())
    return linear.requires_grad_(False)


def _made_layers(made: MADE) -> list[tuple[nn.Module, str, MaskedLinear, Tensor]]:
    """(parent, attribute, layer, input degrees) for every masked layer of ``made``, in order."""
    hidden = made.initial_layer.degrees
    layers: list[tuple[nn.Module, str, MaskedLinear, Tensor]] = [
        (made, "initial_layer", made.initial_layer, input_degrees(made.features))
    ]
    for block in made.blocks:
        layers.append((block, "linear", cast(MaskedLinear, block.linear), hidden))
    layers.append((made, "final_layer", made.final_layer, hidden))
    return layers


def _mades(flow: nn.Module) -> list[MADE]:
    return [m for m in flow.modules() if isinstance(m, MADE)]


def prepare_for_export(sampler: CaloFlowSampler, *, compact: bool, materializing: bool = False) -> CaloFlowSampler:
    """An eval-mode copy of ``sampler`` whose MADE layers are dense ``nn.Linear`` (masks folded) or, with
    ``compact``, flow-II's are :class:`PackedMaskedLinear` (:class:`MaterializingPackedLinear` with
    ``materializing``, each scripted, for TorchScript). ``sampler`` itself is not changed."""
    prepared = copy.deepcopy(sampler).eval().requires_grad_(False)
    for flow in (prepared.flow1, prepared.flow2):
        replace_made_layers(flow, packing=compact and flow is prepared.flow2, materializing=materializing)
    return prepared


def replace_made_layers(flow: nn.Module, *, packing: bool, materializing: bool = False) -> None:
    """In place: every MADE layer of ``flow`` becomes a dense ``nn.Linear`` or, with ``packing``, a
    :class:`PackedMaskedLinear` (scripted :class:`MaterializingPackedLinear` with ``materializing``).
    Any model family's sampler prepares its flows with this (see :func:`prepare_for_export`)."""
    for made in _mades(flow):
        for parent, name, layer, in_degrees in _made_layers(made):
            replacement: nn.Module = _packed(layer, in_degrees, materializing) if packing else _dense(layer)
            if packing and materializing:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.x
                    replacement = torch.jit.script(replacement)
            setattr(parent, name, replacement)


def folded_copy(sampler: CaloFlowSampler, *, float16: bool) -> CaloFlowSampler:
    """An eval-mode copy of ``sampler`` with the MADE masks folded (masked entries exactly 0) and, with
    ``float16``, flow-II's MADE weights rounded to float16 and back: the eager model an artifact holds."""
    folded = copy.deepcopy(sampler).eval().requires_grad_(False)
    for flow in (folded.flow1, folded.flow2):
        fold_flow_weights(flow, float16=float16 and flow is folded.flow2)
    return folded


def fold_flow_weights(flow: nn.Module, *, float16: bool) -> None:
    """In place: fold every MADE mask of ``flow`` into its weight and, with ``float16``, round the weights to
    float16 and back, as :func:`replace_made_layers` with ``packing`` stores them (see :func:`folded_copy`)."""
    for layer in [m for m in flow.modules() if isinstance(m, MaskedLinear)]:
        weight = dense_masked_weight(layer)
        with torch.no_grad():
            layer.weight.copy_(weight.half().float() if float16 else weight)
        layer.fold_mask()

"""The layer chain as one flow step scanned over the layers, for export: the graph holds one layer flow's ops
(an ONNX ``Scan`` over the layers) instead of one copy per layer.

Unrolled, the 30-layer chain of the ``tiny`` preset alone was ~8 000 graph nodes and its export took minutes
(torch.export 56-106 s plus 311 s of ONNX conversion for the whole sampler). Here every layer flow's
parameters and buffers are stacked along a leading layer axis and :func:`torch._higher_order_ops.scan` runs one
:func:`torch.func.functional_call` of a template flow per layer. Layer flows differ only in their context
width (layers ``0 .. window - 1`` see fewer previous images), so each context layer's weight is padded with
zero columns to the full width: the missing previous images enter as zeros times zero weights, the same
pre-activation as the narrow layer up to float rounding. The carry is the window of the most recent images,
most recent first, exactly the order of :func:`caloflow.families.l2lflows.context.layer_context`; with a
context compression (the full-grid presets) the carry holds the compressed images.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch._higher_order_ops.scan import scan
from torch.func import functional_call

from caloflow.export.onnx_float16 import DEFAULT_MIN_ELEMENTS, is_float16_exact
from caloflow.export.scanned import ScannedSampling
from caloflow.families.l2lflows.context import ContextPooling
from caloflow.families.l2lflows.models import LayerFlows
from caloflow.families.l2lflows.sampler import L2LSampler
from caloflow.flows import Flow, MaskedLinear

__all__ = ["ScannedChain", "scanned_sampler"]

CONTEXT_WEIGHT = "context_layer.weight"
UNUSED_WHEN_SAMPLING = (".mask", ".degrees")
"""Buffers a folded MADE does not read when sampling: not stacked."""
CONDITIONS = 2
"""The last two context columns: the layer energy's and E_inc's conditions."""


def _pad_context(weight: Tensor, width: int) -> Tensor:
    """(H, w) -> (H, width): the image columns first, zero columns, then the two conditions' columns."""
    padded = weight.new_zeros(weight.shape[0], width)
    images = weight.shape[1] - CONDITIONS
    padded[:, :images] = weight[:, :images]
    padded[:, -CONDITIONS:] = weight[:, -CONDITIONS:]
    return padded


def _state(flow: nn.Module) -> dict[str, Tensor]:
    """Every parameter and buffer by name, the non-persistent ones too (a permutation's inverse index)."""
    return {**dict(flow.named_parameters()), **dict(flow.named_buffers())}


def _stacked_state(layers: LayerFlows, width: int) -> dict[str, Tensor]:
    """Every layer flow's parameters and buffers stacked on a new axis 0 (context weights padded to ``width``)."""
    states = [_state(layer) for layer in layers]
    stacked: dict[str, Tensor] = {}
    for name in states[-1]:
        if name.endswith(UNUSED_WHEN_SAMPLING):
            continue  # the template's own (the MADE degrees are the same in every layer; masks are folded)
        values = [s[name] for s in states]
        if name.endswith(CONTEXT_WEIGHT):
            values = [_pad_context(v, width) for v in values]
        stacked[name] = torch.stack([v.detach() for v in values]).clone()
    return stacked


class _Stacked(nn.Module):
    """One stacked tensor (L, ...). Compact (``half``), a MADE weight float16 holds exactly keeps only its kept
    entries - the mask is the same in every layer - in float16, as :class:`~caloflow.export.packing.
    PackedMaskedLinear` does for one layer; ``value()`` rebuilds the float32 stack from constants (ONNX Runtime
    folds that subgraph into a dense initializer when the session is created). Anything else stays as it is."""

    values: Tensor
    keep: Tensor

    def __init__(self, tensor: Tensor, mask: Tensor | None, half: bool) -> None:
        super().__init__()
        exact = is_float16_exact(tensor.detach().cpu().numpy()) and tensor.numel() >= DEFAULT_MIN_ELEMENTS
        self.packing = bool(half and exact and mask is not None)
        if self.packing and mask is not None:
            keep = mask.bool()
            self.register_buffer("values", tensor[:, keep].half())
            self.register_buffer("keep", keep)
        else:
            self.register_buffer("values", tensor)

    def value(self) -> Tensor:
        values, keep = self.values, self.keep if self.packing else None
        if keep is None:
            return values
        flat = keep.reshape(-1).to(torch.int64)
        index = torch.cumsum(flat, dim=0) * flat  # 1-based position among the kept entries, 0 where masked
        padded = torch.cat([values.new_zeros(values.shape[0], 1).float(), values.float()], dim=1)
        return padded[:, index].reshape(values.shape[0], *keep.shape)


def _masks(flow: nn.Module) -> dict[str, Tensor]:
    """``{weight name: mask}`` of every MADE masked layer of ``flow``."""
    return {f"{name}.weight": module.mask for name, module in flow.named_modules() if isinstance(module, MaskedLinear)}


class _Sampling(nn.Module):
    """``forward`` is the flow's sampling direction (``functional_call`` calls ``forward``)."""

    def __init__(self, flow: Flow) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, noise: Tensor, c: Tensor) -> Tensor:
        sample: Tensor = self.flow.sample(noise, c)
        return sample


class ScannedChain(nn.Module):
    """``forward(noise (B, L, C), energy_condition (B, L), incident_condition (B, 1)) -> images (B, L, C)``:
    flow i samples its image from ``noise[:, i]`` given the previous ``window`` images, E_i and E_inc."""

    def __init__(
        self,
        layers: LayerFlows,
        window: int,
        cells_per_layer: int,
        *,
        half: bool = False,
        pooling: ContextPooling | None = None,
    ) -> None:
        super().__init__()
        self.template = _Sampling(copy.deepcopy(layers.flow(len(layers) - 1)).eval().requires_grad_(False))
        self.window = window
        self.pooling = pooling
        self.cells_per_layer = cells_per_layer if pooling is None else pooling.cells
        """Cells of one carried (compressed) previous image."""
        self.width = CONDITIONS + window * self.cells_per_layer
        stacked = _stacked_state(layers, self.width)
        self.names = list(stacked)
        masks = _masks(self.template.flow)
        self.stacked = nn.ModuleList(_Stacked(stacked[name], masks.get(name), half) for name in self.names)

    def _stacked(self) -> dict[str, Tensor]:
        """The stacked state in float32, as ``functional_call`` takes it."""
        return {f"flow.{name}": cast(_Stacked, t).value() for name, t in zip(self.names, self.stacked, strict=True)}

    def forward(self, noise: Tensor, energy_condition: Tensor, incident_condition: Tensor) -> Tensor:
        batch = noise.shape[0]
        recent = noise.new_zeros(batch, self.window * self.cells_per_layer)
        xs = {
            "noise": noise.transpose(0, 1),
            "energy": energy_condition.transpose(0, 1).unsqueeze(-1),
            "incident": incident_condition.unsqueeze(0).expand(noise.shape[1], -1, -1),
            "state": self._stacked(),
        }
        images: Tensor = scan(self._step, recent, xs)[1]
        return images.transpose(0, 1)

    def _step(self, recent: Tensor, x: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Layer i: its context from the carried window, E_i and E_inc; the window shifted by its image."""
        context = torch.cat([recent, x["energy"], x["incident"]], dim=1)
        inputs = (x["noise"], context)
        image: Tensor = functional_call(self.template, x["state"], inputs, strict=False, tie_weights=False)
        carried = image if self.pooling is None else self.pooling(image)
        shifted = torch.cat([carried, recent[:, : -self.cells_per_layer]], dim=1) if self.window > 1 else carried
        return shifted, image.clone()


def scanned_sampler(sampler: L2LSampler, *, half: bool = False) -> L2LSampler:
    """A copy of ``sampler`` that samples flow-I with :class:`~caloflow.export.scanned.ScannedSampling` and the
    layer chain with :class:`ScannedChain` (``half``: the float16-exact stacked weights stored in float16)."""
    scanned = copy.deepcopy(sampler)
    scanned.flow1 = ScannedSampling(cast(Flow, sampler.flow1))
    scanned.chain = ScannedChain(
        sampler.layers, sampler.window, sampler.cells_per_layer, half=half, pooling=sampler.pooling
    )
    scanned.layers = LayerFlows()  # the loop's flows are not in the export (the chain holds their weights)
    return scanned.eval().requires_grad_(False)

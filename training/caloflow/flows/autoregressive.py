"""One autoregressive RQS block, used both as MAF and as IAF block (method note 3.1, 3.4).

The two differ only in which side of the spline the MADE reads:

* MAF (``inverse_autoregressive=False``): ``z = RQS(x; theta(x, c))``. The density direction x -> z is
  one MADE pass; the sampling direction z -> x needs D sequential passes.
* IAF (``inverse_autoregressive=True``): ``x = RQS^-1(z; theta(z, c))``. The sampling direction z -> x
  is one MADE pass; the density direction x -> z needs D sequential passes.

Both directions return the raw MADE output (B, D, 3K - 1) of the very call whose spline produced the
result (in a D-pass solve: the last pass, whose parameters are exact), for distillation.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from caloflow.flows.made import MADE
from caloflow.flows.spline import SplineConfig, rqs_forward, rqs_inverse

__all__ = ["AutoregressiveRQS", "BlockOutput"]


class BlockOutput(NamedTuple):
    """Result of one block call.

    ``out`` is the transformed tensor (B, D); ``ladj`` (B,) is ``log|det d out / d input|`` of the map
    that was computed (x -> z for ``forward``, z -> x for ``inverse``); ``params`` (B, D, 3K - 1) is the
    raw MADE output fed to the spline.
    """

    out: Tensor
    ladj: Tensor
    params: Tensor


class AutoregressiveRQS(nn.Module):
    """A MADE-conditioned rational-quadratic spline over ``features`` coordinates."""

    def __init__(
        self,
        features: int,
        context: int,
        hidden: int,
        n_hidden_blocks: int = 1,
        dropout: float = 0.0,
        spline: SplineConfig | None = None,
        inverse_autoregressive: bool = False,
        allow_incomplete_degrees: bool = False,
    ) -> None:
        super().__init__()
        self.spline = spline if spline is not None else SplineConfig()
        self.inverse_autoregressive = inverse_autoregressive
        self.features = features
        self.autoregressive_net = MADE(
            features,
            hidden,
            context,
            self.spline.params_per_feature,
            n_hidden_blocks=n_hidden_blocks,
            dropout=dropout,
            allow_incomplete_degrees=allow_incomplete_degrees,
        )

    def forward(self, x: Tensor, c: Tensor) -> BlockOutput:
        """Density direction x -> z (one MADE pass for MAF, D passes for IAF)."""
        if self.inverse_autoregressive:
            return self._solve(x, c, to_latent=True)
        return self._one_pass(x, c, to_latent=True)

    def inverse(self, z: Tensor, c: Tensor) -> BlockOutput:
        """Sampling direction z -> x (one MADE pass for IAF, D passes for MAF)."""
        if self.inverse_autoregressive:
            return self._one_pass(z, c, to_latent=False)
        return self._solve(z, c, to_latent=False)

    def _spline(self, v: Tensor, params: Tensor, to_latent: bool) -> tuple[Tensor, Tensor]:
        s = self.spline
        function = rqs_forward if to_latent else rqs_inverse
        out, ladj = function(v, params, s.tail_bound, s.min_bin_width, s.min_bin_height, s.min_derivative)
        return out, ladj.sum(dim=-1)

    def _one_pass(self, v: Tensor, c: Tensor, to_latent: bool) -> BlockOutput:
        """The MADE reads the block input ``v``."""
        params: Tensor = self.autoregressive_net(v, c)
        out, ladj = self._spline(v, params, to_latent)
        return BlockOutput(out, ladj, params)

    def _solve(self, v: Tensor, c: Tensor, to_latent: bool) -> BlockOutput:
        """The MADE reads the block output: fixed-point iteration, exact after D passes.

        After pass k the first k coordinates (in MADE degree order) are final. With dropout active
        (training mode) every pass draws a new mask, so use eval mode for an exact inverse.
        """
        out = torch.zeros_like(v)
        params = torch.zeros(*v.shape, self.spline.params_per_feature, dtype=v.dtype, device=v.device)
        ladj = torch.zeros_like(v[..., 0])
        for _ in range(self.features):
            params = self.autoregressive_net(out, c)
            out, ladj = self._spline(v, params, to_latent)
        return BlockOutput(out, ladj, params)

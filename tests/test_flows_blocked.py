"""BlockedIAF's eager group slabs: the function of the one-group block, and of the path a trace records."""

from __future__ import annotations

import pytest
import torch

from caloflow.flows.autoregressive import AutoregressiveRQS
from caloflow.flows.blocked import BlockedIAF


def _student_block(features: int, seed: int = 3) -> AutoregressiveRQS:
    torch.manual_seed(seed)
    block = AutoregressiveRQS(features, context=3, hidden=2 * features, inverse_autoregressive=True).eval()
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.normal_(0.0, 0.4)  # away from the identity initialisation: every spline bends
    return block


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
@pytest.mark.parametrize(("features", "slabs"), [(12, True), (10, False)])
def test_group_slabs_sample_what_one_group_samples(features: int, slabs: bool) -> None:
    block = _student_block(features)
    generator = torch.Generator().manual_seed(4)
    z = 3.0 * torch.randn(9, features, generator=generator)
    c = torch.randn(9, 3, generator=generator)
    grouped, single = BlockedIAF(block, groups=4), BlockedIAF(block, groups=1)
    assert grouped._equal_groups is slabs  # 12 features: 4 groups of 3; 10: widths 2, 3, 3, 2
    with torch.no_grad():
        eager, reference = grouped(z, c), single(z, c)
        traced = torch.jit.trace(grouped, (z, c), check_trace=False)(z, c)  # records the joined path
    assert (eager - z).abs().max() > 0.1
    torch.testing.assert_close(eager, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(traced, reference, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(eager[:, 3:], reference[:, :-3], rtol=1e-5, atol=1e-5)

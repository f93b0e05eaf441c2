"""A fresh student starts from its teacher's mean spline parameters (issue 18, the photon student's layer 0).

The MADE's first features of a block read few hidden units (the first reads none), so under Adam their
parameters move by about the learning rate per step; :func:`match_output_bias` sets them once, before
training, instead of leaving them at the fresh student's values.
"""

import torch

from caloflow.flows import Flow, SplineConfig, build_student, build_teacher
from caloflow.training import distillation as dist

LAYERS = (4, 6, 3)
CONTEXT = 2


def _pair() -> tuple[Flow, Flow]:
    spline = SplineConfig(num_bins=4, tail_bound=8.0)
    teacher = build_teacher(LAYERS, context=CONTEXT, hidden=12, n_blocks=3, dropout=0.0, spline=spline, seed=1)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():  # a trained teacher's splines are far from a fresh student's near-identity ones
        for i in range(teacher.n_blocks):
            bias = teacher.block(i).autoregressive_net.final_layer.bias
            bias.copy_(1.5 * torch.randn(bias.shape, generator=generator))
    student = build_student(teacher, hidden=12, dropout=0.0, seed=3)
    return teacher.eval().requires_grad_(False), student


def test_matching_the_bias_gives_the_student_the_teachers_mean_parameters_block_by_block() -> None:
    teacher, student = _pair()
    generator = torch.Generator().manual_seed(4)
    x, labels = torch.randn(512, sum(LAYERS), generator=generator), torch.randn(512, CONTEXT, generator=generator)
    with torch.no_grad():
        t = teacher.forward_trace(x, labels)
        before = dist.guidance_terms(student.eval().inverse_trace(t.out, labels), t)
    student.train()
    dist.match_output_bias(student, teacher, x, labels)
    assert student.training  # the caller's mode is kept
    student.eval()
    with torch.no_grad():
        t = teacher.forward_trace(x, labels)
        for i in range(student.n_blocks):
            own = student.block(i).autoregressive_net(t.intermediates[i + 1], labels)
            # the mean over the batch matches exactly; the first feature of a block is constant, so all of it
            assert torch.allclose(own.mean(0), t.params[i].mean(0), atol=1e-4)
            assert torch.allclose(own[:, 0], t.params[i][:, 0], atol=1e-4)
        after = dist.guidance_terms(student.inverse_trace(t.out, labels), t)
    assert float(after.params) < 0.2 * float(before.params), (float(before.params), float(after.params))
    assert float(after.coordinates) < 0.5 * float(before.coordinates), (
        float(before.coordinates),
        float(after.coordinates),
    )

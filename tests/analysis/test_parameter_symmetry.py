"""The parameter action of the transformer reproduces the twist exactly: f(x; g.theta) = f_g(x; theta)."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from eqdyn.analysis.parameter_symmetry import act_on_parameters, nonequivariant_sq_norm
from eqdyn.models import build_model
from eqdyn.symmetry.rotations import haar_rotations
from eqdyn.tasks import KeyedNoise, build_task
from eqdyn.testing import random_molecules


@pytest.mark.parametrize(
    ("task_name", "family"),
    [("flow_matching", "transformer"), ("force_field", "transformer"), ("force_field", "relative_transformer")],
)
def test_acting_on_parameters_equals_twisting_the_model(task_name: str, family: str) -> None:
    torch.manual_seed(0)
    task = build_task(task_name)
    model = build_model(task_name, family, "xs").double().eval()
    example = task.make_example(random_molecules(3, seed=1, with_labels=True), KeyedNoise(0))
    rotation = haar_rotations(1, torch.Generator().manual_seed(2))[0]
    twisted = task.twist(model, example.inputs, rotation.expand(3, 3, 3))
    acted = act_on_parameters(model, rotation)

    class Acted(torch.nn.Module):
        def forward(self, *args):
            return functional_call(model, acted, args)

    direct = task.predict(Acted(), example.inputs)
    for part in task.output_parts:
        assert torch.allclose(direct[part], twisted[part], atol=1e-12), part


def test_nonequivariant_norm_is_the_acted_tensors_and_undefined_elsewhere() -> None:
    model = build_model("flow_matching", "transformer", "xs")
    expected = sum(float(p.double().pow(2).sum()) for n, p in model.named_parameters() if n in model.rotation_action)
    assert nonequivariant_sq_norm(model) == pytest.approx(expected)
    assert nonequivariant_sq_norm(build_model("flow_matching", "egnn", "xs")) is None

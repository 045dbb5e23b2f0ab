"""Conformer generation by flow matching (ET-Flow practice): centred conformers x1, centred Gaussian prior x0,
x_t = (1 - t) x0 + t x1 with t ~ U(0, 1), target velocity v = x1 - x0. The per-example loss is the mean over real
atoms and components of the squared velocity error: each molecule counts equally, whatever its size, and every t is
weighted equally (report by t-bin through the ``t`` covariate).
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from eqdyn.molecules import MoleculeBatch
from eqdyn.symmetry.actions import rotate_points, rotate_vectors
from eqdyn.tasks.base import Example, Inputs, NoiseSource, Output, Task, masked_mean_square


def centre(points: Tensor, mask: Tensor) -> Tensor:
    """Subtract each molecule's centroid over its real atoms; padded rows stay zero."""
    weights = mask.to(points.dtype).unsqueeze(-1)
    centroid = (points * weights).sum(-2, keepdim=True) / weights.sum(-2, keepdim=True)
    return (points - centroid) * weights


class FlowMatchingTask(Task):
    name: ClassVar[str] = "flow_matching"
    output_parts: ClassVar[tuple[str, ...]] = ("velocity",)

    def __init__(self, prior_sigma: float = 1.0) -> None:
        self.prior_sigma = prior_sigma

    def make_example(self, molecules: MoleculeBatch, noise: NoiseSource) -> Example:
        x1 = centre(molecules.positions, molecules.mask)
        t = noise.uniform(molecules.example_id, x1)
        x0 = centre(self.prior_sigma * noise.normal(molecules.example_id, x1.shape[1:], x1), molecules.mask)
        tt = t.view(-1, 1, 1)
        inputs = {
            "positions": (1 - tt) * x0 + tt * x1,
            "atomic_numbers": molecules.atomic_numbers,
            "mask": molecules.mask,
            "bond_orders": molecules.bond_orders,
            "t": t,
        }
        return Example(inputs, {"velocity": x1 - x0}, molecules.example_id, covariates={"t": t})

    def act_on_inputs(self, inputs: Inputs, rotations: Tensor) -> Inputs:
        return {**inputs, "positions": rotate_points(inputs["positions"], rotations)}

    def act_on_outputs(self, outputs: Output, rotations: Tensor) -> Output:
        return {"velocity": rotate_vectors(outputs["velocity"], rotations)}

    def predict(self, model: nn.Module, inputs: Inputs) -> Output:
        velocity = model(
            inputs["positions"], inputs["atomic_numbers"], inputs["mask"], inputs["bond_orders"], inputs["t"]
        )
        return {"velocity": velocity}

    def squared_norms(self, diff: Output, inputs: Inputs) -> dict[str, Tensor]:
        return {"velocity": masked_mean_square(diff["velocity"], inputs["mask"])}

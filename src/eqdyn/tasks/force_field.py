"""Force-field prediction: energy and forces of a geometry, E(Rx) = E(x) and F(Rx) = R F(x).

Loss per molecule: energy_weight * (E_pred - E)^2 + force_weight * mean over real atoms and components of the
squared force error. Energies are relative to the molecule's reference energy (its lowest MMFF minimum), per
molecule, not per atom. The two parts are reported separately.

Targets are expressed in units of ``target_scale`` kcal/mol (energies) and ``target_scale`` kcal/mol/Å (forces):
one scale for both, so that forces stay minus the gradient of energies in the scaled units and a unit-scale network
can match them. Losses are then in units of target_scale^2; the percentages do not depend on it.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from eqdyn.molecules import MoleculeBatch
from eqdyn.symmetry.actions import rotate_points, rotate_vectors
from eqdyn.tasks.base import Example, Inputs, NoiseSource, Output, Task, masked_mean_square


class ForceFieldTask(Task):
    name: ClassVar[str] = "force_field"
    output_parts: ClassVar[tuple[str, ...]] = ("energy", "forces")

    def __init__(self, energy_weight: float = 1.0, force_weight: float = 1.0, target_scale: float = 1.0) -> None:
        if target_scale <= 0:
            raise ValueError(f"target_scale must be positive, got {target_scale}")
        self.energy_weight = energy_weight
        self.force_weight = force_weight
        self.target_scale = target_scale

    def make_example(self, molecules: MoleculeBatch, noise: NoiseSource) -> Example:
        if molecules.energy is None or molecules.forces is None:
            raise ValueError("force_field examples need energy and forces labels (use the force_field dataset)")
        inputs = {
            "positions": molecules.positions,
            "atomic_numbers": molecules.atomic_numbers,
            "mask": molecules.mask,
            "bond_orders": molecules.bond_orders,
        }
        target = {
            "energy": molecules.energy.to(molecules.positions.dtype) / self.target_scale,
            "forces": molecules.forces / self.target_scale,
        }
        return Example(inputs, target, molecules.example_id)

    def act_on_inputs(self, inputs: Inputs, rotations: Tensor) -> Inputs:
        return {**inputs, "positions": rotate_points(inputs["positions"], rotations)}

    def act_on_outputs(self, outputs: Output, rotations: Tensor) -> Output:
        return {"energy": outputs["energy"], "forces": rotate_vectors(outputs["forces"], rotations)}

    def predict(self, model: nn.Module, inputs: Inputs) -> Output:
        # Conservative models differentiate the energy with respect to positions, even under no_grad.
        with torch.enable_grad():
            out = model(inputs["positions"], inputs["atomic_numbers"], inputs["mask"], inputs["bond_orders"])
        return {"energy": out["energy"], "forces": out["forces"]}

    def squared_norms(self, diff: Output, inputs: Inputs) -> dict[str, Tensor]:
        return {
            "energy": self.energy_weight * diff["energy"].pow(2),
            "forces": self.force_weight * masked_mean_square(diff["forces"], inputs["mask"]),
        }

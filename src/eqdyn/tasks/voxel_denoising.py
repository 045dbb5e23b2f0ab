"""Denoising voxel grids (VoxMol): Gaussian atom densities, one channel per element, noisy copy y = x + sigma eps,
the model predicts the clean grid x. Loss: mean squared error over channels and voxels, per example.

The exact symmetry of a grid is the 24-element cube group (a permutation of voxels); continuous rotations act on the
molecule before voxelisation. So the evaluation design is the coset estimator of docs/maths.md: each example is
voxelised in its own Haar frame h, its noise drawn in that frame, and the 24 cube rotations enumerated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from eqdyn.molecules import MoleculeBatch
from eqdyn.symmetry.actions import rotate_grid_octahedral
from eqdyn.tasks.base import EvaluationDesign, Example, Inputs, NoiseSource, Output, Task

# Atomic numbers of H, C, N, O, F: QM9's element set, one density channel each.
DEFAULT_ELEMENTS = (1, 6, 7, 8, 9)


class VoxelDenoisingTask(Task):
    name: ClassVar[str] = "voxel_denoising"
    output_parts: ClassVar[tuple[str, ...]] = ("grid",)
    evaluation_design: ClassVar[EvaluationDesign] = "octahedral_coset"

    def __init__(
        self,
        elements: Sequence[int] = DEFAULT_ELEMENTS,
        grid_size: int = 32,
        resolution: float = 0.25,
        atom_sigma: float = 0.5,
        noise_sigma: float = 0.9,
    ) -> None:
        self.elements = tuple(elements)
        self.grid_size = grid_size
        self.resolution = resolution
        self.atom_sigma = atom_sigma
        self.noise_sigma = noise_sigma

    def voxelize(self, molecules: MoleculeBatch) -> Tensor:
        from eqdyn.data.voxelize import voxelize

        return voxelize(
            molecules.positions,
            molecules.atomic_numbers,
            molecules.mask,
            self.elements,
            self.grid_size,
            self.resolution,
            self.atom_sigma,
        )

    def make_example(self, molecules: MoleculeBatch, noise: NoiseSource) -> Example:
        clean = self.voxelize(molecules)
        noisy = clean + self.noise_sigma * noise.normal(molecules.example_id, clean.shape[1:], clean)
        return Example({"grid": noisy}, {"grid": clean}, molecules.example_id)

    def act_on_inputs(self, inputs: Inputs, rotations: Tensor) -> Inputs:
        return {"grid": rotate_grid_octahedral(inputs["grid"], rotations)}

    def act_on_outputs(self, outputs: Output, rotations: Tensor) -> Output:
        return {"grid": rotate_grid_octahedral(outputs["grid"], rotations)}

    def predict(self, model: nn.Module, inputs: Inputs) -> Output:
        return {"grid": model(inputs["grid"])}

    def squared_norms(self, diff: Output, inputs: Inputs) -> dict[str, Tensor]:
        grid = diff["grid"]
        return {"grid": grid.pow(2).flatten(-4).mean(-1)}

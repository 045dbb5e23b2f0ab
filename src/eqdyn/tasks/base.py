"""The one idea the design rests on: a task knows how to draw an example (with all its randomness), how a rotation
acts on its input and on its output, and its loss. Training with augmentation, the loss decomposition, Hessians and
gradient analyses are written once against :class:`Task` and serve every task and every model.

Outputs are dicts of named parts (``{"energy": [B], "forces": [B, N, 3]}``). A task's loss is a weighted squared
norm of the difference between prediction and target, part by part (:meth:`Task.squared_norms`); it is invariant
under the output action (orthogonal ``rho_out``), which the decomposition needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from eqdyn.molecules import MoleculeBatch
from eqdyn.symmetry.rotations import keyed_rng

Output = dict[str, Tensor]
Inputs = dict[str, Tensor]
EvaluationDesign = Literal["haar", "octahedral_coset"]

# Keyed stream for the randomness inside an example (flow time, prior noise, voxel noise).
STREAM_EXAMPLE_NOISE = 3


@dataclass
class Example:
    """Model inputs and targets in one frame, plus per-example covariates kept for reporting (e.g. flow time t)."""

    inputs: Inputs
    target: Output
    example_id: Tensor
    covariates: dict[str, Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> Example:
        """The same example on ``device`` (the analyses run models on a GPU when there is one)."""
        return Example(
            {name: value.to(device) for name, value in self.inputs.items()},
            {name: value.to(device) for name, value in self.target.items()},
            self.example_id.to(device),
            {name: value.to(device) for name, value in self.covariates.items()},
        )


class NoiseSource(ABC):
    """Where an example's randomness comes from: keyed per example (evaluation) or a fast generator (training)."""

    @abstractmethod
    def normal(self, example_id: Tensor, shape: Sequence[int], like: Tensor) -> Tensor:
        """Standard normal draws [B, *shape] with the dtype and device of ``like``."""

    @abstractmethod
    def uniform(self, example_id: Tensor, like: Tensor) -> Tensor:
        """Uniform draws on [0, 1), [B]."""


class KeyedNoise(NoiseSource):
    """Each example's draws depend on (seed, example id) only: identical for every checkpoint and batch layout.

    Per example, the uniform comes first and the normals after it, so every task reads a fixed sequence.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def _draws(self, example_id: Tensor, count: int, kind: str) -> np.ndarray:
        out = np.empty((len(example_id), count))
        for row, key in enumerate(example_id.tolist()):
            rng = keyed_rng(self.seed, int(key), STREAM_EXAMPLE_NOISE)
            uniform = rng.random()
            out[row] = uniform if kind == "uniform" else rng.standard_normal(count)
        return out

    def normal(self, example_id: Tensor, shape: Sequence[int], like: Tensor) -> Tensor:
        count = int(np.prod(shape))
        draws = self._draws(example_id, count, "normal").reshape(len(example_id), *shape)
        return torch.from_numpy(draws).to(dtype=like.dtype, device=like.device)

    def uniform(self, example_id: Tensor, like: Tensor) -> Tensor:
        return torch.from_numpy(self._draws(example_id, 1, "uniform")[:, 0]).to(dtype=like.dtype, device=like.device)


class GeneratorNoise(NoiseSource):
    """Draws from a torch Generator on the data's device: fast, reproducible from the training seed and step.

    With ``shard = (global_batch, start, stop)`` the examples are rows [start, stop) of a larger batch: every draw
    is made for the whole global batch and sliced, so a data-parallel rank reads exactly the numbers one process
    would give those examples (the generator's stream advances identically on every rank).
    """

    def __init__(self, generator: torch.Generator, shard: tuple[int, int, int] | None = None) -> None:
        self.generator = generator
        self.shard = shard

    def _rows(self, example_id: Tensor) -> tuple[int, slice]:
        if self.shard is None:
            return len(example_id), slice(None)
        global_batch, start, stop = self.shard
        if stop - start != len(example_id):
            raise ValueError(f"shard [{start}, {stop}) does not match a batch of {len(example_id)} examples")
        return global_batch, slice(start, stop)

    def normal(self, example_id: Tensor, shape: Sequence[int], like: Tensor) -> Tensor:
        count, rows = self._rows(example_id)
        return torch.randn(count, *shape, generator=self.generator, dtype=like.dtype, device=like.device)[rows]

    def uniform(self, example_id: Tensor, like: Tensor) -> Tensor:
        count, rows = self._rows(example_id)
        return torch.rand(count, generator=self.generator, dtype=like.dtype, device=like.device)[rows]


def masked_mean_square(diff: Tensor, mask: Tensor) -> Tensor:
    """Per-molecule mean over real atoms and the 3 components of ``diff [B, ..., N, 3]``; ``mask`` is [B, N].

    Extra dimensions between B and N (e.g. K rotated copies) are kept: the result is [B, ...].
    """
    extra = diff.dim() - 3
    mask = mask.reshape(mask.shape[0], *([1] * extra), mask.shape[1]).to(diff.dtype)
    return (diff.pow(2).sum(-1) * mask).sum(-1) / (3 * mask.sum(-1))


class Task(ABC):
    """A learning problem with a known symmetry. Subclasses define the pieces below; nothing else is task-specific."""

    name: ClassVar[str]
    #: Named output parts, in the order they are reported.
    output_parts: ClassVar[tuple[str, ...]]
    #: "haar": K i.i.d. Haar rotations per example (variance over K - 1). "octahedral_coset": the 24 cube rotations
    #: enumerated inside a per-example Haar frame h (exact octahedral twirl; variance over K).
    evaluation_design: ClassVar[EvaluationDesign] = "haar"

    @abstractmethod
    def make_example(self, molecules: MoleculeBatch, noise: NoiseSource) -> Example:
        """Inputs and target for ``molecules`` in their frame; all randomness drawn here, once, in this frame."""

    @abstractmethod
    def act_on_inputs(self, inputs: Inputs, rotations: Tensor) -> Inputs:
        """rho_in(g) x for ``rotations [B, 3, 3]`` (one per example)."""

    @abstractmethod
    def act_on_outputs(self, outputs: Output, rotations: Tensor) -> Output:
        """rho_out(g) y for ``rotations [B, 3, 3]``."""

    @abstractmethod
    def predict(self, model: nn.Module, inputs: Inputs) -> Output:
        """Call ``model`` with the task's forward signature and name its outputs."""

    @abstractmethod
    def squared_norms(self, diff: Output, inputs: Inputs) -> dict[str, Tensor]:
        """The loss's weighted squared norm of ``diff``, per part: [B] (or [B, K] for diffs with a K axis)."""

    def loss(self, prediction: Output, target: Output, inputs: Inputs) -> Tensor:
        """Per-example loss [B]: the sum over parts of the squared norms of prediction - target."""
        diff = {part: prediction[part] - target[part] for part in self.output_parts}
        return sum_parts(self.squared_norms(diff, inputs))

    def twist(self, model: nn.Module, inputs: Inputs, rotations: Tensor) -> Output:
        """f_g(x) = rho_out(g)^-1 f(rho_in(g) x): the model's prediction read back in the original frame."""
        outputs = self.predict(model, self.act_on_inputs(inputs, rotations))
        return self.act_on_outputs(outputs, rotations.transpose(-1, -2))


def sum_parts(parts: dict[str, Tensor]) -> Tensor:
    values = list(parts.values())
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total


def map_output(function: Callable[[Tensor], Tensor], output: Output) -> Output:
    return {part: function(value) for part, value in output.items()}

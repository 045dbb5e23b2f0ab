"""Tiny float64 instances of every analysed architecture on a fixed evaluation batch, for the Hessian tests."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from eqdyn.analysis import FixedBatchLosses
from eqdyn.decomposition import make_evaluation_example, make_evaluation_rotations
from eqdyn.models import build_model
from eqdyn.tasks import build_task
from eqdyn.testing import random_molecules

VOXEL_SETTINGS: dict[str, Any] = {"elements": (1, 6), "grid_size": 4, "resolution": 1.0}


@dataclass(frozen=True)
class TinyCase:
    task: str
    family: str
    overrides: dict[str, Any]
    equivariant: bool

    @property
    def id(self) -> str:
        return f"{self.task}-{self.family}"


TINY_CASES = (
    TinyCase("flow_matching", "transformer", {"dim": 4, "layers": 1, "heads": 1, "mlp_ratio": 1.0}, False),
    TinyCase("force_field", "transformer", {"dim": 4, "layers": 1, "heads": 1, "mlp_ratio": 1.0}, False),
    TinyCase("flow_matching", "egnn", {"hidden": 4, "layers": 1, "vector_channels": 2, "num_rbf": 4}, True),
    TinyCase("force_field", "painn", {"features": 4, "layers": 1, "num_rbf": 4}, True),
    TinyCase("voxel_denoising", "unet3d", {"widths": (2, 2), "channels": 2}, False),
    TinyCase("voxel_denoising", "octahedral_unet", {"widths": (2, 2), "channels": 2}, True),
)


def tiny_model(case: TinyCase, **extra: Any) -> nn.Module:
    torch.manual_seed(0)
    return build_model(case.task, case.family, "xs", **{**case.overrides, **extra}).double().eval()


def small_parameter_names(model: nn.Module, budget: int = 20) -> list[str]:
    """The smallest parameter tensors (biases, norm scales, small weights, from every layer; embedding tables
    excluded) up to ``budget`` entries in all: a subspace small enough for dense Hessians and n Lanczos steps."""
    tables = {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, nn.Embedding)}
    candidates = sorted((p.numel(), name) for name, p in model.named_parameters() if name not in tables)
    chosen, total = [], 0
    for numel, name in candidates:
        if total + numel > budget:
            break
        chosen.append(name)
        total += numel
    return chosen


def tiny_losses(
    case: TinyCase,
    model: nn.Module | None = None,
    parameter_names: list[str] | None = None,
    num_rotations: int = 4,
    **task_settings: Any,
) -> FixedBatchLosses:
    """The fixed batch of the pipeline's evaluation path: keyed rotations (the 24 cube rotations in a Haar frame
    for voxels), keyed example noise, 2 molecules of <= 4 atoms (1 for voxels: 24 copies already)."""
    model = tiny_model(case) if model is None else model
    voxel = case.task == "voxel_denoising"
    task = build_task(case.task, **(VOXEL_SETTINGS if voxel else {}), **task_settings)
    molecules = random_molecules(1 if voxel else 2, 4, seed=1, with_labels=True)
    if voxel:  # only H and C have density channels
        numbers = torch.where(molecules.atomic_numbers % 2 == 1, 1, 6) * molecules.mask
        molecules = dataclasses.replace(molecules, atomic_numbers=numbers)
    evaluation = make_evaluation_rotations(task, molecules.example_id.numpy(), seed=5, num_rotations=num_rotations)
    example, rotations = make_evaluation_example(task, molecules, evaluation, noise_seed=7)
    return FixedBatchLosses(task, model, example, rotations, parameter_names=parameter_names)


def dense_hessian(losses: FixedBatchLosses, loss: str) -> Tensor:
    """The dense Hessian as torch.func.jacfwd(torch.func.grad(loss)). Not torch.func.hessian: in torch 2.13 its
    jacfwd(jacrev(.)) is wrong through LayerNorm (transformer, egnn) by several percent, while jacfwd(grad(.)),
    forward-over-reverse products, reverse-over-reverse products and finite differences all agree."""
    return torch.func.jacfwd(torch.func.grad(losses.loss_function(loss)))(losses.parameters)


def relative_error(actual: Tensor, expected: Tensor) -> float:
    return float((actual - expected).norm() / expected.norm())


def quadratic_form_stderr(matrix: Tensor, num_probes: int) -> float:
    """The exact standard error of mean_i q_i^T A q_i over Rademacher probes q_i = v_i / sqrt(n): one probe has
    variance 2 (||A||_F^2 - sum_j A_jj^2) / n^2."""
    n = len(matrix)
    variance = 2 * float(matrix.pow(2).sum() - torch.diagonal(matrix).pow(2).sum()) / n**2
    return (variance / num_probes) ** 0.5

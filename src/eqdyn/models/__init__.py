"""Model zoo of the three tasks and the registry the rest of the pipeline builds models through.

``build_model(task, family, size, **overrides)`` returns an ``nn.Module`` with an ``equivariance`` attribute
("none" | "SO3" | "E3" | "octahedral"). Interfaces (padded dense batches, see :mod:`eqdyn.models.common`):

- flow_matching: ``forward(positions, atomic_numbers, mask, bond_orders, t) -> velocity [B, N, 3]``
- force_field: ``forward(positions, atomic_numbers, mask, bond_orders) -> {"energy": [B], "forces": [B, N, 3]}``
- voxel_denoising: ``forward(grid [B, C, L, L, L]) -> grid``
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from eqdyn.models.egnn import EquivariantFlowNet
from eqdyn.models.escaip_like import EScAIPLikeForceField
from eqdyn.models.nequip_ff import NequIPForceField
from eqdyn.models.octahedral_unet import OctahedralUNet3D, TwirledUNet3D
from eqdyn.models.painn import PaiNNForceField
from eqdyn.models.transformer import FlowTransformer, ForceFieldTransformer
from eqdyn.models.unet3d import UNet3D

TASKS = ("flow_matching", "force_field", "voxel_denoising")


@dataclass(frozen=True)
class ModelFamily:
    task: str
    family: str
    equivariance: str
    constructor: Callable[..., nn.Module]
    presets: Mapping[str, Mapping[str, Any]]
    default_size: str


# Transformer ladder: ~3k parameters to ~200M (the paper's upper range). xxs (~3k), xs (~30k), s (~210k) and ms
# (~0.8M) train to 10k steps on a 2-core CPU: the CPU study's two-decade size sweep.
_TRANSFORMER_PRESETS: dict[str, dict[str, Any]] = {
    "xxs": {"dim": 8, "layers": 2, "heads": 2},
    "xs": {"dim": 32, "layers": 2, "heads": 2},
    "s": {"dim": 64, "layers": 4, "heads": 4},
    "ms": {"dim": 128, "layers": 4, "heads": 4},
    "m": {"dim": 256, "layers": 6, "heads": 8},
    "l": {"dim": 576, "layers": 12, "heads": 8},  # ~48M parameters: the ~50M rung of config/gpu.yaml
    "xl": {"dim": 1024, "layers": 16, "heads": 16},
}
_EGNN_PRESETS: dict[str, dict[str, Any]] = {
    "xs": {"hidden": 32, "layers": 2, "vector_channels": 8},
    "s": {"hidden": 64, "layers": 3, "vector_channels": 16},
    "m": {"hidden": 128, "layers": 6, "vector_channels": 32},
    "l": {"hidden": 256, "layers": 8, "vector_channels": 64},
}
_PAINN_PRESETS: dict[str, dict[str, Any]] = {
    "xs": {"features": 32, "layers": 2},
    "s": {"features": 64, "layers": 3},
    "m": {"features": 128, "layers": 4},
    "l": {"features": 256, "layers": 6},
}
# NequIP ladder (the nequip package): ~33k, ~200k, ~1.8M, ~6.8M parameters; "l" is close to nequip's own "L" preset.
_NEQUIP_PRESETS: dict[str, dict[str, Any]] = {
    "xs": {"layers": 3, "l_max": 1, "features": 24, "radial_width": 32, "type_features": 8},
    "s": {"layers": 3, "l_max": 1, "features": 48, "radial_width": 64, "type_features": 16},
    "m": {"layers": 4, "l_max": 2, "features": (96, 48, 24), "radial_width": 128, "type_features": 32},
    "l": {"layers": 6, "l_max": 3, "features": (128, 64, 32, 32), "radial_width": 128, "type_features": 32},
}
# EScAIP-like ladder (our own model, see escaip_like.py): ~26k, ~230k, ~1.1M, ~6.4M parameters; "l" is the paper's size.
_ESCAIP_LIKE_PRESETS: dict[str, dict[str, Any]] = {
    "xs": {"features": 24, "layers": 2, "heads": 2},
    "s": {"features": 64, "layers": 3, "heads": 4},
    "m": {"features": 128, "layers": 4, "heads": 4},
    "l": {"features": 256, "layers": 6, "heads": 8},
}
_UNET_PRESETS: dict[str, dict[str, Any]] = {
    "xs": {"widths": (8, 16)},
    "s": {"widths": (16, 32, 32)},
    "m": {"widths": (32, 64, 128)},
    "l": {"widths": (64, 128, 256, 256)},
}
_VOXEL_CHANNELS = {"channels": 5}  # H C N O F (QM9); override for other element sets

_FAMILIES = (
    ModelFamily("flow_matching", "transformer", "none", FlowTransformer, _TRANSFORMER_PRESETS, "s"),
    ModelFamily("flow_matching", "egnn", "SO3", EquivariantFlowNet, _EGNN_PRESETS, "s"),
    ModelFamily(
        "flow_matching",
        "egnn_e3",
        "E3",
        EquivariantFlowNet,
        {size: {**preset, "chiral": False} for size, preset in _EGNN_PRESETS.items()},
        "s",
    ),
    ModelFamily("force_field", "transformer", "none", ForceFieldTransformer, _TRANSFORMER_PRESETS, "s"),
    ModelFamily("force_field", "painn", "E3", PaiNNForceField, _PAINN_PRESETS, "s"),
    ModelFamily("force_field", "nequip", "E3", NequIPForceField, _NEQUIP_PRESETS, "s"),
    ModelFamily("force_field", "escaip_like", "none", EScAIPLikeForceField, _ESCAIP_LIKE_PRESETS, "s"),
    ModelFamily(
        "force_field",
        "relative_transformer",
        "none",
        ForceFieldTransformer,
        {size: {**preset, "geometry": "relative"} for size, preset in _TRANSFORMER_PRESETS.items()},
        "s",
    ),
    ModelFamily(
        "voxel_denoising",
        "unet3d",
        "none",
        UNet3D,
        {size: {**preset, **_VOXEL_CHANNELS} for size, preset in _UNET_PRESETS.items()},
        "s",
    ),
    ModelFamily(
        "voxel_denoising",
        "octahedral_unet",
        "octahedral",
        OctahedralUNet3D,
        {size: {**preset, **_VOXEL_CHANNELS} for size, preset in _UNET_PRESETS.items()},
        "s",
    ),
    ModelFamily(
        "voxel_denoising",
        "twirled_unet3d",
        "octahedral",
        TwirledUNet3D,
        {size: {**preset, **_VOXEL_CHANNELS} for size, preset in _UNET_PRESETS.items()},
        "s",
    ),
)

FAMILY_SPECS: dict[tuple[str, str], ModelFamily] = {(spec.task, spec.family): spec for spec in _FAMILIES}
MODEL_FAMILIES: tuple[tuple[str, str, str], ...] = tuple((s.task, s.family, s.equivariance) for s in _FAMILIES)


def family_spec(task: str, family: str) -> ModelFamily:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    spec = FAMILY_SPECS.get((task, family))
    if spec is None:
        known = ", ".join(f for t, f, _ in MODEL_FAMILIES if t == task)
        raise ValueError(f"unknown model family {family!r} for task {task!r}; known families: {known}")
    return spec


def build_model(task: str, family: str, size: str, **overrides: Any) -> nn.Module:
    """A freshly initialised model of a preset size; ``overrides`` replace or extend the preset's arguments."""
    spec = family_spec(task, family)
    if size not in spec.presets:
        raise ValueError(f"unknown size {size!r} for {task}/{family}; known sizes: {', '.join(spec.presets)}")
    model = spec.constructor(**{**spec.presets[size], **overrides})
    if model.equivariance != spec.equivariance:  # a wrong override (e.g. chiral=False on "egnn") would mislabel runs
        raise ValueError(f"{task}/{family} overrides {overrides} change its symmetry to {model.equivariance!r}")
    return model


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "FAMILY_SPECS",
    "MODEL_FAMILIES",
    "TASKS",
    "ModelFamily",
    "build_model",
    "count_parameters",
    "family_spec",
]

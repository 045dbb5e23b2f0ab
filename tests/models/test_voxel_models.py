"""Voxel denoisers: exact equivariance to the 24 cube rotations, orbit-tied kernels, non-equivariance of the plain
U-Net, shapes (float64)."""

from __future__ import annotations

import pytest
import torch
from models_testing import relative_error
from torch import Tensor, nn

from eqdyn.models import MODEL_FAMILIES, build_model
from eqdyn.models.common import second_order_paths
from eqdyn.models.octahedral_unet import kernel_orbits
from eqdyn.models.unet3d import cpu_layout
from eqdyn.symmetry.actions import rotate_grid_octahedral
from eqdyn.symmetry.rotations import octahedral_group

VOXEL_FAMILIES = [(family, eq) for task, family, eq in MODEL_FAMILIES if task == "voxel_denoising"]
SIZE = 8


def build(family: str, size: str = "s") -> nn.Module:
    torch.manual_seed(0)
    return build_model("voxel_denoising", family, size, channels=3).double().eval()


def random_grids(batch: int = 2, channels: int = 3, size: int = SIZE, seed: int = 0) -> Tensor:
    return torch.rand(batch, channels, size, size, size, generator=torch.Generator().manual_seed(seed)).double()


def equivariance_errors(model: nn.Module, grids: Tensor) -> list[float]:
    """Relative error of f(o x) against o f(x) for each of the 24 cube rotations o (all grids of the batch)."""
    group = octahedral_group()
    copies = grids.unsqueeze(0).expand(len(group), *grids.shape)
    with torch.no_grad():
        expected = rotate_grid_octahedral(model(grids).unsqueeze(0).expand_as(copies), group)
        # one forward pass over all 24 rotated copies: fewer, larger convolutions
        actual = model(rotate_grid_octahedral(copies, group).reshape(-1, *grids.shape[1:])).reshape(copies.shape)
    return [relative_error(actual[k], expected[k]) for k in range(len(group))]


@pytest.mark.parametrize("family", [family for family, eq in VOXEL_FAMILIES if eq == "octahedral"])
def test_octahedral_models_commute_with_all_24_cube_rotations(family: str) -> None:
    # the twirled model costs 24 U-Nets per grid: its smallest preset on a 4^3 grid keeps the test fast
    twirled = family == "twirled_unet3d"
    errors = equivariance_errors(build(family, "xs" if twirled else "s"), random_grids(size=4 if twirled else SIZE))
    assert len(errors) == 24 and max(errors) < 1e-9


@pytest.mark.parametrize("family", [family for family, eq in VOXEL_FAMILIES if eq == "none"])
def test_plain_unet_is_not_equivariant_at_initialisation(family: str) -> None:
    errors = equivariance_errors(build(family), random_grids())
    assert errors[0] < 1e-12  # the identity comes first
    assert min(errors[1:]) >= 1e-2


def test_orbit_tied_unet_is_also_mirror_equivariant_but_twirled_unet_is_not() -> None:
    grids = random_grids(size=4)
    for family, mirror_equivariant in [("octahedral_unet", True), ("twirled_unet3d", False)]:
        model = build(family, "xs")
        with torch.no_grad():
            error = relative_error(model(grids.flip(-1)), model(grids).flip(-1))
        assert (error < 1e-9) == mirror_equivariant, (family, error)


def test_cube_kernel_has_four_orbits_of_sizes_1_6_12_8() -> None:
    orbits = kernel_orbits(3)
    sizes = sorted(int((orbits == k).sum()) for k in range(int(orbits.max()) + 1))
    assert sizes == [1, 6, 8, 12]
    assert orbits[1, 1, 1] != orbits[0, 1, 1] and orbits[0, 1, 1] == orbits[1, 2, 1] == orbits[1, 1, 0]
    assert orbits[0, 0, 0] == orbits[2, 2, 0] and orbits[0, 0, 1] == orbits[1, 2, 2]


def test_five_wide_kernel_orbits_are_unions_of_cube_rotations() -> None:
    orbits = kernel_orbits(5)
    for rotation in octahedral_group():
        assert torch.equal(rotate_grid_octahedral(orbits.double(), rotation).long(), orbits)
    assert int(orbits.max()) + 1 == 10  # |offset| patterns with entries in {0, 1, 2}: C(3 + 2, 3) sorted triples


@pytest.mark.parametrize("family", [family for family, _ in VOXEL_FAMILIES])
def test_voxel_models_keep_the_shape_and_reject_indivisible_grids(family: str) -> None:
    model = build(family, "xs")
    grids = random_grids()
    assert model(grids).shape == grids.shape
    with pytest.raises(ValueError, match="divisible"):
        model(torch.rand(1, 3, 5, 5, 5, dtype=torch.float64))


@pytest.mark.parametrize("family", ["unet3d", "octahedral_unet"])
def test_cpu_convolutions_run_channels_last_except_for_second_derivatives(family: str) -> None:
    model = build(family, "xs")
    grids = random_grids()
    assert cpu_layout(grids).is_contiguous(memory_format=torch.channels_last_3d)
    prediction = model(grids)
    assert prediction.is_contiguous()  # handed back in the caller's layout
    with second_order_paths():
        assert cpu_layout(grids) is grids
        standard = model(grids)
    assert relative_error(standard, prediction) < 1e-12

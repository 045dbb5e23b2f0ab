"""Sampling rotations: uniform (Haar) on SO(3), the 24 rotations of the cube, and per-example evaluation sets.

Rotation matrices act on column vectors; a point cloud stored as rows ``x [..., N, 3]`` rotates as ``x @ R^T``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def quaternion_to_matrix(quaternions: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] from (not necessarily unit) quaternions [..., 4] in (w, x, y, z) order."""
    q = quaternions / quaternions.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def haar_rotations(
    n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64, device: str = "cpu"
) -> Tensor:
    """``n`` i.i.d. uniform rotations: a normalised Gaussian 4-vector is a uniform unit quaternion."""
    quaternions = torch.randn(n, 4, generator=generator, dtype=dtype, device=device)
    return quaternion_to_matrix(quaternions)


def haar_rotations_numpy(n: int, rng: np.random.Generator) -> np.ndarray:
    """Float64 uniform rotations [n, 3, 3] from a numpy Generator (used for keyed, file-backed rotation sets)."""
    return quaternion_to_matrix(torch.from_numpy(rng.standard_normal((n, 4)))).numpy()


def rotation_angle(rotations: Tensor) -> Tensor:
    """Angle in [0, pi] of each rotation, from its trace."""
    cos = (rotations.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.arccos(cos.clamp(-1.0, 1.0))


def octahedral_group(dtype: torch.dtype = torch.float64, device: str = "cpu") -> Tensor:
    """The 24 rotations mapping the cube [-1, 1]^3 onto itself: the signed permutation matrices with det +1.

    The identity comes first; the order is fixed, so index k names the same rotation everywhere.
    """
    import itertools

    elements = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            matrix = torch.zeros(3, 3, dtype=dtype, device=device)
            for row, col in enumerate(perm):
                matrix[row, col] = signs[row]
            if torch.det(matrix) > 0:
                elements.append(matrix)
    group = torch.stack(elements)
    return group


def is_octahedral(rotations: Tensor, atol: float = 1e-9) -> Tensor:
    """Whether each rotation [..., 3, 3] is one of the 24 cube rotations (entries in {-1, 0, 1})."""
    rounded = rotations.round()
    close = (rotations - rounded).abs().amax(dim=(-2, -1)) <= atol
    signed_permutation = (rounded.abs().sum(-1) == 1).all(-1) & (rounded.abs().sum(-2) == 1).all(-1)
    return close & signed_permutation & (torch.det(rounded) > 0)


def keyed_rng(seed: int, example_id: int, stream: int = 0) -> np.random.Generator:
    """A generator determined by (seed, example id, stream) alone, whatever else is drawn and in whatever order."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, example_id]))


# Streams of keyed randomness: separate draws for separate purposes never share numbers.
STREAM_EVALUATION_ROTATIONS = 1
STREAM_COSET_FRAME = 2


def evaluation_rotations(seed: int, example_ids: np.ndarray, num_rotations: int) -> np.ndarray:
    """K Haar rotations per example, keyed by (seed, example id, k): [len(example_ids), K, 3, 3] float64.

    Rotation k of an example does not depend on K or on the other examples, so a larger K extends a smaller one
    and every checkpoint of every run sees the same rotations (common random numbers).
    """
    out = np.empty((len(example_ids), num_rotations, 3, 3))
    for row, example_id in enumerate(np.asarray(example_ids, dtype=np.int64)):
        out[row] = haar_rotations_numpy(num_rotations, keyed_rng(seed, int(example_id), STREAM_EVALUATION_ROTATIONS))
    return out


def coset_frames(seed: int, example_ids: np.ndarray) -> np.ndarray:
    """One Haar rotation h per example, keyed by (seed, example id): the frame of the octahedral coset estimator."""
    out = np.empty((len(example_ids), 3, 3))
    for row, example_id in enumerate(np.asarray(example_ids, dtype=np.int64)):
        out[row] = haar_rotations_numpy(1, keyed_rng(seed, int(example_id), STREAM_COSET_FRAME))[0]
    return out


def euler_angle_rotations_nonuniform(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Z-Y-Z rotations with all three Euler angles uniform: a common mistake, NOT Haar (kept to test against)."""
    angles = torch.rand(n, 3, generator=generator, dtype=torch.float64) * torch.tensor(
        [2 * torch.pi, torch.pi, 2 * torch.pi]
    )
    return axis_rotation(angles[:, 0], 2) @ axis_rotation(angles[:, 1], 1) @ axis_rotation(angles[:, 2], 2)


def axis_rotation(angle: Tensor, axis: int) -> Tensor:
    """Rotations [n, 3, 3] by ``angle`` about coordinate axis ``axis`` (0, 1 or 2)."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == 0:
        rows = [one, zero, zero, zero, c, -s, zero, s, c]
    elif axis == 1:
        rows = [c, zero, s, zero, one, zero, -s, zero, c]
    else:
        rows = [c, -s, zero, s, c, zero, zero, zero, one]
    return torch.stack(rows, dim=-1).reshape(*angle.shape, 3, 3)

"""Building blocks shared by the point-cloud models: pair geometry, radial and time features, masking.

All tensors are padded dense: ``positions [B, N, 3]``, ``mask [B, N]`` (True = real atom). Pair quantities are
``[B, N, N, ...]``. Distances are computed by broadcasting, never with ``torch.cdist`` (no double backward), and the
diagonal and padded pairs are replaced by a unit vector before the square root so that first and second
derivatives stay finite even when two padded (or one padded and one real) atoms sit at the same place.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

NUM_ELEMENTS = 120  # embedding rows: every atomic number up to 119, row 0 is padding
NUM_BOND_TYPES = 5  # 0 none, 1 single, 2 double, 3 triple, 4 aromatic

_SECOND_ORDER = contextvars.ContextVar("eqdyn_second_order", default=False)


@contextlib.contextmanager
def second_order_paths() -> Iterator[None]:
    """Inside: models take the code paths meant for second derivatives (Hessian-vector products, forward-mode AD)
    where a faster first-order path would be slower or unsupported there (:func:`second_order_wanted`)."""
    token = _SECOND_ORDER.set(True)
    try:
        yield
    finally:
        _SECOND_ORDER.reset(token)


def second_order_wanted() -> bool:
    return _SECOND_ORDER.get()


@dataclass(frozen=True)
class PairGeometry:
    """Relative vectors, distances and the pair weight of every ordered pair (i, j) of a padded batch."""

    vectors: Tensor  # [B, N, N, 3], x_i - x_j, zero on masked pairs
    distances: Tensor  # [B, N, N], exact |x_i - x_j| on real pairs, 1 on masked pairs
    pair_mask: Tensor  # [B, N, N] bool: both atoms real and i != j


def pair_mask_of(mask: Tensor) -> Tensor:
    """Pairs of two distinct real atoms of one molecule."""
    n = mask.shape[1]
    not_self = ~torch.eye(n, dtype=torch.bool, device=mask.device)
    return mask[:, :, None] & mask[:, None, :] & not_self


def pair_geometry(positions: Tensor, mask: Tensor) -> PairGeometry:
    pair_mask = pair_mask_of(mask)
    vectors = positions[:, :, None, :] - positions[:, None, :, :]
    # where() gives exactly zero gradient to the unselected branch, so masked pairs cannot produce NaN.
    safe = torch.where(pair_mask[..., None], vectors, torch.ones_like(vectors))
    distances = torch.sqrt((safe * safe).sum(-1))
    vectors = torch.where(pair_mask[..., None], vectors, torch.zeros_like(vectors))
    return PairGeometry(vectors=vectors, distances=distances, pair_mask=pair_mask)


def cosine_cutoff(distances: Tensor, cutoff: float) -> Tensor:
    """0.5 (cos(pi d / r_c) + 1) inside the cutoff, 0 outside: value and slope go smoothly to zero at r_c."""
    inside = distances < cutoff
    clipped = torch.where(inside, distances, torch.zeros_like(distances))
    return torch.where(inside, 0.5 * (torch.cos(clipped * (math.pi / cutoff)) + 1.0), torch.zeros_like(distances))


class GaussianRBF(nn.Module):
    """Gaussians on evenly spaced centres in [0, max_distance]: a smooth, twice-differentiable distance encoding."""

    centres: Tensor

    def __init__(self, num_basis: int, max_distance: float) -> None:
        super().__init__()
        self.register_buffer("centres", torch.linspace(0.0, max_distance, num_basis))
        spacing = max_distance / max(num_basis - 1, 1)
        self.gamma = 0.5 / spacing**2

    def forward(self, distances: Tensor) -> Tensor:
        return torch.exp(-self.gamma * (distances[..., None] - self.centres.to(distances.dtype)) ** 2)


class TimeEmbedding(nn.Module):
    """Sinusoidal features of the flow time t in [0, 1], then a two-layer MLP."""

    frequencies: Tensor

    def __init__(self, dim: int, num_frequencies: int = 16) -> None:
        super().__init__()
        # log-spaced frequencies from 1 to 1000 cycles over [0, 1]: resolves both coarse and fine time structure
        self.register_buffer("frequencies", torch.logspace(0.0, 3.0, num_frequencies))
        self.mlp = nn.Sequential(nn.Linear(2 * num_frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        angles = t[:, None] * self.frequencies.to(t.dtype) * (2 * math.pi)
        return self.mlp(torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1))


def edge_features(rbf: Tensor, bond_orders: Tensor, pair_weight: Tensor) -> Tensor:
    """[radial basis, one-hot bond order, 1] per pair, times the pair weight: [B, N, N, num_rbf + 6].

    A bias-free linear map of these features is a distance filter plus a per-bond-order term plus a constant, and
    it is already zero on masked pairs: the weighting happens on this narrow tensor, not on the wide filter.
    """
    one_hot = torch.nn.functional.one_hot(bond_orders, NUM_BOND_TYPES).to(rbf.dtype)
    constant = torch.ones_like(rbf[..., :1])
    return torch.cat([rbf, one_hot, constant], dim=-1) * pair_weight[..., None]


def edge_feature_count(num_rbf: int) -> int:
    return num_rbf + NUM_BOND_TYPES + 1

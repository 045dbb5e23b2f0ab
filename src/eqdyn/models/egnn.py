"""Rotation-equivariant flow-matching network: EGNN-style message passing with vector channels.

Every atom carries invariant features ``h [B, N, H]`` and K vector channels ``V [B, N, 3, K]``. A layer computes
invariant pair messages from (h_i, h_j, distance, bond order), updates h from their mean, and updates V with
equivariant terms only: relative vectors x_i - x_j and neighbour vectors V_j weighted by invariant coefficients,
channel mixing, invariant gating, and (when ``chiral``) cross products of channel mixtures of V. Invariant dot
products of V feed back into h. The velocity is a linear mixture of the final vector channels.

Symmetry:
- ``chiral=True`` (family ``egnn``): equivariant to rotations SO(3) and translations, NOT to reflections. A cross
  product of two polar vectors is a pseudovector, so the network can tell a molecule from its mirror image, and dot
  products involving it are pseudoscalars that carry handedness into h.
- ``chiral=False`` (family ``egnn_e3``): equivariant to E(3), reflections included, like the original EGNN: it
  maps a mirror image to the mirrored output and so cannot prefer one enantiomer (a stated handicap).

Pairs are all pairs of distinct real atoms of a molecule (fully connected by default: early in the flow x_t is
mostly noise and a distance cutoff would cut molecules into pieces); pass ``cutoff`` to weight pairs by a cosine
cutoff instead. Positions enter only through differences, so the output is translation invariant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eqdyn.models.common import (
    NUM_ELEMENTS,
    GaussianRBF,
    TimeEmbedding,
    cosine_cutoff,
    edge_feature_count,
    edge_features,
    pair_geometry,
)


def vector_rms_norm(vectors: Tensor, eps: float = 1e-6) -> Tensor:
    """Divide vector channels [B, N, 3, K] by their RMS length over channels: invariant scale, keeps equivariance."""
    mean_square = (vectors * vectors).sum(dim=2, keepdim=True).mean(dim=3, keepdim=True)
    return vectors * torch.rsqrt(mean_square + eps)


class EquivariantVectorLayer(nn.Module):
    def __init__(self, hidden: int, vector_channels: int, chiral: bool) -> None:
        super().__init__()
        self.vector_channels = vector_channels
        self.chiral = chiral
        self.norm = nn.LayerNorm(hidden)
        # Edge MLP, first layer, split into its i, j and edge parts: only the edge part costs O(N^2 H^2).
        # Its second layer is linear, so for the scalar update it is applied after the sum over neighbours
        # (inside node_update), and per pair only as the narrow map to the 2K vector coefficients.
        self.message_receiver = nn.Linear(hidden, hidden)
        self.message_sender = nn.Linear(hidden, hidden, bias=False)
        # per pair and channel: weight of the relative vector and of the neighbour's vector
        self.vector_coefficients = nn.Linear(hidden, 2 * vector_channels)
        self.node_update = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        mixtures = 4 if chiral else 2  # (dot a, dot b) and, if chiral, (cross a, cross b)
        self.vector_mix = nn.Linear(vector_channels, mixtures * vector_channels, bias=False)
        self.vector_gate = nn.Linear(hidden, vector_channels)
        self.invariant_feedback = nn.Linear(vector_channels, hidden)

    def forward(
        self, h: Tensor, vectors: Tensor, edge: Tensor, relative: Tensor, pair_weight: Tensor, inverse_count: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``edge [B, N, N, H]``: this layer's projection of the pair features (computed for all layers at once)."""
        k = self.vector_channels
        x = self.norm(h)
        pre = self.message_receiver(x)[:, :, None] + self.message_sender(x)[:, None, :] + edge
        messages = F.silu(pre) * pair_weight[..., None]  # [B, N, N, H], zero on masked pairs
        coefficients = self.vector_coefficients(messages) * pair_weight[..., None]
        along_pair, from_neighbour = coefficients.split(k, dim=-1)
        vectors = vectors + inverse_count[..., None] * (
            torch.einsum("bijk,bijc->bick", along_pair, relative)
            + torch.einsum("bijk,bjck->bick", from_neighbour, vectors)
        )
        h = h + self.node_update(torch.cat([x, messages.sum(2) * inverse_count], dim=-1))
        mixed = self.vector_mix(vector_rms_norm(vectors)).split(k, dim=-1)
        if self.chiral:
            # cross product of polar vectors: a pseudovector, the term that breaks mirror symmetry
            vectors = vectors + torch.linalg.cross(mixed[2], mixed[3], dim=2)
        h = h + self.invariant_feedback((mixed[0] * mixed[1]).sum(dim=2))
        vectors = vectors * torch.sigmoid(self.vector_gate(h))[:, :, None, :]
        return h, vectors


class EquivariantFlowNet(nn.Module):
    """Velocity field v(x_t, t | graph) [B, N, 3], exactly rotation-equivariant (see the module docstring)."""

    def __init__(
        self,
        hidden: int,
        layers: int,
        vector_channels: int,
        chiral: bool = True,
        cutoff: float | None = None,
        num_rbf: int = 16,
        rbf_max_distance: float = 10.0,
    ) -> None:
        super().__init__()
        self.equivariance = "SO3" if chiral else "E3"
        self.cutoff = cutoff
        self.element_embedding = nn.Embedding(NUM_ELEMENTS, hidden)
        self.time_embedding = TimeEmbedding(hidden)
        self.rbf = GaussianRBF(num_rbf, cutoff if cutoff is not None else rbf_max_distance)
        # the edge part of every layer's message MLP in one matmul over narrow (radial, bond, constant) features
        self.edge_projection = nn.Linear(edge_feature_count(num_rbf), layers * hidden, bias=False)
        self.layers = nn.ModuleList(EquivariantVectorLayer(hidden, vector_channels, chiral) for _ in range(layers))
        self.velocity_head = nn.Linear(vector_channels, 1, bias=False)  # no bias: a bias vector is not equivariant

    def forward(
        self, positions: Tensor, atomic_numbers: Tensor, mask: Tensor, bond_orders: Tensor, t: Tensor
    ) -> Tensor:
        batch, n = atomic_numbers.shape
        geometry = pair_geometry(positions, mask)
        pair_weight = geometry.pair_mask.to(positions.dtype)
        if self.cutoff is not None:
            pair_weight = pair_weight * cosine_cutoff(geometry.distances, self.cutoff)
        # EGNN's normalisation x_i - x_j over (d + 1): bounded for far pairs, linear for close ones
        relative = geometry.vectors / (geometry.distances[..., None] + 1.0)
        inverse_count = 1.0 / mask.sum(1).clamp(min=1).to(positions.dtype)[:, None, None]
        # masked pairs get zero pair features; their messages are zeroed by pair_weight inside the layers
        pair_features = edge_features(self.rbf(geometry.distances), bond_orders, geometry.pair_mask.to(positions.dtype))
        edges = self.edge_projection(pair_features).chunk(len(self.layers), dim=-1)
        h = self.element_embedding(atomic_numbers) + self.time_embedding(t)[:, None, :]
        vectors = positions.new_zeros(batch, n, 3, self.velocity_head.in_features)
        for layer, edge in zip(self.layers, edges, strict=True):
            h, vectors = layer(h, vectors, edge, relative, pair_weight, inverse_count)
        return self.velocity_head(vectors).squeeze(-1) * mask[..., None].to(positions.dtype)

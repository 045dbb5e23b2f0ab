"""PaiNN-style force field: an invariant energy and conservative forces F = -dE/dx.

Equivariant message passing (Schütt et al. 2021) with scalar features ``s [B, N, F]`` and vector features
``v [B, N, 3, F]`` over all pairs of distinct real atoms of a molecule, weighted by a cosine cutoff (default 5 Å);
bond orders enter the distance filter as one-hot pair features. The energy is a sum of per-atom scalars over
real atoms, invariant under rotations, translations and reflections (E(3)); the forces are therefore exactly
E(3)-equivariant.

The forces are computed inside ``forward`` with ``torch.func.grad`` of the energy with respect to the positions,
not ``torch.autograd.grad``: ``torch.func`` composes both with ordinary autograd (training on forces backpropagates
through the force computation) and with outer ``torch.func`` transforms (Hessian-vector products of a force loss
with respect to the parameters), where ``requires_grad_`` / ``torch.autograd.grad`` inside the transformed
function is refused. It also works under ``torch.no_grad()``, so evaluation gets forces too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from eqdyn.models.common import (
    NUM_ELEMENTS,
    GaussianRBF,
    cosine_cutoff,
    edge_feature_count,
    edge_features,
    pair_geometry,
)


class PaiNNLayer(nn.Module):
    """One message block and one update block of PaiNN, dense over the padded pair tensor."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        self.message_mlp = nn.Sequential(nn.Linear(features, features), nn.SiLU(), nn.Linear(features, 3 * features))
        self.vector_u = nn.Linear(features, features, bias=False)
        self.vector_v = nn.Linear(features, features, bias=False)
        self.update_mlp = nn.Sequential(nn.Linear(2 * features, features), nn.SiLU(), nn.Linear(features, 3 * features))

    def forward(self, s: Tensor, v: Tensor, edge_filter: Tensor, unit: Tensor) -> tuple[Tensor, Tensor]:
        f = self.features
        # message: filter [B, N, N, 3F] (already zero on masked pairs) times the sender's features
        x = self.message_mlp(s)[:, None, :, :] * edge_filter
        to_scalar, to_neighbour_vector, to_direction = x.split(f, dim=-1)
        s = s + to_scalar.sum(2)
        v = v + torch.einsum("bijf,bjcf->bicf", to_neighbour_vector, v)
        v = v + torch.einsum("bijf,bijc->bicf", to_direction, unit)
        # update: invariant norms and dot products of two channel mixtures of v
        vu, vv = self.vector_u(v), self.vector_v(v)
        vv_norm = torch.sqrt((vv * vv).sum(2) + 1e-8)  # eps: finite second derivatives where vv = 0
        a = self.update_mlp(torch.cat([s, vv_norm], dim=-1))
        a_vv, a_sv, a_ss = a.split(f, dim=-1)
        s = s + a_ss + a_sv * (vu * vv).sum(2)
        v = v + a_vv[:, :, None, :] * vu
        return s, v


class PaiNNForceField(nn.Module):
    """Invariant energy [B] and conservative forces [B, N, 3] (kcal/mol and kcal/mol/Å when trained on them).

    ``energy_scale`` multiplies the network's energy so that targets in kcal/mol can be matched from a unit-scale
    initialisation; a learned per-element reference energy (zero at initialisation) is added per atom.
    """

    equivariance = "E3"

    def __init__(
        self, features: int, layers: int, cutoff: float = 5.0, num_rbf: int = 20, energy_scale: float = 1.0
    ) -> None:
        super().__init__()
        self.features = features
        self.num_layers = layers
        self.cutoff = cutoff
        self.energy_scale = energy_scale
        self.element_embedding = nn.Embedding(NUM_ELEMENTS, features)
        self.rbf = GaussianRBF(num_rbf, cutoff)
        # every layer's filter from one linear map of the (radial, bond order, constant) pair features
        self.filter = nn.Linear(edge_feature_count(num_rbf), layers * 3 * features, bias=False)
        self.layers = nn.ModuleList(PaiNNLayer(features) for _ in range(layers))
        self.energy_head = nn.Sequential(nn.Linear(features, features), nn.SiLU(), nn.Linear(features, 1))
        self.reference_energy = nn.Embedding(NUM_ELEMENTS, 1)
        nn.init.zeros_(self.reference_energy.weight)

    def energy(self, positions: Tensor, atomic_numbers: Tensor, mask: Tensor, bond_orders: Tensor) -> Tensor:
        batch, n = atomic_numbers.shape
        geometry = pair_geometry(positions, mask)
        weight = geometry.pair_mask.to(positions.dtype) * cosine_cutoff(geometry.distances, self.cutoff)
        unit = geometry.vectors / geometry.distances[..., None]
        pair_features = edge_features(self.rbf(geometry.distances), bond_orders, weight)
        filters = self.filter(pair_features).split(3 * self.features, dim=-1)
        s = self.element_embedding(atomic_numbers)
        v = positions.new_zeros(batch, n, 3, self.features)
        for layer, edge_filter in zip(self.layers, filters, strict=True):
            s, v = layer(s, v, edge_filter, unit)
        atom_energy = self.energy_head(s) * self.energy_scale + self.reference_energy(atomic_numbers)
        return (atom_energy.squeeze(-1) * mask.to(positions.dtype)).sum(1)

    def forward(
        self, positions: Tensor, atomic_numbers: Tensor, mask: Tensor, bond_orders: Tensor
    ) -> dict[str, Tensor]:
        def total_energy(pos: Tensor) -> tuple[Tensor, Tensor]:
            energy = self.energy(pos, atomic_numbers, mask, bond_orders)
            return energy.sum(), energy

        gradient, energy = torch.func.grad(total_energy, has_aux=True)(positions)
        return {"energy": energy, "forces": -gradient * mask[..., None].to(positions.dtype)}

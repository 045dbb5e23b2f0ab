"""An EScAIP-like force field (after Qu & Krishnapriyan 2024, "The importance of being scalable"), written here:
neighbour attention over radial and directional edge features, an invariant energy and a NON-equivariant direct
force head. The paper's force field is EScAIP; fairchem-core's own implementation is not used because it runs in
float32 only (float64 symmetry tests and Hessians are impossible), needs CUDA packages or an undeclared
``--no-deps`` set to install, and builds its own differentiable k-nearest-neighbour graph (see README, Models).

Structure, per padded batch (all pairs of distinct real atoms of one molecule, weighted by a cosine cutoff):

- inputs: element embeddings, Gaussian radial features of |x_i - x_j|, and two invariant directional features
  built from the unit vectors u_ij: per atom, bond-orientational order sum_jk w_ij w_ik P_l(u_ij . u_ik) (Steinhardt
  q_l^2 up to normalisation), and in every attention logit the Legendre polynomials P_l(u_ij . u_ik) of the angle
  between two edges of one atom (EScAIP's frequency embedding). By the addition theorem of spherical harmonics both
  come from e3nn's real spherical harmonics Y_l(u_ij): the angular logits are one matrix product per atom and head.
- blocks: edge tokens t_ij attend over the other edges t_ik of the same atom i (a softmax with one null token, so
  an atom without neighbours attends to nothing and a neighbour entering the cutoff enters smoothly), then a
  feed-forward block; atom features collect their edges, and edges read their two atoms back.
- energy: a per-atom MLP of the atom features plus a learned per-element reference energy (zero at initialisation),
  summed over real atoms. Every input is a distance or a dot product of unit vectors, so the energy is invariant
  under rotations, reflections and translations by construction.
- forces (direct, as EScAIP's direct-force head): F_i = s_i * sum_j w_ij (A t_ij) * u_ij, with s_i a scalar from
  the atom features and A t_ij an invariant 3-vector per edge multiplied component by component with u_ij. The
  product is equivariant only if the three components of A t_ij agree, so the forces are NOT rotation-equivariant:
  for this family only the forces have to learn the symmetry, the energy has it already. The forces are not -dE/dx.

The neighbour mask (pairs under the cutoff) is chosen under ``no_grad``; the cosine cutoff makes every edge weight,
hence energy and forces, continuous where a pair crosses the cutoff. Normalisation is a hand-written RMSNorm (all
derivatives exact). Bond orders are not read: EScAIP sees geometry and elements only.
"""

from __future__ import annotations

import math

import torch
from e3nn.o3 import spherical_harmonics
from torch import Tensor, nn

from eqdyn.models.common import NUM_ELEMENTS, GaussianRBF, cosine_cutoff, pair_geometry

# Neighbour-sum normalisation: a fixed constant (molecules of <= ~30 atoms have 10-20 neighbours under 5 Å), not fitted.
AVERAGE_NEIGHBOURS = 12.0


class RMSNorm(nn.Module):
    def __init__(self, features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(features))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * self.weight


def harmonic_orders(max_order: int) -> Tensor:
    """The order l of each of the (L+1)^2 columns of e3nn's real spherical harmonics up to order L."""
    orders = torch.arange(max_order + 1, device="cpu")  # on the CPU also under a meta default device
    return torch.repeat_interleave(orders, 2 * orders + 1, output_size=(max_order + 1) ** 2)


def scaled_harmonics(unit: Tensor, max_order: int) -> Tensor:
    """Real spherical harmonics Y_l(u) / sqrt(2l+1) [..., (L+1)^2]: sum_m Y_lm(a) Y_lm(b) / (2l+1) = P_l(a . b)."""
    harmonics = spherical_harmonics(list(range(max_order + 1)), unit, normalize=False, normalization="component")
    scale = torch.rsqrt(2.0 * harmonic_orders(max_order).to(unit) + 1.0)
    return harmonics * scale


def feed_forward(features: int, multiplier: int = 2) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(features, multiplier * features), nn.SiLU(), nn.Linear(multiplier * features, features)
    )


class NeighbourAttentionBlock(nn.Module):
    """Edge tokens t [B, N(i), N(j), F] attend over the edges of their own atom i, with angular logits."""

    def __init__(self, features: int, heads: int, max_order: int, key_features: int) -> None:
        super().__init__()
        self.heads, self.orders, self.key_features = heads, max_order + 1, key_features
        projected = heads * self.orders * key_features
        self.attention_norm = RMSNorm(features)
        self.query = nn.Linear(features, projected, bias=False)
        self.key = nn.Linear(features, projected, bias=False)
        self.value = nn.Linear(features, features, bias=False)
        self.attention_out = nn.Linear(features, features)
        self.ffn_norm = RMSNorm(features)
        self.ffn = feed_forward(features)
        self.node_norm = RMSNorm(features)
        self.edge_to_node = nn.Linear(features, features)
        self.node_ffn = feed_forward(features)
        self.receiver_to_edge = nn.Linear(features, features, bias=False)
        self.sender_to_edge = nn.Linear(features, features, bias=False)

    def forward(self, h: Tensor, t: Tensor, weight: Tensor, harmonics: Tensor) -> tuple[Tensor, Tensor]:
        """``weight`` [B, N, N] (cutoff envelope, 0 off the neighbour graph), ``harmonics`` [B, N, N, (L+1)^2]
        (real spherical harmonics of u_ij, order l scaled by 1/sqrt(2l+1))."""
        batch, n, _, features = t.shape
        heads, orders, dk = self.heads, self.orders, self.key_features
        x = self.attention_norm(t)
        columns = [2 * order + 1 for order in range(orders)]

        def angular(projection: nn.Module) -> Tensor:
            # q_l(t_ij) (x) Y_l(u_ij) for every order l, flattened: [B, N(i), H, N(j), (L+1)^2 dk]
            per_order = projection(x).view(batch, n, n, heads, orders, dk).unbind(4)
            expanded = [
                (q[:, :, :, :, None, :] * y[:, :, :, None, :, None]).flatten(-2)
                for q, y in zip(per_order, harmonics.split(columns, dim=-1), strict=True)
            ]
            return torch.cat(expanded, dim=-1).transpose(2, 3)

        # logits[b, i, h, j, k] = sum_l P_l(u_ij . u_ik) q_l(t_ij) . k_l(t_ik) by the addition theorem: invariant
        # angles between two edges of atom i, computed as one matrix product per atom and head
        logits = angular(self.query) @ angular(self.key).transpose(-1, -2) / math.sqrt(orders * dk)
        # softmax over neighbours k plus a null token of logit 0; edge weights multiply the exponentials, so keys
        # off the graph get exactly zero weight and a key at the cutoff enters continuously
        key_weight = weight[:, :, None, None, :]
        logits = torch.where(key_weight > 0, logits, torch.zeros_like(logits))
        shift = torch.clamp(logits.amax(-1, keepdim=True), min=0.0).detach()
        numerators = key_weight * torch.exp(logits - shift)
        attention = numerators / (torch.exp(-shift) + numerators.sum(-1, keepdim=True))
        values = self.value(x).view(batch, n, n, heads, features // heads).transpose(2, 3)  # [B, N(i), H, N(k), d]
        attended = (attention @ values).transpose(2, 3).reshape(batch, n, n, features)
        t = t + self.attention_out(attended)
        t = t + self.ffn(self.ffn_norm(t))
        # atoms collect their edges (weighted, so edges off the graph contribute nothing), then edges read atoms
        collected = (weight[..., None] * self.edge_to_node(t)).sum(2) / AVERAGE_NEIGHBOURS
        h = h + collected
        h = h + self.node_ffn(self.node_norm(h))
        t = t + self.receiver_to_edge(h)[:, :, None, :] + self.sender_to_edge(h)[:, None, :, :]
        return h, t


class EScAIPLikeForceField(nn.Module):
    """Invariant energy [B] and direct, non-equivariant forces [B, N, 3] (see the module docstring).

    ``features`` must be divisible by ``heads``; each head's angular logits use ``max_order + 1`` Legendre orders
    with ``key_features`` query/key features each (default ``features // (heads * (max_order + 1))``, at least 2).
    ``energy_scale`` and ``force_scale`` multiply the outputs so that kcal/mol targets are reachable from a
    unit-scale initialisation.
    """

    equivariance = "none"  # the energy alone is E(3)-invariant by construction; the forces are not equivariant

    def __init__(
        self,
        features: int,
        layers: int,
        heads: int = 4,
        max_order: int = 3,
        key_features: int | None = None,
        num_rbf: int = 32,
        cutoff: float = 5.0,
        energy_scale: float = 1.0,
        force_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if features % heads:
            raise ValueError(f"features ({features}) must be divisible by heads ({heads})")
        if max_order < 1:
            raise ValueError(f"max_order must be at least 1, not {max_order}")
        self.features, self.num_layers, self.max_order, self.cutoff = features, layers, max_order, cutoff
        self.energy_scale, self.force_scale = energy_scale, force_scale
        key_features = key_features or max(2, features // (heads * (max_order + 1)))
        self.element_embedding = nn.Embedding(NUM_ELEMENTS, features)
        self.orientational_order = nn.Linear(max_order + 1, features, bias=False)
        self.rbf = GaussianRBF(num_rbf, cutoff)
        self.edge_radial = nn.Linear(num_rbf, features)
        self.edge_receiver = nn.Linear(features, features, bias=False)
        self.edge_sender = nn.Linear(features, features, bias=False)
        self.edge_input = feed_forward(features, multiplier=1)
        self.blocks = nn.ModuleList(
            NeighbourAttentionBlock(features, heads, max_order, key_features) for _ in range(layers)
        )
        self.energy_head = nn.Sequential(
            RMSNorm(features), nn.Linear(features, features), nn.SiLU(), nn.Linear(features, 1)
        )
        self.reference_energy = nn.Embedding(NUM_ELEMENTS, 1)
        nn.init.zeros_(self.reference_energy.weight)
        self.force_edge_norm = RMSNorm(features)
        self.force_direction = nn.Sequential(nn.Linear(features, features), nn.SiLU(), nn.Linear(features, 3))
        self.force_magnitude = nn.Sequential(
            RMSNorm(features), nn.Linear(features, features), nn.SiLU(), nn.Linear(features, 1)
        )

    def features_of(
        self, positions: Tensor, atomic_numbers: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Atom features [B, N, F], edge tokens [B, N, N, F], edge weights [B, N, N] and unit vectors [B, N, N, 3]."""
        geometry = pair_geometry(positions, mask)
        with torch.no_grad():  # the neighbour graph: which pairs are computed, not differentiated
            neighbours = geometry.pair_mask & (geometry.distances < self.cutoff)
        distances = torch.where(neighbours, geometry.distances, torch.full_like(geometry.distances, self.cutoff))
        weight = torch.where(neighbours, cosine_cutoff(distances, self.cutoff), torch.zeros_like(distances))
        unit = geometry.vectors / geometry.distances[..., None]  # zero off the real pairs
        harmonics = scaled_harmonics(unit, self.max_order)  # [B, N, N, (L+1)^2]
        # bond-orientational order per atom: |sum_j w_ij Y_l(u_ij)|^2 / (2l+1) = sum_jk w_ij w_ik P_l(cos angle_jik),
        # normalised by (1 + sum_j w_ij)^2
        summed = torch.einsum("bij,bijm->bim", weight, harmonics)
        order_matrix = nn.functional.one_hot(harmonic_orders(self.max_order), self.max_order + 1).to(summed)
        order = (summed * summed) @ order_matrix / (1.0 + weight.sum(-1))[..., None] ** 2
        h = self.element_embedding(atomic_numbers) + self.orientational_order(order)
        t = self.edge_input(
            self.edge_radial(self.rbf(distances))
            + self.edge_receiver(h)[:, :, None, :]
            + self.edge_sender(h)[:, None, :, :]
        )
        for block in self.blocks:
            h, t = block(h, t, weight, harmonics)
        return h, t, weight, unit

    def forward(
        self, positions: Tensor, atomic_numbers: Tensor, mask: Tensor, bond_orders: Tensor
    ) -> dict[str, Tensor]:
        del bond_orders  # geometry and elements only, as EScAIP
        h, t, weight, unit = self.features_of(positions, atomic_numbers, mask)
        real = mask.to(positions.dtype)
        atom_energy = self.energy_head(h).squeeze(-1) * self.energy_scale + self.reference_energy(
            atomic_numbers
        ).squeeze(-1)
        energy = (atom_energy * real).sum(1)
        # direct forces: an invariant 3-vector per edge times the edge's unit vector, component by component
        direction = (weight[..., None] * self.force_direction(self.force_edge_norm(t)) * unit).sum(2)
        forces = direction * self.force_magnitude(h) * self.force_scale
        return {"energy": energy, "forces": forces * real[..., None]}

"""Non-equivariant transformer over atoms: the unconstrained baseline of the flow-matching and force-field tasks.

Tokens are ``embedding(Z) + linear(raw Cartesian coordinates)`` (+ a time embedding for flow matching), so the
network sees the absolute orientation and must learn rotational symmetry from augmentation. The molecular graph
enters as an additive per-head attention bias looked up from the bond order (one table row per layer and head).
Padded atoms are masked out as keys; their own outputs are zeroed by the heads.

With ``geometry="relative"`` (family ``relative_transformer``) each atom's token also gets a linear map of its
relative-geometry features ``sum_j rbf(|x_j - x_i|) (x) onehot(bond_ij) (x) (x_j - x_i)`` (16 Gaussians up to 5 Å):
still not equivariant (the map mixes x, y and z freely), but forces near equilibrium are linear in these features,
where raw-coordinate tokens must resolve 0.03 Å displacements on a 5 Å scale (the force-field transformer with raw
tokens stays at the constant model's loss; EScAIP itself embeds edge directions and distances).

Attention has two implementations, chosen by ``attention`` (constructor argument, or assign the attribute on a
built model, e.g. ``model.trunk.attention = "math"``):

- ``"sdpa"`` (default): ``F.scaled_dot_product_attention`` with the float bias as ``attn_mask``. Fused kernels have
  no double backward: Hessian-vector products must either switch to ``"math"`` or run inside
  ``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``.
- ``"math"``: the explicit ``softmax(Q K^T / sqrt(d) + bias) V``, twice differentiable everywhere.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eqdyn.models.common import NUM_BOND_TYPES, NUM_ELEMENTS, GaussianRBF, TimeEmbedding, pair_geometry

AttentionImpl = Literal["sdpa", "math"]
Geometry = Literal["raw", "relative"]
RELATIVE_RBF = 16
RELATIVE_CUTOFF = 5.0  # Å: the RBF centres span [0, 5]; no hard cutoff (molecules here are < 12 Å across)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: x + Attn(LN(x), bias), then x + MLP(LN(x)) with a GELU MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.norm_attention = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, attention_bias: Tensor, attention: AttentionImpl) -> Tensor:
        batch, n, dim = x.shape
        qkv = self.qkv(self.norm_attention(x)).view(batch, n, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, N, d_head]
        if attention == "sdpa":
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_bias.to(q.dtype))
        else:
            scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1])) + attention_bias.to(q.dtype)
            attended = torch.softmax(scores, dim=-1) @ v
        x = x + self.out(attended.transpose(1, 2).reshape(batch, n, dim))
        return x + self.mlp(self.norm_mlp(x))


class AtomTransformerTrunk(nn.Module):
    """Per-atom features [B, N, dim] from raw coordinates, elements, bond orders and an optional conditioning."""

    def __init__(
        self,
        dim: int,
        layers: int,
        heads: int,
        mlp_ratio: float = 4.0,
        attention: AttentionImpl = "sdpa",
        geometry: Geometry = "raw",
    ) -> None:
        super().__init__()
        if attention not in ("sdpa", "math"):
            raise ValueError(f"unknown attention implementation {attention!r}: expected 'sdpa' or 'math'")
        if geometry not in ("raw", "relative"):
            raise ValueError(f"unknown geometry {geometry!r}: expected 'raw' or 'relative'")
        self.attention: AttentionImpl = attention
        self.heads = heads
        self.num_layers = layers
        self.element_embedding = nn.Embedding(NUM_ELEMENTS, dim)
        self.coordinate_embedding = nn.Linear(3, dim)
        self.relative_rbf: GaussianRBF | None = None
        self.relative_embedding: nn.Linear | None = None
        if geometry == "relative":
            self.relative_rbf = GaussianRBF(RELATIVE_RBF, RELATIVE_CUTOFF)
            # features ordered (rbf, bond type, xyz) with xyz fastest: the rotation acts on it as on W [d, 3] blocks
            self.relative_embedding = nn.Linear(RELATIVE_RBF * NUM_BOND_TYPES * 3, dim)
        # one table for all layers: a single lookup yields every layer's per-head bias
        self.bond_bias = nn.Embedding(NUM_BOND_TYPES, layers * heads)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio) for _ in range(layers))
        self.final_norm = nn.LayerNorm(dim)

    def forward(
        self,
        positions: Tensor,
        atomic_numbers: Tensor,
        mask: Tensor,
        bond_orders: Tensor,
        conditioning: Tensor | None = None,
    ) -> Tensor:
        batch, n = atomic_numbers.shape
        positions = positions * mask[..., None].to(positions.dtype)  # garbage at padding must not reach anything
        bond_one_hot = F.one_hot(bond_orders, NUM_BOND_TYPES).to(positions.dtype)  # [B, N, N, bond types]
        x = self.element_embedding(atomic_numbers) + self.coordinate_embedding(positions)
        if self.relative_embedding is not None:
            x = x + self.relative_embedding(self.relative_features(positions, mask, bond_one_hot))
        if conditioning is not None:
            x = x + conditioning[:, None, :]
        # Every layer's bias from one product of the bond-order one-hots with the table, split with unbind: the same
        # values as an embedding lookup, but the backward (and double backward) is one small matrix product, where
        # slicing a [layers, B, heads, N, N] lookup zero-filled that whole tensor per layer (a fifth of a step).
        by_pair = bond_one_hot.view(batch, n * n, NUM_BOND_TYPES).transpose(1, 2)
        biases = (self.bond_bias.weight.t() @ by_pair).view(batch, self.num_layers, self.heads, n, n)
        # padded keys get -inf; an all-padding molecule keeps its keys so that its softmax rows are not NaN
        key_allowed = mask | ~mask.any(dim=1, keepdim=True)
        key_penalty = torch.zeros(batch, 1, 1, n, dtype=x.dtype, device=x.device)
        key_penalty = key_penalty.masked_fill(~key_allowed[:, None, None, :], float("-inf"))
        for block, bias in zip(self.blocks, biases.unbind(1), strict=True):
            x = block(x, bias + key_penalty, self.attention)
        return self.final_norm(x)

    def relative_features(self, positions: Tensor, mask: Tensor, bond_one_hot: Tensor) -> Tensor:
        """[B, N, rbf * bond types * 3]: sum over the other real atoms j of rbf(d_ij) onehot(bond_ij) (x_j - x_i),
        from the one-hot bond orders [B, N, N, bond types]."""
        assert self.relative_rbf is not None
        geometry = pair_geometry(positions, mask)  # twice differentiable; zero on padded and diagonal pairs
        weights = self.relative_rbf(geometry.distances) * geometry.pair_mask[..., None].to(positions.dtype)
        features = torch.einsum("bijk,bijt,bijc->biktc", weights, bond_one_hot, -geometry.vectors)  # x_i - x_j given
        return features.flatten(2)


def coordinate_action(geometry: Geometry) -> dict[str, str]:
    """The trunk's parameters a rotation acts on (see FlowTransformer.rotation_action)."""
    action = {"trunk.coordinate_embedding.weight": "input"}
    if geometry == "relative":
        action["trunk.relative_embedding.weight"] = "input"
    return action


class FlowTransformer(nn.Module):
    """Flow-matching velocity field v(x_t, t | graph) [B, N, 3]; not equivariant (learns symmetry from data)."""

    equivariance = "none"

    def __init__(
        self,
        dim: int,
        layers: int,
        heads: int,
        mlp_ratio: float = 4.0,
        attention: AttentionImpl = "sdpa",
        geometry: Geometry = "raw",
    ) -> None:
        super().__init__()
        #: How a rotation R acts on the parameters so that f(x; R.theta) = R^T f(R x; theta) (the twist), exactly:
        #: "input" weights W -> W R (on each block of 3 columns), "output" weights and biases W -> R^T W; every
        #: other parameter is invariant.
        self.rotation_action = {
            **coordinate_action(geometry),
            "velocity_head.weight": "output",
            "velocity_head.bias": "output",
        }
        self.trunk = AtomTransformerTrunk(dim, layers, heads, mlp_ratio, attention, geometry)
        self.time_embedding = TimeEmbedding(dim)
        self.velocity_head = nn.Linear(dim, 3)

    def forward(
        self, positions: Tensor, atomic_numbers: Tensor, mask: Tensor, bond_orders: Tensor, t: Tensor
    ) -> Tensor:
        features = self.trunk(positions, atomic_numbers, mask, bond_orders, self.time_embedding(t))
        return self.velocity_head(features) * mask[..., None].to(features.dtype)


class ForceFieldTransformer(nn.Module):
    """Energy (sum of per-atom scalars) and DIRECT forces (a linear head per atom), as in the EScAIP baseline.

    The forces are not the gradient of the energy (non-conservative), and neither output is constrained by
    symmetry. ``energy_scale`` multiplies the network's energy so that targets in kcal/mol can be matched from a
    unit-scale initialisation; ``reference_energy`` adds a learned per-element offset (zero at initialisation).
    """

    equivariance = "none"

    def __init__(
        self,
        dim: int,
        layers: int,
        heads: int,
        mlp_ratio: float = 4.0,
        attention: AttentionImpl = "sdpa",
        energy_scale: float = 1.0,
        geometry: Geometry = "raw",
    ) -> None:
        super().__init__()
        #: See FlowTransformer.rotation_action; the energy head is invariant.
        self.rotation_action = {
            **coordinate_action(geometry),
            "force_head.weight": "output",
            "force_head.bias": "output",
        }
        self.trunk = AtomTransformerTrunk(dim, layers, heads, mlp_ratio, attention, geometry)
        self.energy_head = nn.Linear(dim, 1)
        self.force_head = nn.Linear(dim, 3)
        self.reference_energy = nn.Embedding(NUM_ELEMENTS, 1)
        nn.init.zeros_(self.reference_energy.weight)
        self.energy_scale = energy_scale

    def forward(
        self, positions: Tensor, atomic_numbers: Tensor, mask: Tensor, bond_orders: Tensor
    ) -> dict[str, Tensor]:
        features = self.trunk(positions, atomic_numbers, mask, bond_orders)
        real = mask[..., None].to(features.dtype)
        atom_energy = self.energy_head(features) * self.energy_scale + self.reference_energy(atomic_numbers)
        energy = (atom_energy * real).sum(dim=(1, 2))
        return {"energy": energy, "forces": self.force_head(features) * real}

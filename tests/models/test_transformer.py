"""The atom transformer: its attention bias equals a per-layer table lookup; its relative-geometry features."""

from __future__ import annotations

import torch
from models_testing import make_batch

from eqdyn.models import build_model
from eqdyn.models.transformer import TransformerBlock


def test_each_layer_and_head_gets_its_own_bond_order_bias() -> None:
    torch.manual_seed(0)
    model = build_model("flow_matching", "transformer", "xs").double()
    trunk = model.trunk
    torch.nn.init.normal_(trunk.bond_bias.weight)  # distinct entries, so a mixed-up layer or head shows
    batch = make_batch([5, 7, 3], 7)
    seen: list[torch.Tensor] = []
    hooks = [
        block.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
        for block in trunk.blocks
        if isinstance(block, TransformerBlock)
    ]
    model(*batch.inputs(), batch.t)
    for hook in hooks:
        hook.remove()
    table = trunk.bond_bias.weight.view(-1, trunk.num_layers, trunk.heads)  # [bond type, layer, head]
    for layer, bias in enumerate(seen):
        expected = table[batch.bond_orders, layer].permute(0, 3, 1, 2)  # [B, heads, N, N]
        real_keys = batch.mask[:, None, None, :].expand_as(bias)
        assert torch.equal(bias[real_keys], expected[real_keys])
        assert torch.isneginf(bias[~real_keys]).all()


def test_relative_features_sum_rbf_bond_and_direction_over_the_other_real_atoms() -> None:
    model = build_model("force_field", "relative_transformer", "xs").double()
    trunk = model.trunk
    assert trunk.relative_rbf is not None
    # atoms 0 and 1 single-bonded 1.2 Å apart on x, atom 2 unbonded 2 Å up on z, atom 3 padding far away
    positions = torch.tensor(
        [[[0.0, 0.0, 0.0], [1.2, 0.0, 0.0], [0.0, 0.0, 2.0], [9.0, 9.0, 9.0]]], dtype=torch.float64
    )
    mask = torch.tensor([[True, True, True, False]])
    bonds = torch.zeros(1, 4, 4, dtype=torch.long)
    bonds[0, 0, 1] = bonds[0, 1, 0] = 1
    bond_one_hot = torch.nn.functional.one_hot(bonds, 5).double()
    features = trunk.relative_features(positions, mask, bond_one_hot).view(1, 4, -1, 5, 3)  # [B, N, rbf, bond, xyz]
    rbf = trunk.relative_rbf
    expected_atom0 = torch.zeros(features.shape[2:], dtype=torch.float64)
    expected_atom0[:, 1] += rbf(torch.tensor(1.2, dtype=torch.float64))[:, None] * torch.tensor([1.2, 0.0, 0.0])
    expected_atom0[:, 0] += rbf(torch.tensor(2.0, dtype=torch.float64))[:, None] * torch.tensor([0.0, 0.0, 2.0])
    assert torch.allclose(features[0, 0], expected_atom0, atol=1e-12)
    assert torch.equal(features[0, 3], torch.zeros_like(features[0, 3]))  # padding sees nothing
    # the raw-coordinate family has no such features
    assert build_model("force_field", "transformer", "xs").trunk.relative_embedding is None

"""The atom transformer's attention bias: the fast one-hot product equals a per-layer table lookup."""

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

"""The rotation group acting on a model's parameters, where such an action exists.

For the atom transformer, rotating the input coordinates is the same as right-multiplying the coordinate embedding
by R, and reading vector outputs back in the input frame is left-multiplying the vector head by R^T: with
``g.theta`` so defined, ``f(x; g.theta) = f_g(x; theta)`` exactly (tested). The parameters fixed by every rotation
form the equivariant subspace; since E_g[R] = 0 for Haar R, the projection onto it (the parameter twirl
E_g[g.theta]) zeroes the acted-on tensors, and the rest, theta_perp, is exactly those tensors. The analyses test
L_equiv against ||theta_perp||^2 (the paper's "quadratic relationship in a decomposed parameter space").

Models declare the action as a class attribute ``rotation_action`` = {parameter name: "input" | "output"}; models
without it (message-passing networks, U-Nets: their rotations do not act linearly on weights) return None.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def rotation_action(model: nn.Module) -> dict[str, str] | None:
    return getattr(model, "rotation_action", None)


def act_on_parameters(model: nn.Module, rotation: Tensor) -> dict[str, Tensor]:
    """The parameters ``g.theta`` for one rotation ``rotation [3, 3]``, as a name -> tensor dict."""
    action = rotation_action(model)
    if action is None:
        raise ValueError(f"{type(model).__name__} declares no rotation action on its parameters")
    acted = {}
    for name, value in model.named_parameters():
        kind = action.get(name)
        r = rotation.to(value.dtype)
        if kind == "input":  # W [d, 3m], xyz fastest: features W (I_m (x) R) x, so W -> W (I_m (x) R)
            acted[name] = (value.unflatten(-1, (-1, 3)) @ r).flatten(-2)
        elif kind == "output":  # W [3, d] or b [3]: R^T (W h + b)
            acted[name] = r.T @ value
        else:
            acted[name] = value
    return acted


def nonequivariant_sq_norm(model: nn.Module) -> float | None:
    """||theta_perp||^2: the squared norm of the parameters outside the rotation-fixed subspace; None if undefined."""
    action = rotation_action(model)
    if action is None:
        return None
    params = dict(model.named_parameters())
    with torch.no_grad():
        return float(sum(params[name].double().pow(2).sum() for name in action))

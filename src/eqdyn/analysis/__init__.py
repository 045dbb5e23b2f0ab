"""Analyses of trained models written once against the Task interface: Hessians of the loss decomposition and
their spectra (see :mod:`eqdyn.analysis.hessian`, :mod:`eqdyn.analysis.lanczos`, :mod:`eqdyn.analysis.conditioning`).
"""

from __future__ import annotations

from eqdyn.analysis.conditioning import conditioning_rows, hessian_conditioning
from eqdyn.analysis.hessian import (
    LOSS_NAMES,
    FixedBatchLosses,
    HessianOperator,
    ParameterLayout,
    batch_losses,
    hvp_forward_over_reverse,
    hvp_reverse_over_reverse,
    second_order_mode,
)
from eqdyn.analysis.lanczos import (
    LanczosTridiagonal,
    SpectralQuadrature,
    TopEigenvalues,
    TraceEstimate,
    broadened_density,
    hutchinson_trace,
    lanczos,
    lanczos_block,
    probe_vector,
    stochastic_lanczos_quadrature,
    top_eigenvalues,
)

__all__ = [
    "LOSS_NAMES",
    "FixedBatchLosses",
    "HessianOperator",
    "LanczosTridiagonal",
    "ParameterLayout",
    "SpectralQuadrature",
    "TopEigenvalues",
    "TraceEstimate",
    "batch_losses",
    "broadened_density",
    "conditioning_rows",
    "hessian_conditioning",
    "hutchinson_trace",
    "hvp_forward_over_reverse",
    "hvp_reverse_over_reverse",
    "lanczos",
    "lanczos_block",
    "probe_vector",
    "second_order_mode",
    "stochastic_lanczos_quadrature",
    "top_eigenvalues",
]

"""NequIP (Batzner et al. 2022) as an equivariant force-field family, from the ``nequip`` package (pinned in
envs/requirements.txt), behind the padded-batch force-field interface of :mod:`eqdyn.models`.

Glue, per forward pass:

- graph: the real atoms of the padded batch become the nodes; the edges are the ordered pairs of distinct real atoms
  of one molecule closer than the cutoff, chosen under ``no_grad`` (``torch.cdist`` has no double backward, and the
  choice of neighbours is not differentiated). nequip computes the edge vectors itself by indexing the positions,
  and its polynomial cutoff envelope makes the energy smooth where a pair crosses the cutoff.
- types: atomic numbers map to nequip type indices through ``elements`` (chemical symbols; by default every element
  up to atomic number 118, as the other families embed every atomic number; pass the config's ``data.elements`` to
  restrict it). A real atom of another element is refused.
- energy: nequip's total energy (float64 inside nequip whatever the model dtype) times ``energy_scale``, plus a
  learned per-element reference energy (zero at initialisation), as in :class:`~eqdyn.models.painn.PaiNNForceField`,
  returned in the positions' dtype. Invariant under rotations, reflections and translations (E(3)).
- forces: -dE/dx by ``torch.func.grad`` of the energy inside ``forward`` (as PaiNN does), never through nequip's own
  force module (built with ``do_derivatives=False``), which calls ``torch.autograd.grad`` and so cannot be traced by
  ``torch.func``. The forces therefore compose with ordinary autograd (training backpropagates through them), work
  under ``no_grad``, and admit both Hessian-vector-product paths of :class:`eqdyn.analysis.FixedBatchLosses`:
  forward-over-reverse (``torch.func.jvp`` of ``torch.func.grad``) and reverse-over-reverse (plain double backward);
  the tests check both against a dense Hessian.

nequip's global-state setup (``set_global_state``) changes process-wide settings: torch's default dtype to float64,
the global seeds of torch, numpy and ``random``, the TorchScript fusion strategy, environment variables, two
``torch._dynamo`` flags, the tensor sharing strategy of ``torch.multiprocessing`` and, on CUDA, TF32. It is run once,
on the first construction, inside :func:`_contained_global_state`, which puts all of those back. nequip also fixes
its modules' output dtype at construction; :meth:`NequIPForceField._apply` moves those markers along with
``.double()`` / ``.float()`` / ``.to(dtype)``, so one model runs in float32 (training) or float64 (tests).
"""

from __future__ import annotations

import contextlib
import os
import random
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from eqdyn.models.common import NUM_ELEMENTS

# Chemical elements nequip can type by default: every atomic number our embeddings know (row 0 is padding).
MAX_ATOMIC_NUMBER = min(118, NUM_ELEMENTS - 1)
# Pair-count normalisation of nequip's message sums: a fixed constant (molecules of <= ~30 atoms under a 5 Å cutoff
# have 10-20 neighbours per atom), not fitted on data, so that no labels enter the model's definition.
DEFAULT_AVG_NUM_NEIGHBORS = 12.0


def element_symbols(atomic_numbers: Sequence[int]) -> list[str]:
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    return [table.GetElementSymbol(int(z)) for z in atomic_numbers]


def atomic_numbers_of(symbols: Sequence[str]) -> list[int]:
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    numbers = []
    for symbol in symbols:
        try:
            number = table.GetAtomicNumber(symbol)
        except RuntimeError:  # rdkit raises on an unknown symbol
            number = 0
        if not 1 <= number <= MAX_ATOMIC_NUMBER:
            raise ValueError(f"elements: unknown chemical symbol {symbol!r}")
        numbers.append(number)
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"elements: duplicate symbols in {list(symbols)}")
    return numbers


@contextlib.contextmanager
def _contained_global_state() -> Iterator[None]:
    """Run a block that may change torch's process-wide state (nequip's global setup), then put it back."""
    import e3nn
    import torch._dynamo.config as dynamo_config

    default_dtype = torch.get_default_dtype()
    numpy_state = np.random.get_state()  # noqa: NPY002 (the legacy global generator is what seeding changes)
    python_state = random.getstate()
    environment = dict(os.environ)
    sharing_strategy = torch.multiprocessing.get_sharing_strategy()
    with warnings.catch_warnings():  # TorchScript's fusion API is deprecated, but nequip still sets it
        warnings.simplefilter("ignore", DeprecationWarning)
        fusion_strategy = torch.jit.set_fusion_strategy([("STATIC", 2), ("DYNAMIC", 10)])
        torch.jit.set_fusion_strategy(fusion_strategy)  # the call above only read it
    dynamo_flags = {
        name: getattr(dynamo_config, name) for name in ("capture_dynamic_output_shape_ops", "capture_scalar_outputs")
    }
    e3nn_defaults = e3nn.get_optimization_defaults()
    cuda_precision = None
    if torch.cuda.is_available():
        # torch.backends replaces itself at import with a module object that has this property; its stub lacks it
        cuda_precision = (torch.backends.fp32_precision, torch.backends.cuda.matmul.allow_tf32)  # type: ignore[attr-defined]
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            yield
    finally:
        torch.set_default_dtype(default_dtype)
        np.random.set_state(numpy_state)  # noqa: NPY002
        random.setstate(python_state)
        os.environ.clear()
        os.environ.update(environment)
        torch.multiprocessing.set_sharing_strategy(sharing_strategy)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.set_fusion_strategy(fusion_strategy)
        for name, value in dynamo_flags.items():
            setattr(dynamo_config, name, value)
        e3nn.set_optimization_defaults(**e3nn_defaults)
        if cuda_precision is not None:
            torch.backends.fp32_precision = cuda_precision[0]  # type: ignore[attr-defined]
            torch.backends.cuda.matmul.allow_tf32 = cuda_precision[1]


def _ensure_nequip_initialised() -> None:
    """nequip refuses to build models before its global state is set; set it once, with its side effects undone."""
    from nequip.utils.global_state import global_state_initialized, set_global_state

    if not global_state_initialized():
        with _contained_global_state():
            set_global_state(allow_tf32=False)


def _dtype_name(dtype: torch.dtype) -> str:
    names = {torch.float32: "float32", torch.float64: "float64"}
    if dtype not in names:
        raise ValueError(f"NequIP runs in float32 or float64, not {dtype}")
    return names[dtype]


class NequIPForceField(nn.Module):
    """NequIP energy [B] and conservative forces [B, N, 3] on padded batches (see the module docstring).

    ``layers``, ``l_max``, ``features`` (one multiplicity per rotation order, or one for all), ``radial_width`` and
    ``type_features`` are nequip's ``num_layers``, ``l_max``, ``num_features``, ``radial_mlp_width`` and
    ``type_embed_num_features``; ``parity=False`` keeps only the even/odd irreps a scalar energy needs (nequip's
    presets do the same), and the energy stays reflection-invariant either way. ``seed`` initialises nequip's weights
    (nequip seeds its own builder); by default it is drawn from torch's global generator, so that
    ``torch.manual_seed`` before construction fixes the initialisation as for the other families.
    """

    equivariance = "E3"
    type_index: Tensor  # buffer: atomic number -> nequip type index, -1 for elements the model lacks

    def __init__(
        self,
        layers: int,
        l_max: int,
        features: int | Sequence[int],
        radial_width: int = 64,
        type_features: int = 16,
        parity: bool = False,
        cutoff: float = 5.0,
        num_bessels: int = 8,
        avg_num_neighbors: float = DEFAULT_AVG_NUM_NEIGHBORS,
        energy_scale: float = 1.0,
        elements: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        numbers = list(range(1, MAX_ATOMIC_NUMBER + 1)) if elements is None else atomic_numbers_of(elements)
        self.elements = tuple(element_symbols(numbers))
        self.cutoff = cutoff
        self.energy_scale = energy_scale
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (), device="cpu").item())
        self.nequip_config: dict[str, Any] = {
            "num_layers": layers,
            "l_max": l_max,
            "parity": parity,
            "num_features": list(features) if isinstance(features, Sequence) else features,
            "type_embed_num_features": type_features,
            "radial_mlp_width": radial_width,
            "r_max": cutoff,
            "num_bessels": num_bessels,
            "avg_num_neighbors": avg_num_neighbors,
            "type_names": list(self.elements),
            "seed": seed,
        }
        self.network = self._build_network(torch.get_default_dtype())
        type_index = torch.full((NUM_ELEMENTS,), -1, dtype=torch.long)
        type_index[torch.tensor(numbers)] = torch.arange(len(numbers))
        self.register_buffer("type_index", type_index, persistent=False)
        # per-element reference energies, zero at initialisation (no draw from the global generator)
        self.reference_energy = nn.Parameter(torch.zeros(NUM_ELEMENTS))

    def _build_network(self, dtype: torch.dtype) -> nn.Module:
        from nequip.model import NequIPGNNModel

        _ensure_nequip_initialised()
        device = torch.get_default_device()
        # e3nn computes normalisation constants at construction, which a meta device cannot: build on the CPU then
        build_device = torch.device("cpu") if device.type == "meta" else device
        # nequip builds in its own default-dtype context; the guard also undoes anything else a build might touch
        with _contained_global_state(), warnings.catch_warnings(), torch.device(build_device):
            # no per-type energy scales/shifts inside nequip: ours are energy_scale and reference_energy
            warnings.filterwarnings("ignore", message=".*per_type_energy_(scales|shifts)=None.*")
            # forces are taken here (do_derivatives=False), so that nequip's forward holds no autograd.grad call
            network = NequIPGNNModel(model_dtype=_dtype_name(dtype), do_derivatives=False, **self.nequip_config)
        return network.to(device)

    def _apply(self, fn: Any, recurse: bool = True) -> NequIPForceField:
        # nequip stores its model dtype in plain attributes at construction: keep them with the parameters' dtype
        super()._apply(fn, recurse)
        dtype = next(p.dtype for p in self.network.parameters())
        for module in self.network.modules():
            for name in ("_output_dtype", "model_dtype"):
                if isinstance(getattr(module, name, None), torch.dtype):
                    setattr(module, name, dtype)
        return self

    def graph(self, positions: Tensor, atomic_numbers: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """nequip's input dictionary for the real atoms of a padded batch (positions kept differentiable)."""
        from nequip.data import AtomicDataDict

        batch, n = mask.shape
        with torch.no_grad():
            node_index = torch.full((batch, n), -1, dtype=torch.long, device=mask.device)
            node_index[mask] = torch.arange(int(mask.sum()), device=mask.device)
            distances = torch.cdist(positions.detach(), positions.detach())
            not_self = ~torch.eye(n, dtype=torch.bool, device=mask.device)
            pairs = mask[:, :, None] & mask[:, None, :] & not_self & (distances < self.cutoff)
            molecule, sender, receiver = pairs.nonzero(as_tuple=True)
            edge_index = torch.stack([node_index[molecule, sender], node_index[molecule, receiver]])
            types = self.type_index[atomic_numbers[mask]]
            if bool((types < 0).any()):
                unknown = sorted(set(atomic_numbers[mask][types < 0].tolist()))
                raise ValueError(f"atomic numbers {unknown} are not among this model's elements {self.elements}")
        return {
            AtomicDataDict.POSITIONS_KEY: positions[mask],
            AtomicDataDict.EDGE_INDEX_KEY: edge_index,
            AtomicDataDict.ATOM_TYPE_KEY: types,
            AtomicDataDict.BATCH_KEY: mask.nonzero(as_tuple=True)[0],
            AtomicDataDict.NUM_NODES_KEY: mask.sum(1),
        }

    def energy(self, positions: Tensor, atomic_numbers: Tensor, mask: Tensor) -> Tensor:
        from nequip.data import AtomicDataDict

        output = self.network(self.graph(positions, atomic_numbers, mask))
        network_energy = output[AtomicDataDict.TOTAL_ENERGY_KEY].reshape(-1).to(positions.dtype)
        references = (self.reference_energy[atomic_numbers] * mask.to(positions.dtype)).sum(1)
        return network_energy * self.energy_scale + references

    def forward(
        self, positions: Tensor, atomic_numbers: Tensor, mask: Tensor, bond_orders: Tensor
    ) -> dict[str, Tensor]:
        del bond_orders  # NequIP sees geometry and elements only

        def total_energy(pos: Tensor) -> tuple[Tensor, Tensor]:
            energy = self.energy(pos, atomic_numbers, mask)
            return energy.sum(), energy

        gradient, energy = torch.func.grad(total_energy, has_aux=True)(positions)
        return {"energy": energy, "forces": -gradient * mask[..., None].to(positions.dtype)}

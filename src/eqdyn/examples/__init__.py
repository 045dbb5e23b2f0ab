"""A small example set shipped with the package, and example models, so that ``python -m eqdyn.decompose`` runs
from a fresh clone or a plain ``pip install`` without the data stage.

``<task>.npz`` (:data:`EXAMPLE_TASKS`) are held-out splits in the format of :mod:`eqdyn.data.datasets` with a few
dozen QM9-like molecules (at most 9 heavy atoms of C, N, O, F; explicit H), made by
``python -m eqdyn.examples.make_examples`` (RDKit ETKDGv3 conformers minimised with MMFF94, seeded; force field:
perturbed copies labelled with MMFF94 energies and forces; voxels: the molecules that fit the default grid).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

EXAMPLE_TASKS = ("flow_matching", "force_field", "voxel_denoising")


def example_split(task: str) -> Path:
    """The shipped example split of ``task`` (a file inside the installed package)."""
    if task not in EXAMPLE_TASKS:
        raise ValueError(f"no example set for task {task!r}; there is one for {list(EXAMPLE_TASKS)}")
    path = Path(str(resources.files(__name__).joinpath(f"{task}.npz")))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the example set is missing from this installation "
            "(make it with python -m eqdyn.examples.make_examples)"
        )
    return path

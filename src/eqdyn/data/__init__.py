"""Data stage: acquire molecules, make conformers, compute force labels, write the per-task datasets.

Steps (each a ``python -m eqdyn.data.<module>`` CLI run by ``workflow/rules/data.smk``):

1. :mod:`eqdyn.data.acquire`: a seeded random subset of ``max_molecules`` distinct molecules from a source
   (:mod:`eqdyn.data.sources`, :mod:`eqdyn.data.download`, or a user's file: :mod:`eqdyn.data.user_molecules`)
   -> ``data/molecules.csv`` (+ ``data/duplicates.csv``).
2. :mod:`eqdyn.data.conformers`: RDKit ETKDGv3 + MMFF94 conformers, one job per shard.
3. :mod:`eqdyn.data.labels`: MMFF94 (or GFN2-xTB) energies and forces on perturbed conformers, per shard.
4. :mod:`eqdyn.data.datasets`: split by molecule, check every task's splits are big enough, write
   ``datasets/{task}/{split}.npz`` + manifests.

:mod:`eqdyn.data.voxelize` turns point clouds into Gaussian density grids on the fly (torch).
"""

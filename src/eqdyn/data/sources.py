"""Molecule sources: each yields a table with columns ``source_id`` (str) and ``smiles`` in the source's order.

Embedded sources are data files inside installed packages, read by path (the packages are never imported:
qm9pack's own loader is broken and ``moses`` pulls in old dependencies):

- ``qm9``: qm9pack's ``qm9pack/data/qm9_part{1,2,3}.csv`` (130,831 molecules; source_id = QM9 index).
- ``wehi``: RDKit's ``Pains/test_data/wehi_mols.csv`` (10,000 drug-like molecules; source_id = WEHI id).
- ``moses``: molsets' ``moses/dataset/data/train.csv.gz`` (~1.6M molecules; source_id = row number).

Download sources (see :mod:`eqdyn.data.download`) that are parsed into the same table:

- ``qm9_download``: DeepChem's qm9.zip. It holds ``gdb9.sdf`` (133,885 molecules, in QM9-index order); SMILES
  are written by RDKit from the SDF, and the 3,054 molecules of ``uncharacterized.txt`` are excluded. If the
  archive holds a ``qm9.csv`` with a ``smiles`` column instead, that column is used.
- ``geom_drugs_download``: the SMILES keys of ``rdkit_folder/summary_drugs.json``, streamed out of the archive
  (source_id = position in that file); the GEOM conformers themselves are not used.

- ``rmd17_download``: the ten molecules of rMD17 (source_id = molecule name, SMILES of :data:`eqdyn.data.rmd17.
  RMD17_SMILES`, one per ``npz_data/rmd17_<name>.npz``); their DFT labels come from :mod:`eqdyn.data.dft_labels`.
- ``spice_download``: one row per molecule group of the SPICE HDF5 (source_id = group name, SMILES = the group's
  mapped SMILES without atom maps); DFT labels likewise.

A user's own file, ``{smiles_file: path}`` (see :mod:`eqdyn.data.user_molecules`): source_id = the file's id
column, or the line number.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import tarfile
from pathlib import Path

import pandas as pd
from rdkit import Chem

from eqdyn.data.user_molecules import SMILES_FILE_KEY, read_smiles_file

EMBEDDED_SOURCES = ("qm9", "wehi", "moses")
TABULAR_DOWNLOAD_SOURCES = ("qm9_download", "geom_drugs_download", "rmd17_download", "spice_download")
QM9_UNCHARACTERIZED_COUNT = 3054  # stated by the QM9 authors in uncharacterized.txt and the paper


class SourceNotTabular(RuntimeError):
    """A download source that is fetched and verified but not parsed into a molecule table."""


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (see envs/ for how to install it)")
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_files(source: str) -> list[Path]:
    if source == "qm9":
        folder = package_dir("qm9pack") / "data"
        files = [folder / f"qm9_part{part}.csv" for part in (1, 2, 3)]
    elif source == "wehi":
        from rdkit import RDConfig

        files = [Path(os.path.join(RDConfig.RDDataDir, "Pains", "test_data", "wehi_mols.csv"))]
    elif source == "moses":
        files = [package_dir("moses") / "dataset" / "data" / "train.csv.gz"]
    else:
        raise ValueError(f"{source!r} is not an embedded source (embedded: {', '.join(EMBEDDED_SOURCES)})")
    missing = [str(path) for path in files if not path.exists()]
    if missing:
        raise FileNotFoundError(f"source {source!r}: missing data files {missing}")
    return files


def read_embedded(source: str) -> pd.DataFrame:
    files = embedded_files(source)
    if source == "qm9":
        # Only the two needed columns: the files also hold geometries and spectra (225 MB in all).
        parts = [pd.read_csv(path, usecols=["Index", "SMILES"]) for path in files]
        table = pd.concat(parts, ignore_index=True)
        table = pd.DataFrame({"source_id": table["Index"].astype(str), "smiles": table["SMILES"]})
    elif source == "wehi":
        table = pd.read_csv(files[0], header=None, names=["smiles", "source_id"], dtype=str)
    else:
        table = pd.read_csv(files[0], usecols=["SMILES"], dtype=str).rename(columns={"SMILES": "smiles"})
        table["source_id"] = table.index.astype(str)
    return table[["source_id", "smiles"]].reset_index(drop=True)


def parse_uncharacterized(path: str | os.PathLike[str]) -> set[int]:
    """QM9 indices (1-based) listed in uncharacterized.txt: 9 header lines, 2 footer lines, index first."""
    lines = Path(path).read_text().split("\n")[9:-2]
    indices = {int(line.split()[0]) for line in lines if line.strip()}
    if len(indices) != QM9_UNCHARACTERIZED_COUNT:
        raise ValueError(f"{path}: expected {QM9_UNCHARACTERIZED_COUNT} uncharacterized molecules, read {len(indices)}")
    return indices


def read_qm9_archive(folder: str | os.PathLike[str], excluded: set[int]) -> pd.DataFrame:
    """Molecule table of an extracted DeepChem qm9.zip, without the ``excluded`` QM9 indices."""
    folder = Path(folder)
    csvs = list(folder.rglob("qm9.csv"))
    if csvs:
        raw = pd.read_csv(csvs[0], usecols=["mol_id", "smiles"], dtype=str)
        index = raw["mol_id"].str.extract(r"(\d+)$", expand=False).astype(int)
        table = pd.DataFrame({"source_id": index.astype(str), "smiles": raw["smiles"]})
        return table[~index.isin(excluded)].reset_index(drop=True)
    sdfs = list(folder.rglob("gdb9.sdf"))
    if not sdfs:
        raise FileNotFoundError(f"{folder}: neither qm9.csv nor gdb9.sdf found in the QM9 archive")
    rows = []
    # Unsanitisable records keep an empty SMILES, so the conformer step counts them as parse failures.
    supplier = Chem.SDMolSupplier(str(sdfs[0]), removeHs=False, sanitize=True)
    for position, mol in enumerate(supplier):
        qm9_index = position + 1
        if mol is not None and (match := re.fullmatch(r"gdb_(\d+)", mol.GetProp("_Name").strip())):
            qm9_index = int(match.group(1))
        if qm9_index in excluded:
            continue
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol)) if mol is not None else ""
        rows.append((str(qm9_index), smiles))
    return pd.DataFrame(rows, columns=["source_id", "smiles"])


def read_geom_summary(archive: str | os.PathLike[str], member_suffix: str = "summary_drugs.json") -> pd.DataFrame:
    """SMILES keys of GEOM's summary file, streamed out of rdkit_folder.tar.gz without unpacking the rest."""
    with tarfile.open(archive, mode="r|*") as stream:
        for member in stream:
            if member.isfile() and member.name.endswith(member_suffix):
                handle = stream.extractfile(member)
                assert handle is not None
                summary = json.load(handle)
                smiles = list(summary)
                return pd.DataFrame({"source_id": [str(i) for i in range(len(smiles))], "smiles": smiles})
    raise FileNotFoundError(f"{archive}: no member ending in {member_suffix}")


def read_user_file(path: str | os.PathLike[str]) -> pd.DataFrame:
    molecules = read_smiles_file(path)
    return pd.DataFrame(
        {"source_id": [m.source_id for m in molecules], "smiles": [m.smiles for m in molecules]}, dtype=str
    )


def read_source(source: str | dict[str, str], download_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The molecule table of any configured source (downloading and verifying first for *_download)."""
    if isinstance(source, dict):
        return read_user_file(source[SMILES_FILE_KEY])
    if source in EMBEDDED_SOURCES:
        return read_embedded(source)
    from eqdyn.data.download import fetch_source

    paths = fetch_source(source, download_dir)
    if source == "qm9_download":
        return read_qm9_archive(paths["qm9.zip"], parse_uncharacterized(paths["uncharacterized.txt"]))
    if source == "geom_drugs_download":
        return read_geom_summary(paths["rdkit_folder.tar.gz"])
    if source == "rmd17_download":
        from eqdyn.data.rmd17 import molecule_table as rmd17_molecules

        return rmd17_molecules(paths["rmd17.tar.bz2"])
    if source == "spice_download":
        from eqdyn.data.spice import molecule_table as spice_molecules

        return spice_molecules(paths["SPICE-2.0.1.hdf5"])
    raise SourceNotTabular(
        f"{source}: downloaded and verified into {download_dir} ({', '.join(map(str, paths.values()))}), but "
        "parsing it into a molecule table is not implemented; use qm9, wehi, moses, qm9_download or "
        "geom_drugs_download as data.source"
    )

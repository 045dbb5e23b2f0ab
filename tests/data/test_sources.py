"""Molecule sources and the acquisition subset."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from eqdyn.data.acquire import draw_subset
from eqdyn.data.download import extract
from eqdyn.data.sources import (
    QM9_UNCHARACTERIZED_COUNT,
    embedded_files,
    parse_uncharacterized,
    read_embedded,
    read_geom_summary,
    read_qm9_archive,
)


def test_qm9_embedded_table() -> None:
    table = read_embedded("qm9")
    assert list(table.columns) == ["source_id", "smiles"]
    assert len(table) == 130_831
    assert table.loc[0, "smiles"] == "C" and table.loc[0, "source_id"] == "1"
    assert table["source_id"].is_unique


def test_wehi_and_moses_files_are_found_without_importing_the_packages() -> None:
    wehi = read_embedded("wehi")
    assert len(wehi) == 10_000 and wehi.loc[0, "source_id"].startswith("WEHI-")
    assert Chem.MolFromSmiles(wehi.loc[0, "smiles"]) is not None
    (moses,) = embedded_files("moses")
    assert moses.name == "train.csv.gz"
    assert list(pd.read_csv(moses, nrows=3).columns) == ["SMILES"]
    assert "moses" not in sys.modules and "qm9pack" not in sys.modules


def test_subset_is_seeded_nested_and_numbered() -> None:
    smiles = [f"[{i + 1}CH4]" for i in range(1000)]  # 1000 distinct molecules (isotope labels)
    table = pd.DataFrame({"source_id": [str(i) for i in range(1000)], "smiles": smiles})
    small = draw_subset(table, "toy", 50, seed=3).molecules
    large = draw_subset(table, "toy", 200, seed=3).molecules
    assert small["molecule_id"].tolist() == list(range(50))
    assert small["source_id"].tolist() == large["source_id"].iloc[:50].tolist()  # nested: same ids
    assert draw_subset(table, "toy", 50, seed=3).molecules.equals(small)
    assert not draw_subset(table, "toy", 50, seed=4).molecules["source_id"].equals(small["source_id"])
    assert small["source_id"].is_unique
    assert len(draw_subset(table, "toy", 5000, seed=3).molecules) == 1000


def write_uncharacterized(path: Path, indices: list[int]) -> None:
    header = [f" header line {i}" for i in range(9)]
    rows = [f"  {index:6d}  {index * 7:8d}  -0.1  0.2" for index in indices]
    path.write_text("\n".join([*header, *rows, " footer", ""]))


def test_uncharacterized_list_parse_and_count_check(tmp_path: Path) -> None:
    path = tmp_path / "uncharacterized.txt"
    indices = list(range(21, 21 + QM9_UNCHARACTERIZED_COUNT))
    write_uncharacterized(path, indices)
    assert parse_uncharacterized(path) == set(indices)
    write_uncharacterized(path, indices[:-1])
    with pytest.raises(ValueError, match="expected 3054"):
        parse_uncharacterized(path)


def test_qm9_archive_sdf_excludes_uncharacterized(tmp_path: Path) -> None:
    sdf = io.StringIO()
    writer = Chem.SDWriter(sdf)
    for index, smiles in enumerate(["C", "N", "CCO"], start=1):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=1)
        mol.SetProp("_Name", f"gdb_{index}")
        writer.write(mol)
    writer.close()
    archive = tmp_path / "qm9.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("gdb9.sdf", sdf.getvalue())
        handle.writestr("gdb9.sdf.csv", "mol_id,A\ngdb_1,1\n")
    folder = extract(archive, "zip", tmp_path / "qm9.zip.d")
    table = read_qm9_archive(folder, excluded={2})
    assert table["source_id"].tolist() == ["1", "3"]
    assert table["smiles"].tolist() == ["C", "CCO"]


def test_geom_summary_is_streamed_from_the_archive(tmp_path: Path) -> None:
    archive = tmp_path / "rdkit_folder.tar.gz"
    summary = json.dumps({"CCO": {"pickle_path": "drugs/a.pickle"}, "c1ccccc1": {}}).encode()
    with tarfile.open(archive, "w:gz") as handle:
        for name, data in [("rdkit_folder/drugs/a.pickle", b"x"), ("rdkit_folder/summary_drugs.json", summary)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))
    table = read_geom_summary(archive)
    assert table["smiles"].tolist() == ["CCO", "c1ccccc1"] and table["source_id"].tolist() == ["0", "1"]

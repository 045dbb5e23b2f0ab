"""A user's own molecules (``data.source: {smiles_file: path}``) and the parse-time checks of ``data.source``.

Standard library only: :func:`eqdyn.config.validate_config` calls :func:`source_problem` when Snakemake parses the
workflow, before any job (and before any download) starts.

Accepted files (UTF-8):

- ``.csv`` (or ``.tsv``): a header row with a ``smiles`` column (any case) and optionally an ``id`` or ``name``
  column; every row must have as many fields as the header.
- ``.smi`` / ``.smiles`` / ``.txt``: one molecule per line, the SMILES first and optionally an id after whitespace
  (the rest of the line); blank lines, lines starting with ``#`` and a first line starting with ``smiles`` (a
  header) are ignored.

Without an id column the id of a molecule is its line number. Rows whose SMILES RDKit cannot parse are not an
error here: the conformer step skips them with reason ``parse_failed`` (counted), like any source's bad molecule.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

SMILES_FILE_KEY = "smiles_file"
CSV_SUFFIXES = (".csv", ".tsv")
SMI_SUFFIXES = (".smi", ".smiles", ".txt")
SMILES_COLUMN = "smiles"
ID_COLUMNS = ("id", "name")
# Fetched and verified by eqdyn.data.download, but not parsed into molecules (no SMILES table yet).
UNPARSED_DOWNLOAD_SOURCES: tuple[str, ...] = ()  # every download source is parsed (rMD17/SPICE since issue 14)


class SmilesFileError(ValueError):
    """A user's molecule file that cannot be read; the message names the file (and the line)."""


@dataclass(frozen=True)
class UserMolecule:
    line: int  # 1-based line of the file
    smiles: str
    source_id: str


def read_smiles_file(path: str | os.PathLike[str]) -> list[UserMolecule]:
    """The molecules of a .csv or .smi file, in file order; raises :class:`SmilesFileError` naming file and line."""
    path = Path(path)
    if not path.exists():
        raise SmilesFileError(f"{path}: no such file (data.source.smiles_file; relative paths are from the repository)")
    if not path.is_file():
        raise SmilesFileError(f"{path}: not a file (data.source.smiles_file)")
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + SMI_SUFFIXES:
        raise SmilesFileError(
            f"{path}: unknown file type {suffix or '(none)'!r}; use .csv/.tsv (header with a smiles column) or "
            ".smi (SMILES [id] per line)"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheet exports start with a byte-order mark
    except PermissionError:
        raise SmilesFileError(f"{path}: not readable (permission denied)") from None
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise SmilesFileError(f"{path}, line {line}: not UTF-8 text ({error.reason})") from None
    molecules = _read_csv(path, text, "\t" if suffix == ".tsv" else ",") if suffix in CSV_SUFFIXES else _read_smi(text)
    if not molecules:
        raise SmilesFileError(f"{path}: no molecules in the file")
    return molecules


def _read_smi(text: str) -> list[UserMolecule]:
    molecules: list[UserMolecule] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        smiles, *name = line.split(maxsplit=1)
        if not molecules and smiles.lower() == SMILES_COLUMN:
            continue  # a header line ("SMILES Name"), as some tools write
        molecules.append(UserMolecule(number, smiles, name[0].strip() if name else str(number)))
    return molecules


def _read_csv(path: Path, text: str, delimiter: str) -> list[UserMolecule]:
    rows = csv.reader(text.splitlines(), delimiter=delimiter)
    header = next(rows, None)
    if header is None:
        raise SmilesFileError(f"{path}: empty file (expected a header row with a {SMILES_COLUMN} column)")
    names = [name.strip().lower() for name in header]
    if SMILES_COLUMN not in names:
        raise SmilesFileError(
            f"{path}, line 1: no {SMILES_COLUMN!r} column in the header {header} (a .csv needs a header row with a "
            f"{SMILES_COLUMN} column and optionally an id column; a plain list of SMILES should be named .smi)"
        )
    smiles_at = names.index(SMILES_COLUMN)
    id_at = next((names.index(name) for name in ID_COLUMNS if name in names), None)
    molecules = []
    for number, row in enumerate(rows, start=2):
        if not row or not any(field.strip() for field in row):
            continue
        if len(row) != len(header):
            raise SmilesFileError(
                f"{path}, line {number}: {len(row)} fields, the header has {len(header)} (quote fields with commas)"
            )
        smiles = row[smiles_at].strip()
        if not smiles:
            raise SmilesFileError(f"{path}, line {number}: empty {SMILES_COLUMN} field")
        source_id = row[id_at].strip() if id_at is not None else ""
        molecules.append(UserMolecule(number, smiles, source_id or str(number)))
    return molecules


def source_problem(source: object) -> str | None:
    """Why ``data.source`` cannot be used (None if it can): read at parse time, before any download."""
    if isinstance(source, dict):
        try:
            read_smiles_file(source[SMILES_FILE_KEY])
        except SmilesFileError as error:
            return str(error)
        return None
    if source in UNPARSED_DOWNLOAD_SOURCES:
        return (
            f"{source} is downloaded and verified by `python -m eqdyn.data.download --source {source}`, but no "
            "molecule table is built from it yet, so it cannot be a study's data.source; use qm9, wehi, moses, "
            "qm9_download, geom_drugs_download or {smiles_file: path}"
        )
    return None


def source_label(source: str | dict) -> str:
    """The source's name in molecules.csv and the manifests: the source name, or ``smiles_file:<file name>``."""
    if isinstance(source, dict):
        return f"{SMILES_FILE_KEY}:{Path(source[SMILES_FILE_KEY]).name}"
    return source

"""Unpickling of GEOM's rdkit_folder pickles that admits only the classes those files are made of.

A pickle can name any importable callable (``os.system``, ``subprocess.Popen``, ...) and have it called while it
loads, so ``pickle.load`` on a downloaded file runs whatever the file says. GEOM's pickles hold dicts, lists and
numbers with ``rdkit.Chem.rdchem.Mol`` objects (RDKit's own binary format inside): :class:`RestrictedUnpickler`
resolves only those globals and refuses every other one with :class:`pickle.UnpicklingError` naming it. The files
are read only after the archive holding them has been verified against its checksum (see
:mod:`eqdyn.data.geom_conformers`).
"""

from __future__ import annotations

import io
import pickle
from typing import IO, Any

# (module, name) pairs the GEOM rdkit_folder pickles need. _codecs.encode is how protocol 2 writes bytes objects
# (RDKit's Mol state); it only turns a str into bytes.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("rdkit.Chem.rdchem", "Mol"),
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("_codecs", "encode"),
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` whose ``find_class`` resolves only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            admitted = ", ".join(sorted(f"{m}.{n}" for m, n in ALLOWED_GLOBALS))
            raise pickle.UnpicklingError(
                f"refused to unpickle global {module}.{name}: only {admitted} are admitted (GEOM conformer pickles "
                "need nothing else)"
            )
        if module == "rdkit.Chem.rdchem":
            from rdkit.Chem import rdchem

            return rdchem.Mol
        return super().find_class(module, name)


def restricted_load(handle: IO[bytes]) -> Any:
    return RestrictedUnpickler(handle).load()


def restricted_loads(data: bytes) -> Any:
    return restricted_load(io.BytesIO(data))

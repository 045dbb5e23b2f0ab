"""The package files a workflow rule runs, derived from the package's own import statements.

A rule that runs ``python -m eqdyn.x.y`` depends on every file of the package that this command executes: the entry
module, the modules it imports (transitively, including imports inside functions, which run only on some paths),
the ``__init__.py`` of every package on the way (importing ``eqdyn.a.b`` executes ``eqdyn/__init__.py`` and
``eqdyn/a/__init__.py``), and the package data files the code names (e.g. ``checksums/registry.json``).
:func:`code_inputs` computes that set with :mod:`ast`, so a rule's code inputs are never a hand-written list that
drifts from the imports.

:func:`check_package_source` answers the other half of "the job runs the code it declares": that the interpreter
the jobs use imports the package from the workflow's own ``src/`` and not from an unrelated install.

Standard library only: the Snakefile imports this module at parse time.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PackageSourceError", "check_package_source", "code_inputs", "package_origin"]

# String constants longer than this are prose or templates, not a data file's name.
_MAX_DATA_NAME = 200


@dataclass(frozen=True)
class _PackageIndex:
    """One package under a source folder: dotted module name -> file, the packages, and its data files."""

    modules: Mapping[str, Path]
    packages: frozenset[str]  # the dotted names whose file is an __init__.py
    data_files: frozenset[str]  # every file under the package that is not Python, as a normalised absolute path
    data_by_name: Mapping[str, tuple[str, ...]]  # a data file's name -> the data files of that name


def _index(src: Path, package: str) -> _PackageIndex:
    top = src / package
    if not (top / "__init__.py").is_file():
        raise ModuleNotFoundError(f"no package {package!r} under {src} (no {top / '__init__.py'})")
    modules: dict[str, Path] = {}
    packages: set[str] = set()
    data_files: set[str] = set()
    regular = {top}  # folders that are regular packages (have an __init__.py), with every folder above them
    for folder, subfolders, files in os.walk(top):
        subfolders[:] = sorted(name for name in subfolders if name != "__pycache__")
        here = Path(folder)
        importable = here in regular and "__init__.py" in files
        if importable:
            regular.update(here / name for name in subfolders)
        for file in sorted(files):
            path = here / file
            if not file.endswith(".py"):
                if not file.endswith(".pyc"):
                    data_files.add(os.path.normpath(path))
                continue
            if not importable:  # no __init__.py on the way: not importable as a submodule of the package
                continue
            parts = path.relative_to(src).with_suffix("").parts
            if parts[-1] == "__init__":
                name = ".".join(parts[:-1])
                packages.add(name)
            else:
                name = ".".join(parts)
            modules[name] = path
    data_by_name: dict[str, list[str]] = {}
    for data_file in sorted(data_files):
        data_by_name.setdefault(os.path.basename(data_file), []).append(data_file)
    return _PackageIndex(
        modules=modules,
        packages=frozenset(packages),
        data_files=frozenset(data_files),
        data_by_name={name: tuple(paths) for name, paths in data_by_name.items()},
    )


@dataclass(frozen=True)
class _FileFacts:
    imported: tuple[str, ...]  # dotted names the file's import statements may import
    strings: tuple[str, ...]  # string constants that may name a data file


def _facts(path: Path, module: str, is_package: bool) -> _FileFacts:
    stat = path.stat()
    return _facts_of_version(path, stat.st_mtime_ns, stat.st_size, module, is_package)


@functools.lru_cache(maxsize=1024)
def _facts_of_version(path: Path, mtime_ns: int, size: int, module: str, is_package: bool) -> _FileFacts:
    """One parse per version of a file (its time and size key the cache), so an edited file is parsed again."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    strings = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _may_name_a_file(node.value)
    }
    return _FileFacts(imported=tuple(dict.fromkeys(_imported_names(tree, module, is_package))), strings=tuple(strings))


def _may_name_a_file(text: str) -> bool:
    return (
        0 < len(text) <= _MAX_DATA_NAME and "\n" not in text and not text.startswith(("/", "\\")) and ".." not in text
    )


def _ancestors(name: str) -> Iterator[str]:
    """``a.b.c`` -> ``a``, ``a.b``: the packages whose ``__init__`` runs before ``a.b.c`` is imported."""
    parts = name.split(".")
    for depth in range(1, len(parts)):
        yield ".".join(parts[:depth])


def _imported_names(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """Every dotted name that the module's import statements (anywhere in it, functions included) may import."""
    # the package a relative import starts from: the module itself for an __init__, else its parent
    own_package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = own_package[: len(own_package) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            yield base
            # `from pkg import name` imports the submodule pkg.name when there is one
            for alias in node.names:
                if alias.name != "*":
                    yield f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            # importlib.import_module("eqdyn.x") / __import__("eqdyn.x") with a literal name
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.args[0].value


def _data_files(strings: tuple[str, ...], module_file: Path, index: _PackageIndex, top: Path) -> Iterator[str]:
    """Files of the package (not Python) that the module's string constants name: a relative path from the module's
    folder, from a package folder above it, or from a package the module names (``resources.files("eqdyn.data")
    .joinpath("checksums/registry.json")``); or a bare file name of a data file below the module's folder
    (``Path(__file__).parent / "checksums" / "registry.json"``)."""
    folders = [folder for folder in (module_file.parent, *module_file.parent.parents) if folder.is_relative_to(top)]
    folders += [index.modules[text].parent for text in strings if text in index.packages]
    below = str(module_file.parent) + os.sep
    for text in strings:
        for folder in folders:
            candidate = os.path.normpath(folder / text)
            if candidate in index.data_files:
                yield candidate
        if "/" not in text:
            yield from (path for path in index.data_by_name.get(text, ()) if path.startswith(below))


def code_inputs(module: str, *, root: str | os.PathLike[str] = ".", src: str = "src") -> list[str]:
    """The files under ``<root>/<src>/<package>`` that ``python -m <module>`` executes or reads, sorted, as paths
    relative to ``root`` (``src/eqdyn/...``): the rule inputs that make an edit to any of them rerun the rule.

    The package is the first component of ``module``; imports of other packages are not followed. Imports are taken
    from every import statement of a module, inside functions and ``if TYPE_CHECKING:`` blocks too (a module that
    may run is a dependency), and from ``importlib.import_module`` calls with a literal name. Names imported at run
    time from computed strings, and data files named by computed paths, are not seen: the runtime tests
    (tests/workflow_support) check the result against what a job actually loads.
    """
    root_path = Path(root).resolve()
    src_path = (root_path / src).resolve()
    package = module.split(".")[0]
    index = _index(src_path, package)
    if module not in index.modules:
        raise ModuleNotFoundError(f"no module {module!r} under {src_path} (known: {len(index.modules)} modules)")
    top = src_path / package

    files: set[str] = set()
    seen: set[str] = set()
    pending = [module]
    if module in index.packages and f"{module}.__main__" in index.modules:
        pending.append(f"{module}.__main__")  # `python -m package` runs its __main__
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(parent for parent in _ancestors(name) if parent not in seen)
        file = index.modules[name]
        files.add(str(file))
        facts = _facts(file, name, name in index.packages)
        for imported in facts.imported:
            if imported.split(".")[0] != package:
                continue
            # `import eqdyn.a.attr` or `from eqdyn.a import function`: the longest prefix that is a module
            while imported and imported not in index.modules:
                imported = imported.rpartition(".")[0]
            if imported and imported not in seen:
                pending.append(imported)
        files.update(_data_files(facts.strings, file, index, top))
    return sorted(Path(os.path.relpath(file, root_path)).as_posix() for file in files)


class PackageSourceError(RuntimeError):
    """The jobs' interpreter imports the package from somewhere other than the workflow's own source folder."""


def package_origin(
    python: str,
    package: str = "eqdyn",
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Path | None:
    """Where ``python`` (in ``cwd``, with ``env``) finds ``package``: its ``__init__.py``, or None if it finds none.

    Asked of a new interpreter rather than of this process: Snakemake puts the workflow's ``src/`` on its own
    ``sys.path`` at parse time, but a job is a fresh ``python -m`` and sees only the environment's installs.
    """
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.find_spec({package!r})\n"
        "sys.stdout.write(spec.origin if spec is not None and spec.origin else '')\n"
    )
    result = subprocess.run(
        [python, "-c", probe],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=None if env is None else dict(env),
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise PackageSourceError(f"{python} could not look up {package!r}: {result.stderr.strip()[-2000:]}")
    return Path(result.stdout) if result.stdout else None


def check_package_source(
    python: str,
    src: str | os.PathLike[str],
    package: str = "eqdyn",
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """Raise :class:`PackageSourceError` unless ``python`` imports ``package`` from inside ``src``; return the file.

    A non-editable install, or an editable install of another checkout, would run other code than the files the
    rules declare as inputs: an edit would rerun a job that then runs the old code.
    """
    source = Path(src).resolve()
    origin = package_origin(python, package, cwd=cwd, env=env)
    fix = (
        f"install this checkout editable (`{python} -m pip install -e {source.parent}`) or put its source first "
        f"on the path (`PYTHONPATH={source}`)"
    )
    if origin is None:
        raise PackageSourceError(f"the jobs' interpreter {python} cannot import {package!r}: {fix}")
    if not origin.resolve().is_relative_to(source):
        raise PackageSourceError(
            f"the jobs' interpreter {python} imports {package!r} from {origin}, outside this workflow's {source}: "
            f"jobs would run that code, not the files the rules declare. To run this workflow's code, {fix}"
        )
    return origin

"""What an entry module loads is inside its derived code inputs: every eqdyn module in sys.modules
after importing it, and every package data file it opens while doing so. Import-derived lists miss modules
imported by computed names; this test is where such a miss shows.

One child process per entry module, forked from a parent that has imported the heavy third-party libraries (and
no eqdyn module), so each child starts clean in a fraction of a second.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from eqdyn.workflow_support import code_inputs

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"

PROBE = textwrap.dedent(
    """
    import importlib, json, os, sys
    src = os.path.realpath(sys.argv[1])
    modules = sys.argv[2:]
    import matplotlib
    matplotlib.use("Agg")
    for heavy in ("torch", "numpy", "pandas", "scipy", "matplotlib.pyplot", "yaml", "jsonschema"):
        try:
            importlib.import_module(heavy)
        except ImportError:
            pass
    assert not [m for m in sys.modules if m == "eqdyn" or m.startswith("eqdyn.")], "parent must not import eqdyn"
    for module in modules:
        read, write = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(read)
            opened = set()

            def hook(event, args):
                if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
                    opened.add(os.path.realpath(os.fsdecode(args[0])))

            sys.addaudithook(hook)
            package = module.split(".")[0]
            error = None
            try:
                importlib.import_module(module)
            except BaseException as exc:  # reported, not raised: the parent goes on with the next module
                error = repr(exc)
            loaded = sorted(
                os.path.realpath(m.__file__) for name, m in list(sys.modules.items())
                if (name == package or name.startswith(package + ".")) and getattr(m, "__file__", None)
            )
            data = sorted(p for p in opened if p.startswith(src + os.sep) and not p.endswith((".py", ".pyc")))
            with os.fdopen(write, "w") as handle:
                json.dump({"module": module, "error": error, "loaded": loaded, "data": data}, handle)
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as handle:
            sys.stdout.write(handle.read() + "\\n")
        os.waitpid(child, 0)
    """
)


def entry_modules() -> list[str]:
    """The modules the workflow's rules run (each `code_inputs("...")` of workflow/rules) and every module of the
    package that can be run with `python -m` (has a `__main__` block)."""
    named = set()
    for rules in (REPO / "workflow" / "rules").glob("*.smk"):
        named |= set(re.findall(r'code_inputs\("(eqdyn(?:\.\w+)+)"\)', rules.read_text()))
    runnable = {
        ".".join(path.relative_to(SRC).with_suffix("").parts)
        for path in (SRC / "eqdyn").rglob("*.py")
        if "__pycache__" not in path.parts and 'if __name__ == "__main__"' in path.read_text()
    }
    assert named, "no rule names its code inputs with code_inputs(...)"
    assert named <= runnable | {m for m in named if (SRC / Path(*m.split("."))).is_dir()}, named - runnable
    return sorted(named | runnable)


def undeclared(root: Path, modules: list[str]) -> dict[str, list[str]]:
    """Entry module -> the files under ``root/src`` it loads or reads on import that code_inputs does not list."""
    src = root / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(src), *modules],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    reports = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [report["module"] for report in reports] == modules
    missing = {}
    for report in reports:
        assert report["error"] is None, report
        assert report["loaded"], report  # the probe saw the module itself
        declared = {os.path.realpath(root / path) for path in code_inputs(report["module"], root=root)}
        files = sorted(set(report["loaded"]) - declared) + sorted(set(report["data"]) - declared)
        if files:
            missing[report["module"]] = [os.path.relpath(file, os.path.realpath(root)) for file in files]
    return missing


def test_every_loaded_module_and_data_file_is_a_declared_input() -> None:
    missing = undeclared(REPO, entry_modules())
    assert not missing, f"loaded or read but not among the derived code inputs: {missing}"


def test_a_name_based_import_and_a_computed_data_path_are_caught(tmp_path: Path) -> None:
    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "seen.py").write_text("")
    (package / "hidden.py").write_text("")
    (package / "table.txt").write_text("1\n")
    (package / "entry.py").write_text(
        textwrap.dedent("""
        import importlib, os
        import pkg.seen
        importlib.import_module("pkg." + "hid" + "den")  # a computed name: invisible to the import statements
        open(os.path.join(os.path.dirname(__file__), "table" + ".txt")).close()
    """)
    )
    assert undeclared(tmp_path, ["pkg.entry"]) == {"pkg.entry": ["src/pkg/hidden.py", "src/pkg/table.txt"]}

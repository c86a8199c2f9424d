"""The package's structure (docs/DESIGN.md "Layers"): imports go one way, no cycles, every public
function and class has a docstring."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import pkgutil
from pathlib import Path

import pytest

import blocksim

PACKAGE_DIR = Path(blocksim.__file__).resolve().parent

#: Layer of each module (by longest matching prefix), lowest first. A module may import modules of
#: its own package or of a lower layer, never of a higher one; sibling packages of one layer never
#: import each other.
LAYERS = {
    "blocksim.errors": 0, "blocksim.choices": 0, "blocksim._numba": 0, "blocksim._version": 0,
    "blocksim._threads": 0, "blocksim._malloc": 0,
    "blocksim.references": 0.5,
    "blocksim.model": 1,
    "blocksim.response": 2,
    "blocksim.spectra": 3,
    "blocksim.theory": 4,
    "blocksim.config": 5,
    "blocksim.io": 6, "blocksim.outputlock": 6,
    "blocksim.rg": 7,
    "blocksim.sweep": 8, "blocksim.analysis": 8,
    "blocksim.plotting": 8.5, "blocksim.runner": 9, "blocksim.bench": 9, "blocksim.cli": 9.5,
    "blocksim.coupling": 9,  # compatibility name of blocksim.model.coupling (BRIEF §5)
    "blocksim": 10,  # the package root: blocksim.run
}


def _modules() -> list[str]:
    names = ["blocksim"]
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="blocksim."):
        names.append(info.name)
    return sorted(names)


def _path(module: str) -> Path:
    rel = Path(*module.split(".")[1:])
    pkg = PACKAGE_DIR / rel / "__init__.py"
    return pkg if pkg.exists() else (PACKAGE_DIR / rel).with_suffix(".py")


def _is_module(name: str) -> bool:
    return name in MODULES


def _imports(module: str) -> set[str]:
    """blocksim modules imported anywhere in ``module`` (top level and inside functions)."""
    path = _path(module)
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "blocksim")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "blocksim":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if _is_module(sub) else target)
    out.discard(module)
    return out


MODULES = _modules()
GRAPH = {m: _imports(m) for m in MODULES}


def _layer(module: str) -> tuple[str, int]:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return best, LAYERS[best]


def test_every_module_has_a_layer():
    for m in MODULES:
        assert _layer(m), m


@pytest.mark.parametrize("module", MODULES)
def test_imports_go_down_the_layers(module):
    own, rank = _layer(module)
    for target in GRAPH[module]:
        other, other_rank = _layer(target)
        assert other_rank < rank or other == own, f"{module} (layer {rank}) imports {target} (layer {other_rank})"


def test_no_import_cycles():
    state: dict = {}

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(GRAPH[m]):
            if state.get(t) == "open":
                cycle = stack[stack.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in MODULES:
        if m not in state:
            visit(m, [m])


def test_library_never_edits_sys_path():
    for m in MODULES:
        assert "sys.path" not in _path(m).read_text(), m


def _public_objects():
    for name in MODULES:
        mod = importlib.import_module(name)
        names = getattr(mod, "__all__", None)
        if names is None:
            names = [n for n in vars(mod) if not n.startswith("_")]
        for attr in names:
            obj = getattr(mod, attr, None)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if getattr(obj, "__module__", None) != name:
                continue  # documented where it is defined
            yield f"{name}.{attr}", obj
            if inspect.isclass(obj):
                for mname, member in vars(obj).items():
                    if mname.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                        continue
                    yield f"{name}.{attr}.{mname}", member


def test_every_public_function_and_class_has_a_docstring():
    missing = sorted(name for name, obj in _public_objects() if not (inspect.getdoc(obj) or "").strip())
    assert missing == [], f"{len(missing)} public callables without a docstring: {missing}"


def test_only_the_bench_subcommand_imports_the_benchmark_suite():
    for m in MODULES:
        tree = ast.parse(_path(m).read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        if any(x.split(".")[0] == "benchmarks" for x in names):
            assert m == "blocksim.bench", m


def test_numba_cache_is_keyed_by_the_kernel_sources(tmp_path):
    """import blocksim points numba's cache at blocksim/__pycache__/numba-<hash of the kernel sources>; the
    hash changes with a source that mentions numba (a callee in another module), not with one that does
    not; a user's NUMBA_CACHE_DIR is left alone."""
    import shutil
    import subprocess
    import sys

    import blocksim
    from blocksim._numba import kernel_source_hash

    pkg = Path(blocksim.__file__).resolve().parent
    code = "import blocksim, numba; print(numba.config.CACHE_DIR)"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, timeout=120)
    assert Path(out.stdout.strip()) == pkg / "__pycache__" / f"numba-{kernel_source_hash(pkg)}"
    mine = tmp_path / "mine"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         env=dict(env, NUMBA_CACHE_DIR=str(mine)))
    assert out.stdout.strip() == str(mine)

    copy = tmp_path / "pkg"
    shutil.copytree(pkg, copy, ignore=shutil.ignore_patterns("__pycache__"))
    h0 = kernel_source_hash(copy)
    (copy / "errors.py").write_text((copy / "errors.py").read_text() + "\n# an edit outside the kernels\n")
    assert "numba" not in (copy / "errors.py").read_text()
    assert kernel_source_hash(copy) == h0
    spectrum = copy / "spectra" / "spectrum.py"
    spectrum.write_text(spectrum.read_text() + "\n# an edit of a kernel another module calls\n")
    assert kernel_source_hash(copy) != h0

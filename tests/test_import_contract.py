"""The dependency direction of the house style is enforced.

`make lint` runs import-linter's layers contract (pyproject.toml: CONTRIBUTING.md's diagram, exhaustive over the
package), and a library module that imports the training code breaks it. What import-linter does not check is
checked here on the source itself, with `ast` (imports at the top of a module and inside functions alike): no
cycle among the modules below the entry points, and no such module imports the package root `mindhier`.
"""

import ast
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "src" / "mindhier"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
ENTRY_POINTS = ("mindhier.cli", "mindhier.bench", "mindhier.demo", "mindhier.__main__")

needs_import_linter = pytest.mark.skipif(
    not LINT_IMPORTS.is_file(), reason="import-linter is installed with the dev extra"
)


def _lint(package_root: Path) -> subprocess.CompletedProcess:
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(package_root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=package_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_import_linter
def test_contracts_hold_on_the_package():
    result = _lint(ROOT / "src")
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 kept, 0 broken" in result.stdout


@needs_import_linter
def test_a_library_import_of_train_or_a_module_outside_the_diagram_breaks_the_contract(tmp_path):
    shutil.copytree(PACKAGE_DIR, tmp_path / "mindhier", ignore=shutil.ignore_patterns("__pycache__"))
    routing = tmp_path / "mindhier" / "models" / "routing.py"
    routing.write_text(routing.read_text() + "\nfrom mindhier.train.batches import global_batch  # noqa\n")
    (tmp_path / "mindhier" / "helpers.py").write_text('"""A module no row of the contract names."""\n')
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "dependencies run one way (CONTRIBUTING.md) BROKEN" in result.stdout
    assert "mindhier.models.routing -> mindhier.train.batches" in result.stdout
    assert "not listed as layers:\n\n- mindhier.helpers" in result.stdout  # exhaustive: every module sits in a row


# ------------------------------------------------------------------------------ the import graph, from source


def package_modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: dotted name → (file, whether it is a package's `__init__`)."""
    modules = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def imported_modules(name: str, path: Path, is_package: bool, modules) -> set[str]:
    """The package's modules that `name` imports anywhere in its source (`from P import X` counts as importing
    the submodule P.X where there is one, else P itself)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the importing module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in modules else target)
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imported_modules(name, path, is_package, modules) for name, (path, is_package) in modules.items()}


def is_entry_point(module: str) -> bool:
    return any(module == entry or module.startswith(entry + ".") for entry in ENTRY_POINTS)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def below_entry_points(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {t for t in targets if not is_entry_point(t)} for m, targets in graph.items() if not is_entry_point(m)}


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "mindhier.run_layout" in graph["mindhier.runs"]  # `from mindhier import run_layout`: the submodule
    assert "mindhier.sampling.reconstruct" in graph["mindhier"]  # inside `mindhier.load`
    assert "mindhier.pipeline.demo_pipeline" in graph["mindhier.bench.decoders"]  # inside `bench_decoders`


def test_cycle_detection_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_below_the_entry_points():
    assert cycles(below_entry_points(import_graph())) == []


def test_no_library_module_imports_the_package_root():
    """`import mindhier` / `from mindhier import __version__` would run the root's `__init__` (the public API,
    which reaches the whole pipeline); the library takes the version from `mindhier._version`."""
    graph = below_entry_points(import_graph())
    assert sorted(module for module, targets in graph.items() if "mindhier" in targets) == []


# -------------------------------------------------------------- the contract's rows and CONTRIBUTING's diagram


def diagram_rows(text: str) -> list[set[str]]:
    """The rows of CONTRIBUTING.md's dependency diagram: the module names of each row's left column (a row goes on
    in lines indented by two spaces; deeper indents continue its description)."""
    block = text.split("Dependencies run one way", 1)[1].split("```", 2)[1]
    rows: list[set[str]] = []
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip() or indent > 2:
            continue
        names = set(re.findall(r"[A-Za-z_]+", re.split(r"\s{2,}", line.strip())[0]))
        if indent == 2:
            rows[-1] |= names
        else:
            rows.append(names)
    return rows


def contract_rows(text: str) -> list[set[str]]:
    rows = re.search(r"^layers = \[(.*?)^\]", text, re.MULTILINE | re.DOTALL).group(1)
    return [{name.strip() for name in re.split(r"[:|]", row)} for row in re.findall(r'"([^"]+)"', rows)]


def test_contributing_draws_the_contracts_rows():
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    assert diagram_rows(contributing) == contract_rows((ROOT / "pyproject.toml").read_text())


def test_the_contract_places_every_module_of_the_package():
    """The layers contract is exhaustive (import-linter refuses a module left out); its rows name exactly the
    package's modules and subpackages, so the diagram has no stale row either."""
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^exhaustive = true$", text, re.MULTILINE)
    named = set().union(*contract_rows(text))
    children = {module.name for module in pkgutil.iter_modules([str(PACKAGE_DIR)])}
    assert named == children

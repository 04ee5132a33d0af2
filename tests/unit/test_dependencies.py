"""What ``auie`` imports is installed by ``scripts/setup`` (no test or dev extra needed).

The README's first command installs AUIE without the ``dev`` extra; a module that imports a
package only the tests install would break ``auie serve`` on a fresh machine while the test
suite (which installs ``dev``) stays green. Every third-party module imported anywhere under
``src/auie`` must come from a distribution that the main dependencies (or the ``postgres``
extra ``scripts/setup`` adds) require, directly or transitively; the optional policy
backends (``vw``, ``neural``) are imported lazily and belong to their extras.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "auie"
#: Modules that import an optional extra's package, and that extra.
OPTIONAL_MODULES = {"decide/policies/vw.py": "vw", "decide/policies/neural.py": "train"}
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+")


def _requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        if ";" in requirement and "extra ==" in requirement.split(";", 1)[1]:
            continue  # another package's optional extra
        match = _NAME.match(requirement.strip())
        if match:
            names.add(_canonical(match.group(0).split("[")[0]))
    return names


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(roots: set[str]) -> set[str]:
    """The distributions ``roots`` need, transitively (as installed here)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend(_requirement_names(requires) - seen)
    return seen


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_every_import_of_auie_is_a_main_dependency() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    main = _requirement_names(project["dependencies"])
    main |= _requirement_names(project["optional-dependencies"]["postgres"])
    installed = _closure(main)
    providers = metadata.packages_distributions()
    missing: dict[str, list[str]] = {}
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC).as_posix()
        if relative in OPTIONAL_MODULES or "/migrations/" in relative:
            continue
        for module in _imports(path):
            if module == "auie" or module in sys.stdlib_module_names or module == "__future__":
                continue
            dists = {_canonical(d) for d in providers.get(module, [])}
            assert dists, f"{relative} imports {module}, which no installed distribution provides"
            if not dists & installed:
                missing.setdefault(module, []).append(relative)
    assert not missing, f"imported but not installed by scripts/setup: {missing}"


def test_optional_backends_are_extras() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for extra in OPTIONAL_MODULES.values():
        assert extras.get(extra), f"the {extra} extra is not declared"

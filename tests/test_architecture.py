"""The house rules that docs/architecture.md states, checked against the code's imports.

brinelite never imports segtrain; segtrain takes from brinelite only its public names (the
package's ``__all__``) and the CLI conventions of ``brinelite.commandline``; and every
brinelite module imports only modules listed above it in the architecture page's table, so
that page cannot drift from the code unnoticed.
"""

import ast
import re
from pathlib import Path

import brinelite

ROOT = Path(__file__).resolve().parents[1]
TABLE_MODULE = re.compile(r"`(\w+)`")


def _imports(path: Path, package: str) -> set[str]:
    """The modules of ``package`` that ``path`` imports (relative or absolute)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update(
                [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
            )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(f"{package}."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(
                a.name.split(".")[1] for a in node.names if a.name.startswith(f"{package}.")
            )
    return found


def _table_order() -> list[str]:
    """brinelite's modules in the order docs/architecture.md lists them."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    table = page.split("## brinelite", 1)[1].split("## segtrain", 1)[0]
    order = []
    for line in table.splitlines():
        cells = line.split("|")
        if len(cells) > 3:
            order += TABLE_MODULE.findall(cells[2])
    return order


def test_every_brinelite_module_imports_only_modules_above_it_in_the_architecture_table():
    order = _table_order()
    modules = {p.stem for p in (ROOT / "brinelite").glob("*.py")} - {"__init__", "__main__"}
    assert set(order) == modules, "docs/architecture.md must list every brinelite module once"
    position = {name: k for k, name in enumerate(order)}
    upward = {
        name: sorted(
            d
            for d in _imports(ROOT / "brinelite" / f"{name}.py", "brinelite")
            if position.get(d, -1) > position[name]
        )
        for name in modules
    }
    assert {name: deps for name, deps in upward.items() if deps} == {}


def test_brinelite_never_imports_segtrain_and_segtrain_uses_only_public_brinelite():
    for path in (ROOT / "brinelite").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] == "segtrain"], path
    public = set(brinelite.__all__) | {"commandline"}
    for path in (ROOT / "segtrain").glob("*.py"):
        tree = ast.parse(path.read_text())
        taken = {
            a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module == "brinelite"
            for a in n.names
        }
        assert taken <= public, f"{path.name} takes non-public {taken - public} from brinelite"
        assert _imports(path, "brinelite") <= {"commandline"}, path.name

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


def _table_order(package: str = "brinelite", column: int = 2) -> list[str]:
    """The modules of ``package`` in the order docs/architecture.md's table lists them (in its
    ``column``: brinelite's table has a layer column first)."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    table = page.split(f"## {package}", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    order = []
    for line in table.splitlines():
        cells = line.split("|")
        if len(cells) > column + 1:
            order += TABLE_MODULE.findall(cells[column])
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


def test_the_architecture_page_lists_every_segtrain_module_once():
    listed = _table_order("segtrain", column=1)
    modules = {p.stem for p in (ROOT / "segtrain").glob("*.py")} - {"__init__", "__main__"}
    assert sorted(listed) == sorted(modules)


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


# -- one place reads the environment; one way writes a file ----------------------------------

ENVIRONMENT = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
# segtrain has no settings module of its own: these modules touch the environment, and why.
ENVIRONMENT_ALLOWED = {
    "segtrain/runtime.py": "sets KERAS_BACKEND before Keras is imported, and reads it back",
    "segtrain/distributed.py": "reads the variables a launcher sets (KERAS_DISTRIBUTION_*)",
    "segtrain/cli.py": "sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads, to mute its C++ logs",
    "segtrain/handshake.py": "reads the run's secret (SEGTRAIN_SECRET or SEGTRAIN_SECRET_FILE)",
    "segtrain/encoders.py": "KERAS_HOME, to name the folder ImageNet weights go in (Keras reads "
    "it once, at import)",
}
# Files written in place, and why that is right; everything else goes through brinelite.atomic.
WRITES_ALLOWED = {
    "brinelite/archive.py": "extraction writes into a staging folder that is renamed whole",
    "brinelite/build.py": "converted masks go into the build's staging folder, archived whole",
    "brinelite/download.py": "the part file grows across attempts (resume); renamed once verified",
    "brinelite/prepared.py": "writes into its staging folder, renamed into place whole",
    "segtrain/runtime.py": "redirects a standard stream (a copy of its descriptor, /dev/null)",
}
_WRITE_MODE = re.compile(r"[wax+]")
_WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"}


def _sources() -> dict[str, ast.Module]:
    """Every module of both packages, parsed, by its path relative to the repository."""
    return {
        path.relative_to(ROOT).as_posix(): ast.parse(path.read_text())
        for package in ("brinelite", "segtrain")
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def environment_uses(tree: ast.Module) -> list[int]:
    """Lines where ``tree`` touches the process environment (``os.environ``, ``os.getenv``...)."""
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ENVIRONMENT
        ):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            lines += [node.lineno for a in node.names if a.name in ENVIRONMENT]
    return sorted(lines)


def _modules_imported(tree: ast.Module) -> set[str]:
    """Names a module binds to modules (``import json``, ``from . import atomic``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.module:
            names.update(a.asname or a.name for a in node.names)
    return names


def _mode(call: ast.Call, position: int) -> str | None:
    """The constant ``mode`` of an open call (positional at ``position``, or keyword)."""
    given = [k.value for k in call.keywords if k.arg == "mode"]
    given += call.args[position : position + 1]
    constant = given[0] if given else None
    return constant.value if isinstance(constant, ast.Constant) else None


def _atomic_paths(tree: ast.Module) -> set[str]:
    """Names bound by ``with atomic_path(...) as name``: temporary files renamed into place."""
    return {
        item.optional_vars.id
        for node in ast.walk(tree)
        if isinstance(node, ast.With)
        for item in node.items
        if isinstance(item.context_expr, ast.Call)
        and "atomic_path" in ast.unparse(item.context_expr.func)
        and isinstance(item.optional_vars, ast.Name)
    }


def file_writes(tree: ast.Module) -> list[int]:
    """Lines where ``tree`` writes a file in place: ``open`` for writing (builtin, ``Path.open``,
    ``gzip.open``...), ``os.open`` with write flags, ``Path.write_text``/``write_bytes``,
    ``cv2.imwrite``, ``savefig``, a model's ``save``/``save_weights``,
    ``tempfile.NamedTemporaryFile`` (a hand-made atomic write, without the fsync). Writing
    into an open stream (``fileobj=``, ``savefig(stream, format=...)``), into a name
    ``atomic_path`` gave, and calling a module's own ``write_text`` (``atomic.write_text``) do
    not count."""
    modules, temporary = _modules_imported(tree), _atomic_paths(tree)
    lines = []
    for call in ast.walk(tree):
        streamed = {"fileobj", "format"}  # gzip into an open file; savefig into an open stream
        if not isinstance(call, ast.Call) or any(k.arg in streamed for k in call.keywords):
            continue
        if call.args and isinstance(call.args[0], ast.Name) and call.args[0].id in temporary:
            continue
        func = call.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        on_module = isinstance(func, ast.Attribute) and (
            isinstance(func.value, ast.Name) and func.value.id in modules
        )
        if name == "open" and on_module and func.value.id == "os":
            flags = {n.attr for n in ast.walk(call.args[1]) if isinstance(n, ast.Attribute)}
            writes = bool(flags & _WRITE_FLAGS) if len(call.args) > 1 else False
        elif name == "open":
            mode = _mode(call, 0 if isinstance(func, ast.Attribute) and not on_module else 1)
            writes = bool(mode and _WRITE_MODE.search(mode))
        elif name in ("write_text", "write_bytes"):
            writes = isinstance(func, ast.Attribute) and not on_module
        else:
            writes = name in ("imwrite", "savefig", "save", "save_weights", "NamedTemporaryFile")
        if writes:
            lines.append(call.lineno)
    return sorted(lines)


def _offenders(finder, allowed: dict[str, str], packages: tuple[str, ...]) -> dict[str, list]:
    """Modules where ``finder`` finds something without an allowance, and allowances no
    module needs any more (so that the lists shrink as code is converted)."""
    found = {
        module: lines
        for module, tree in _sources().items()
        if module.split("/")[0] in packages and (lines := finder(tree))
    }
    unexplained = {module: lines for module, lines in found.items() if module not in allowed}
    stale = {module: ["allowed, but no longer needed"] for module in set(allowed) - set(found)}
    return unexplained | stale


def test_only_settings_reads_the_environment_in_brinelite_and_segtrain_only_where_allowed():
    allowed = {"brinelite/settings.py": "the one place brinelite reads it"} | ENVIRONMENT_ALLOWED
    assert _offenders(environment_uses, allowed, ("brinelite", "segtrain")) == {}


def test_files_are_written_through_brinelite_atomic_except_where_allowed():
    assert _offenders(file_writes, WRITES_ALLOWED, ("brinelite", "segtrain")) == {}


def test_the_finders_see_what_they_look_for():
    # Each pattern the checks above must catch, and the ones they must let pass.
    caught = ast.parse(
        "import os, cv2, gzip\nfrom os import getenv\n"
        "os.environ.get('X')\nos.getenv('X')\nopen(p, 'w')\nopen(p, mode='ab')\n"
        "path.open('w')\ngzip.open(p, 'wb')\nos.open(p, os.O_WRONLY | os.O_CREAT)\n"
        "path.write_text(t)\npath.write_bytes(b)\ncv2.imwrite(p, a)\nfigure.savefig(p)\n"
        "tempfile.NamedTemporaryFile('w', dir=d, delete=False)\nmodel.save(p)\n"
        "model.save_weights(p)\n"
    )
    assert environment_uses(caught) == [2, 3, 4]
    assert file_writes(caught) == list(range(5, 17))
    passed = ast.parse(
        "import os, tarfile\nfrom . import atomic\nopen(p)\nopen(p, 'rb')\npath.open()\n"
        "path.open('rb')\nos.open(p, os.O_RDONLY)\natomic.write_text(p, t)\n"
        "tarfile.open(fileobj=f, mode='w')\nwrite_text(p, t)\nos.path.join(a, b)\n"
        "with brinelite.atomic_path(p, suffix='.keras') as tmp:\n    model.save(tmp)\n"
    )
    assert environment_uses(passed) == [] and file_writes(passed) == []


def test_the_readme_settings_table_lists_exactly_the_variables_settings_reads():
    # The README's table is the one documentation of the settings (settings.py points to it).
    variable = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
    tree = ast.parse((ROOT / "brinelite" / "settings.py").read_text())
    read = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and variable.fullmatch(node.value)
    }
    readme = (ROOT / "README.md").read_text()
    table = readme.split("| Setting | Default | What it does |", 1)[1].split("\n\n", 1)[0]
    listed = {
        name
        for row in table.splitlines()[1:]
        for name in TABLE_MODULE.findall(row.split("|")[1])
        if variable.fullmatch(name)
    }
    assert read == listed

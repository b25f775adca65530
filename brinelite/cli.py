"""The ``brinelite`` command: install, inspect, build and share datasets.

Every command is a thin layer over the Python API. Errors are caught once,
here: a :class:`BrineliteError` (or a usage mistake) prints one line on stderr
and exits 1 (2 for usage), never a traceback. Everything is printed through
:class:`~brinelite.commandline.Output`: literally, never as markup, never wrapped;
``--json`` gives scripts the same facts with stable keys (README, "Scripting").
"""

from __future__ import annotations

from pathlib import Path
from textwrap import shorten
from typing import Annotated

import typer
from typer._click.exceptions import MissingParameter

from . import (
    __version__,
    cache,
    config,
    interrupt,
    jsonio,
    lockfile,
    prepared,
    publishing,
    registry,
)
from . import serve as server
from .build import build as build_archive
from .classes import ClassMap
from .commandline import Output, new_app, run_app, storable_path
from .dataset import load_dataset
from .errors import NotInstalledError
from .install import install as install_dataset
from .names import parse_name
from .progress import bar
from .redact import redact_url

app = new_app(
    "Install, inspect, build and share image/mask datasets.",
    version=f"brinelite {__version__}",
    no_args_is_help=True,
)
cache_app = new_app("Where the cache is, and cleaning it.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
registry_app = new_app("The registries datasets are installed from.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
out = Output()
err = Output(err=True)
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print JSON with stable keys (see the README) for scripts.")
]


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


@app.command()
def install(
    source: Annotated[
        str | None,
        typer.Argument(
            help="scope/name[@version], an archive URL or path, or a folder.", show_default=False
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Name a source without manifest: scope/name[@version].")
    ] = None,
    sha256: Annotated[str | None, typer.Option(help="The archive's expected sha256 (hex).")] = None,
    requirement: Annotated[
        Path | None,
        typer.Option("-r", "--requirement", help="Install exactly what a brinelite.lock pins."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Reinstall even if installed.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    binary: Annotated[
        bool,
        typer.Option(
            "--binary",
            help="A source without manifest: binary masks even if they look like class ids.",
        ),
    ] = False,
) -> None:
    """Install a dataset into the local cache (verified, atomic); prints its sha256 to pin."""
    if source is None and requirement is None:
        raise MissingParameter(param_type="argument", param_hint="'SOURCE' (or -r FILE)")
    if requirement is not None:
        if source or name or sha256:
            raise typer.BadParameter(
                "-r installs what the lock file pins: no SOURCE, --name or --sha256."
            )
        results = lockfile.install_all(requirement, force=force, quiet=quiet)
    else:
        results = [
            install_dataset(
                source, name=name, sha256=sha256, force=force, quiet=quiet, binary=binary
            )
        ]
    for result in results:
        for skipped in result.skipped:
            err.print(f"Warning: {skipped}")
        if result.note:
            out.print(result.note)
        if result.already:
            out.print(f"Dataset {result.ref} is already installed (use --force to reinstall).")
        else:
            out.print(f"Dataset {result.ref} was installed.")
        if result.sha256:
            out.print(f"sha256 {result.sha256}")
        elif result.fingerprint:
            out.print(f"fingerprint {result.fingerprint} (installed from a folder: no archive)")


@app.command()
def lock(
    names: Annotated[list[str], typer.Argument(help="Installed scope/name[@version]s to pin.")],
    out_file: Annotated[Path, typer.Option("--out", help="The lock file to write.")] = Path(
        lockfile.LOCK_FILE
    ),
) -> None:
    """Write name@version, archive sha256 and fingerprint of installed datasets to a lock file."""
    entries = lockfile.lock_installed(names)
    lockfile.write(entries, out_file)
    out.print(f"Locked {len(entries)} dataset{'s' if len(entries) != 1 else ''} in {out_file}.")


@app.command()
def uninstall(
    name: Annotated[str, typer.Argument(help="scope/name (every version) or scope/name@version.")],
) -> None:
    """Remove a dataset, or one version of it, from the cache."""
    ref = parse_name(name)
    versions = [ref.version] if ref.version else cache.installed_versions(ref)
    if not versions:
        raise NotInstalledError(f"Dataset {ref} is not installed.")
    for version in versions:
        cache.remove(ref.with_version(version))
        out.print(f"Dataset {ref.with_version(version)} was uninstalled.")


@app.command("list")
def list_command(as_json: JsonFlag = False) -> None:
    """List installed datasets with the size each takes on disk."""
    refs = cache.installed()
    sizes = {ref: cache.size_on_disk(cache.dataset_path(ref)) for ref in refs}
    if as_json:
        out.json(
            {
                "cache": str(cache.home()),
                "datasets": [
                    {
                        "name": ref.full_name,
                        "version": str(ref.version),
                        "ref": str(ref),
                        "path": str(cache.dataset_path(ref)),
                        "bytes": sizes[ref],
                    }
                    for ref in refs
                ],
            }
        )
        return
    if not refs:
        out.print(f"No datasets installed in {cache.home()}.")
        return
    width = max(len(str(ref)) for ref in refs)
    for ref in refs:
        out.print(f"{str(ref):<{width}}  {_human(sizes[ref]):>9}")


@app.command()
def info(
    name: Annotated[
        str,
        typer.Argument(
            help="scope/name[@version] of an installed dataset.", callback=storable_path
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Show an installed dataset: versions, rows, columns, size, source, sha256 and its card."""
    dataset = load_dataset(name)
    if as_json:
        out.json(_info_json(dataset))
        return
    manifest = dataset.manifest
    record = cache.InstallRecord.read(dataset.path)
    versions = ", ".join(str(v) for v in cache.installed_versions(parse_name(manifest.name)))
    for key, value in (
        ("name", f"{manifest.name}@{manifest.version}"),
        ("installed versions", versions),
        ("description", manifest.description),
        ("license", manifest.license),
        ("citation", " ".join(manifest.citation.split())),
        ("card", ", ".join(manifest.card)),
        ("rows", str(manifest.rows)),
        ("splits", ", ".join(f"{k} {len(v)} rows" for k, v in manifest.splits.items())),
        ("columns", ", ".join(f"{c.name} ({c.type})" for c in manifest.columns)),
        ("size", f"{_human(manifest.total_bytes)} in {len(manifest.files)} files"),
        ("source", redact_url(record.source)),
        ("archive sha256", record.sha256),
        ("fingerprint", manifest.fingerprint),
        ("path", str(dataset.path)),
    ):
        out.print(f"{key + ':':<20}{value}")
    if manifest.classes is not None:
        _print_classes(manifest.classes)
    _print_card(dataset.path, manifest.card)


def _print_classes(classes: ClassMap) -> None:
    """The class table: pixel id, name, colour and share of all pixels (measured at build)."""
    out.print(f"\n{'id':>4}  {'class':<20}{'color':<16}pixels")
    rows = [(c.id, c.name, c.color) for c in classes.classes]
    if classes.ignore is not None:
        rows.append((classes.ignore, "ignore", None))
    for pixel, name, color in rows:
        share = classes.shares.get(name)
        shown = f"{share:7.2%}" if share is not None else "      -"
        out.print(f"{pixel:>4}  {name:<20}{str(list(color)) if color else '-':<16}{shown}")


def _print_card(folder: Path, card: list[str], lines: int = 40) -> None:
    """The dataset's README (or SOURCE) text after its facts, cut at ``lines`` lines."""
    readable = [name for name in card if name.split(".")[0].lower() in ("readme", "source")]
    for name in readable[:1]:
        try:
            text = (folder / name).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return
        out.print(f"\n--- {name} ---")
        out.print("\n".join(text[:lines]))
        if len(text) > lines:
            out.print(f"... ({len(text) - lines} more lines in {folder / name})")


def _info_json(dataset) -> dict:
    """``info --json``: the facts of ``info`` as numbers and lists (keys in the README)."""
    manifest = dataset.manifest
    record = cache.InstallRecord.read(dataset.path)
    return {
        "name": manifest.name,
        "version": str(manifest.version),
        "installed_versions": [str(v) for v in cache.installed_versions(parse_name(manifest.name))],
        "description": manifest.description,
        "license": manifest.license,
        "citation": manifest.citation,
        "card": manifest.card,
        "classes": manifest.classes.to_json() if manifest.classes else None,
        "rows": manifest.rows,
        "splits": {name: len(rows) for name, rows in manifest.splits.items()},
        "columns": [{"name": c.name, "type": c.type} for c in manifest.columns],
        "total_bytes": manifest.total_bytes,
        "files": len(manifest.files),
        "source": redact_url(record.source),
        "sha256": record.sha256,
        "fingerprint": manifest.fingerprint,
        "path": str(dataset.path),
    }


@app.command()
def verify(
    name: Annotated[
        str,
        typer.Argument(
            help="scope/name[@version] of an installed dataset.", callback=storable_path
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Re-hash every file of an installed dataset against its manifest (exit 1 on a mismatch)."""
    from . import manifest as manifest_io

    dataset = load_dataset(name)
    manifest_io.verify(dataset.path, dataset.manifest)
    files = len(dataset.manifest.files)
    if as_json:
        out.json(
            {"name": dataset.name, "version": str(dataset.version), "files": files, "ok": True}
        )
    else:
        out.print(f"Dataset {dataset.name}@{dataset.version}: {files} files OK.")


@app.command()
def build(
    src: Annotated[
        Path,
        typer.Argument(
            help="A folder with images/ and masks/, or a JSON config naming a CSV.",
            callback=storable_path,
        ),
    ],
    name: Annotated[str, typer.Option(help="scope/name of the dataset.")],
    version: Annotated[
        str, typer.Option(help="Semantic version, e.g. 1.0.0 or 1.0.0-rc1.")
    ] = "1.0.0",
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Archive path (default NAME-VERSION.tar.gz).", callback=storable_path
        ),
    ] = None,
    description: Annotated[str, typer.Option(help="One line describing the dataset.")] = "",
    license: Annotated[
        str, typer.Option(help="The data's license or terms (default: LICENSE's first line).")
    ] = "",
    citation: Annotated[
        str, typer.Option(help="How to cite the data (default: the CITATION file).")
    ] = "",
    classes: Annotated[
        Path | None,
        typer.Option(
            help="Class map of semantic masks (default: classes.json in SRC if any).",
            callback=storable_path,
        ),
    ] = None,
    binary: Annotated[
        bool,
        typer.Option(
            "--binary", help="Binary masks even if they look like class ids (e.g. values 0-11)."
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    publish_to: Annotated[
        str | None,
        typer.Option("--publish", help="Then publish it to this folder, file:// or s3:// URL."),
    ] = None,
) -> None:
    """Build a reproducible dataset archive, checking every image and pair first.

    README, SOURCE, LICENSE and CITATION files beside images/ are carried in as its card;
    split-NAME.txt files (one image stem a line) or a CSV's split column declare its splits.
    """
    with bar("Checking images", unit="items", quiet=quiet) as progress:
        result = build_archive(
            src,
            name,
            version,
            out_file,
            description,
            license,
            progress,
            citation=citation,
            force=force,
            classes=classes,
            binary=binary,
        )
    manifest = result.manifest
    card = f", card {', '.join(manifest.card)}" if manifest.card else ""
    card += "".join(f", split {k} {len(v)}" for k, v in manifest.splits.items())
    out.print(
        f"Built {manifest.name}@{manifest.version}: {manifest.rows} rows, "
        f"columns {', '.join(c.name for c in manifest.columns)}{card}, "
        f"{_human(manifest.total_bytes)} of files -> {result.archive} "
        f"({_human(result.archive.stat().st_size)})"
    )
    out.print(f"sha256 {result.sha256}")
    if publish_to:
        _announce(publishing.publish(result.archive, publish_to))


@app.command()
def publish(
    source: Annotated[
        str,
        typer.Argument(
            help="An archive, a dataset folder, or an installed scope/name.",
            callback=storable_path,
        ),
    ],
    dest: Annotated[
        str,
        typer.Option(
            "--registry",
            help="A registry folder, file:// or s3://bucket/prefix.",
            callback=storable_path,
        ),
    ],
) -> None:
    """Publish a dataset version to a registry (versions are never overwritten)."""
    _announce(publishing.publish(source, dest))


def _announce(published: registry.Resolved) -> None:
    out.print(f"Published {published.ref} to {published.registry}")
    out.print(
        f"Teammates install it with: BRINELITE_REGISTRY={published.registry} "
        f"brinelite install {published.ref}"
    )


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="Part of a name or description.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """List the datasets of every registry, with versions, rows and sizes."""
    found = registry.search(text)
    for skipped in found.skipped:
        err.print(f"Warning: {skipped}")
    if as_json:
        out.json(
            {
                "query": text,
                "datasets": [
                    {
                        "name": item.name,
                        "versions": list(item.versions),
                        "latest": item.latest,
                        "rows": item.rows,
                        "size": item.size,
                        "description": item.description,
                        "registry": item.registry,
                    }
                    for item in found.listings
                ],
                "skipped": [{"registry": s.registry, "reason": s.reason} for s in found.skipped],
            }
        )
        return
    if not found.listings:
        out.print(f"No dataset matches {text!r} in the registries.")
    for item in found.listings:
        out.print(
            f"{item.name}  versions {', '.join(item.versions)}  {item.rows} rows  "
            f"{_human(item.size)}  ({item.registry})  {shorten(item.description, 60)}".rstrip()
        )


@app.command()
def serve(
    root: Annotated[
        Path, typer.Argument(help="The registry folder to serve.", callback=storable_path)
    ],
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 for all.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.", min=0, max=65535)] = 8000,
    timeout: Annotated[
        float,
        typer.Option(help="Seconds a client has to send its request, or may stay silent."),
    ] = server.DEFAULT_TIMEOUT,
    max_connections: Annotated[
        int, typer.Option(help="Connections served at once; more get 503.", min=1)
    ] = server.DEFAULT_MAX_CONNECTIONS,
) -> None:
    """Serve a registry folder read-only over HTTP; prints its URL first."""
    server.serve(root, host, port, timeout, max_connections)


@registry_app.command("add")
def registry_add(
    name: Annotated[str, typer.Argument(help="A short name for the registry.")],
    url: Annotated[str, typer.Argument(help="A folder, http(s):// or s3:// URL.")],
    token_env: Annotated[
        str | None,
        typer.Option(help="Variable holding its bearer token (the token is never stored)."),
    ] = None,
) -> None:
    """Add a registry, asked after those already added."""
    entry = config.add(name, url, token_env)
    token = f"token from ${entry.token_env}" if entry.token_env else "no token of its own"
    out.print(f"Registry {entry.name} added: {entry.url} ({token}).")


@registry_app.command("list")
def registry_list() -> None:
    """List the registries in the order they are asked."""
    for entry in registry.registries():
        out.print(f"{entry.name}  {entry.url}" if entry.name != entry.url else entry.url)


@registry_app.command("remove")
def registry_remove(name: Annotated[str, typer.Argument(help="The registry's name.")]) -> None:
    """Forget a registry added with ``brinelite registry add``."""
    config.remove(name)
    out.print(f"Registry {name} removed.")


@app.command()
def show(
    name: Annotated[
        str,
        typer.Argument(
            help="scope/name[@version], a dataset folder, or a raw source folder.",
            callback=storable_path,
        ),
    ],
    out_file: Annotated[
        Path, typer.Option("--out", help="Where to write the PNG.", callback=storable_path)
    ] = Path("grid.png"),
    n: Annotated[int, typer.Option("--n", "--rows", help="How many samples to show.", min=1)] = 16,
    seed: Annotated[int, typer.Option(help="Which samples: a random draw with this seed.")] = 0,
    binary: Annotated[
        bool, typer.Option("--binary", help="Raw folder: draw masks of small values as binary.")
    ] = False,
) -> None:
    """Write a contact sheet of samples with their masks laid over them.

    NAME may also be a raw images/ + masks/ folder, to look at it before building.
    """
    from .build import open_source
    from .classes import CLASSES_FILE
    from .manifest import MANIFEST
    from .preview import contact_sheet  # OpenCV: imported only by the command that draws

    folder = Path(name).expanduser()
    raw = folder.is_dir() and not (folder / MANIFEST).is_file()
    dataset = open_source(folder) if raw else load_dataset(name)
    check = folder / CLASSES_FILE if raw and not binary else None
    path = contact_sheet(dataset, out_file, n=n, seed=seed, class_map_file=check)
    out.print(f"Wrote {path}")


@cache_app.command("dir")
def cache_dir() -> None:
    """Print the cache folder (set BRINELITE_HOME to move it)."""
    out.print(str(cache.home()))


@cache_app.command("clean")
def cache_clean() -> None:
    """Delete partial downloads, leftovers of killed installs, and stale prepared caches."""
    found = prepared.stale_caches()
    origins = {path.name: _prepared_from(path) for path in found}
    cleaned = cache.clean(also=found)
    entries = f"{len(cleaned.removed)} entr{'y' if len(cleaned.removed) == 1 else 'ies'}"
    removed = sum(path.parts[0] == "prepared" for path, _ in cleaned.removed)
    stale = f" ({removed} stale prepared cache{'s' * (removed != 1)})" if removed else ""
    out.print(f"Freed {_human(cleaned.freed)} in {entries}{stale}.")
    for path, size in cleaned.removed:
        origin = origins.get(path.name) if path.parts[0] == "prepared" else None
        out.print(f"  {_human(size):>9}  {path}{f'  (prepared from {origin})' if origin else ''}")
    if cleaned.skipped:
        count = len(cleaned.skipped)
        out.print(f"Skipped {count} entr{'y' if count == 1 else 'ies'}:")
        for path, reason in cleaned.skipped:
            out.print(f"  {path}  ({reason})")
    if cleaned.foreign:
        left = ", ".join(sorted(map(str, cleaned.foreign)))
        out.print(f"Left {len(cleaned.foreign)} not created by brinelite (or links): {left}.")


def _prepared_from(folder: Path) -> str | None:
    """The dataset a prepared cache was made from, as its key file says (None if unreadable)."""
    try:
        key = jsonio.loads((folder / prepared.KEY_FILE).read_text("utf-8"))
        return f"{key['dataset']}@{key['version']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def main() -> None:
    """The ``brinelite`` console script."""
    interrupt.started()
    run_app(app)

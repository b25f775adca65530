"""The brinelite CLI verbs a user runs around install: list, show, uninstall, cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from conftest import REPO

import brinelite
from brinelite import cache


def test_list_show_uninstall(pairs_src, tmp_path, cli, brinelite_home):
    assert "No datasets installed" in cli("list").out
    assert cli("install", pairs_src, "--name", "gen/discs@1.0.0").code == 0
    assert cli("install", pairs_src, "--name", "gen/discs@1.1.0").code == 0
    listed = [line.split()[0] for line in cli("list").out.splitlines()]
    assert listed == ["gen/discs@1.0.0", "gen/discs@1.1.0"]

    sheet = tmp_path / "sheet.png"
    shown = cli("show", "gen/discs", "--out", sheet, "--rows", "6")
    assert shown.code == 0 and str(sheet) in shown.out
    grid = cv2.imread(str(sheet))
    assert grid.shape == (8 + 2 * (20 + 168 + 8), 8 + 4 * (224 + 8), 3)  # titles, gaps
    # The overlay outlines mask pixels in cyan: the first tile's disc must show some.
    first = grid[28:196, 8:232].astype(int)
    assert ((first[:, :, 0] > 200) & (first[:, :, 1] > 200) & (first[:, :, 2] < 80)).sum() > 100

    assert cli("uninstall", "gen/discs@1.0.0").code == 0
    assert brinelite.list_datasets() == ["gen/discs@1.1.0"]
    assert cli("uninstall", "gen/discs").code == 0
    assert brinelite.list_datasets() == []
    assert not (brinelite_home / "datasets" / "gen").exists()


def test_cache_dir_follows_brinelite_home(cli, brinelite_home):
    assert cli("cache", "dir").out.strip() == str(brinelite_home)
    (brinelite_home / "downloads").mkdir()
    part = brinelite_home / "downloads" / "0123456789abcdef-x.tar.gz.part"
    part.write_bytes(b"1234")
    assert "Freed 4 B" in cli("cache", "clean").out
    assert not part.exists()


def test_console_script_runs_as_a_process(pairs_src, brinelite_home):
    version = subprocess.run(
        [sys.executable, "-m", "brinelite", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("brinelite ")
    bad = subprocess.run(
        [sys.executable, "-m", "brinelite", "install", "no/such-dataset"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("Error: ") and bad.stderr.count("\n") == 1


# Issue 12, clean output: user text is never markup, piped output is never wrapped, --json.


def test_help_screens_show_brackets_as_written(cli):
    # typer read help text as rich markup: "scope/name[@version]" was shown as "scope/name".
    for command in ("install", "lock", "info", "verify", "show"):
        shown = cli(command, "--help")
        assert shown.code == 0 and "scope/name[@version]" in shown.out, command
    assert "scope/name[@version], an archive URL" in cli("install", "--help").out


def test_paths_and_user_text_are_printed_literally(pairs_src, tmp_path, cli, monkeypatch):
    assert cli("install", pairs_src, "--name", "gen/discs@1.0.0").code == 0
    sheet = tmp_path / "grid[best].png"
    shown = cli("show", "gen/discs", "--out", sheet, "--rows", "2")
    assert shown.code == 0 and f"Wrote {sheet}\n" in shown.out and sheet.is_file()

    registry = tmp_path / "registry"
    description = "[red]x marks :thumbs_up: \x1b]0;owned\x07 the spot"
    archive = tmp_path / "[bold]discs.tar.gz"
    built = cli(
        "build",
        pairs_src,
        "--name",
        "gen/marks",
        "--description",
        description,
        "--out",
        archive,
        "--publish",
        registry,
    )
    assert built.code == 0 and f"-> {archive} (" in built.out
    monkeypatch.setenv("BRINELITE_REGISTRY", str(registry))
    found = cli("search", "[red]x")
    assert found.code == 0
    assert "[red]x marks :thumbs_up: \\x1b]0;owned\\x07 the spot" in found.out
    assert "\x1b" not in found.out and "\x07" not in found.out
    missing = cli("search", "[red]nothing")
    assert "No dataset matches '[red]nothing'" in missing.out


def test_piped_output_is_never_wrapped(pairs_src, tmp_path):
    deep = tmp_path / ("a-very-long-folder-name-" * 8) / "brinelite-home"
    env = {**os.environ, "BRINELITE_HOME": str(deep), "PYTHONPATH": str(REPO)}
    piped = subprocess.run(
        [sys.executable, "-m", "brinelite", "cache", "dir"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert len(str(deep)) > 200 and piped.stdout == f"{deep}\n"

    archive = deep / ("long-archive-name-" * 6 + ".tar.gz")
    deep.mkdir(parents=True)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "brinelite",
            "build",
            str(pairs_src),
            "--name",
            "gen/discs",
            "--out",
            str(archive),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    lines = built.stdout.splitlines()
    assert len(lines) == 2 and f"-> {archive} (" in lines[0] and lines[1].startswith("sha256 ")


def test_json_for_scripts(pairs_src, tmp_path, cli, brinelite_home, monkeypatch):
    assert json.loads(cli("list", "--json").out) == {"cache": str(brinelite_home), "datasets": []}
    registry = tmp_path / "registry"
    assert (
        cli(
            "build",
            pairs_src,
            "--name",
            "gen/discs",
            "--version",
            "1.2.0",
            "--description",
            "Discs",
            "--out",
            tmp_path / "d.tar.gz",
            "--publish",
            registry,
        ).code
        == 0
    )
    assert cli("install", tmp_path / "d.tar.gz").code == 0

    listed = json.loads(cli("list", "--json").out)
    path = str(brinelite_home / "datasets" / "gen" / "discs" / "1.2.0")
    assert listed["datasets"] == [
        {
            "name": "gen/discs",
            "version": "1.2.0",
            "ref": "gen/discs@1.2.0",
            "path": path,
            "bytes": cache.size_on_disk(Path(path)),
        }
    ]

    info = json.loads(cli("info", "gen/discs", "--json").out)
    assert set(info) == {
        "name",
        "version",
        "installed_versions",
        "description",
        "license",
        "citation",
        "card",
        "classes",
        "rows",
        "splits",
        "columns",
        "total_bytes",
        "files",
        "source",
        "sha256",
        "fingerprint",
        "path",
    }
    assert info["classes"] is None  # binary masks
    assert info["splits"] == {}  # no split files
    assert (info["name"], info["version"], info["rows"], info["path"]) == (
        "gen/discs",
        "1.2.0",
        8,
        path,
    )
    assert info["columns"] == [
        {"name": "image", "type": "image"},
        {"name": "mask", "type": "image"},
    ]
    assert len(info["sha256"]) == 64 and info["installed_versions"] == ["1.2.0"]

    verified = json.loads(cli("verify", "gen/discs", "--json").out)
    assert verified == {"name": "gen/discs", "version": "1.2.0", "files": info["files"], "ok": True}

    monkeypatch.setenv("BRINELITE_REGISTRY", str(registry))
    found = json.loads(cli("search", "disc", "--json").out)
    assert found["query"] == "disc" and found["skipped"] == []
    (item,) = found["datasets"]
    assert item["name"] == "gen/discs" and item["versions"] == ["1.2.0"]
    assert (item["latest"], item["rows"], item["description"]) == ("1.2.0", 8, "Discs")
    assert item["size"] > 0 and item["registry"]


# Progress bars: on a terminal or in a notebook, never in pipes, off with the variable.


def test_progress_decision(monkeypatch):
    from brinelite.progress import should_draw

    monkeypatch.delenv("BRINELITE_DISABLE_PROGRESS_BARS", raising=False)
    assert should_draw(False, terminal=True, notebook=False)
    assert should_draw(False, terminal=False, notebook=True)
    assert not should_draw(False, terminal=False, notebook=False)
    assert not should_draw(True, terminal=True, notebook=True)
    monkeypatch.setenv("BRINELITE_DISABLE_PROGRESS_BARS", "1")
    assert not should_draw(False, terminal=True, notebook=True)


def test_notebook_is_detected_from_the_kernel(monkeypatch):
    import builtins

    from brinelite.progress import in_notebook

    assert not in_notebook()  # pytest is no kernel
    for shell, notebook in (("ZMQInteractiveShell", True), ("TerminalInteractiveShell", False)):
        kernel = type(shell, (), {})()
        monkeypatch.setattr(builtins, "get_ipython", lambda kernel=kernel: kernel, raising=False)
        assert in_notebook() is notebook


def _stderr_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``args`` with stderr on a pseudo-terminal (stdout piped); return code and stderr."""
    import pty

    master, slave = pty.openpty()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    process.communicate()
    return process.returncode, b"".join(chunks).decode(errors="replace")


def test_progress_bars_on_a_terminal_and_the_variable_that_turns_them_off(tmp_path):
    install = [sys.executable, "-m", "brinelite", "install", "demo/membrane"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm", "COLUMNS": "100"}
    env.pop("BRINELITE_DISABLE_PROGRESS_BARS", None)
    code, drawn = _stderr_on_a_terminal(install, {**env, "BRINELITE_HOME": str(tmp_path / "a")})
    assert code == 0 and "Extracting demo/membrane" in drawn and "━" in drawn
    env["BRINELITE_DISABLE_PROGRESS_BARS"] = "1"
    code, drawn = _stderr_on_a_terminal(install, {**env, "BRINELITE_HOME": str(tmp_path / "b")})
    assert code == 0 and drawn == ""


# A missing extra: one line naming the pip install to run (the core venv test runs it for real).


def _run_failing(import_name: str, capsys, monkeypatch, **options) -> tuple[int, str]:
    """Run an app whose one command imports ``import_name`` (absent) through run_app."""
    from brinelite.commandline import new_app, run_app

    monkeypatch.setattr(sys, "argv", ["tool"])
    app = new_app("A tool.")

    @app.command()
    def go() -> None:
        raise ModuleNotFoundError(f"No module named {import_name!r}", name=import_name)

    with pytest.raises(SystemExit) as exited:
        run_app(app, **options)
    return exited.value.code, capsys.readouterr().err


def test_a_missing_extra_is_one_line_naming_the_pip_install(capsys, monkeypatch):
    code, err = _run_failing("tensorflow", capsys, monkeypatch)
    assert (
        code == 1 and err == "Error: tensorflow is not installed: pip install 'brinelite[train]'\n"
    )
    code, err = _run_failing("botocore", capsys, monkeypatch)
    assert code == 1 and err.endswith("pip install 'brinelite[s3]'\n") and err.count("\n") == 1
    # A tool that needs one extra as a whole names it, whichever of its modules is missing.
    code, err = _run_failing("keras", capsys, monkeypatch, extra="train")
    assert err == "Error: keras is not installed: pip install 'brinelite[train]'\n"


def test_other_import_errors_stay_real_errors(capsys, monkeypatch):
    # A submodule missing from an installed package, or a module no extra provides, is a bug.
    for name in ("tensorflow.python.framework", "no_such_module"):
        with pytest.raises(ModuleNotFoundError):
            _run_failing(name, capsys, monkeypatch)


# Issue 26.9 and 26.11: every mistake and every write failure is one line, and changes nothing.


def _one_line(result, code: int = 1) -> None:
    assert result.code == code, (result.out, result.err)
    assert result.err.startswith("Error: ") and result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err


def _tree(folder) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"/"
        for p in sorted(folder.rglob("*"))
    }


def test_lock_out_that_cannot_be_written_is_one_line(cli, tmp_path, monkeypatch):
    assert cli("install", "demo/membrane", "-q").code == 0
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("keep me\n")
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    for out in ("missing/brinelite.lock", "a-folder", "a-file/brinelite.lock", "x" * 300):
        result = cli("lock", "demo/membrane", "--out", out)
        _one_line(result)  # before: FileNotFoundError, IsADirectoryError, NotADirectoryError
        assert "lock file" in result.err
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_serve_refuses_a_port_out_of_range_in_one_line(port, cli, tmp_path):
    _one_line(cli("serve", tmp_path, "--port", port), code=2)  # before: OverflowError


def test_over_long_arguments_are_one_line(cli, tmp_path, pairs_src, monkeypatch):
    archive = tmp_path / "pairs.tar.gz"
    assert cli("build", pairs_src, "--name", "gen/discs", "--out", archive, "-q").code == 0
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    long = "L" * 300
    for args in (
        ["info", long],
        ["verify", long],
        ["show", long],
        ["show", "gen/discs", "--out", f"{long}.png"],
        ["publish", long, "--registry", "reg"],
        ["publish", archive, "--registry", long],
        ["build", long, "--name", "gen/discs"],
        ["build", pairs_src, "--name", "gen/discs", "--out", f"{long}.tar.gz"],
    ):
        result = cli(*args)
        assert result.code != 0, args
        assert result.err.startswith("Error: ") and result.err.count("\n") == 1, (args, result.err)
        assert "too long" in result.err  # before: OSError [Errno 36] tracebacks
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("registry", ["", " ", "file://"])
def test_publish_to_an_empty_registry_writes_nothing(
    registry, cli, tmp_path, pairs_src, monkeypatch
):
    archive = tmp_path / "pairs.tar.gz"
    assert cli("build", pairs_src, "--name", "gen/discs", "--out", archive, "-q").code == 0
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = cli("publish", archive, "--registry", registry)
    _one_line(result)  # before: gen/ and index.json written into the current folder
    assert "names no registry" in result.err and list(work.iterdir()) == []


def _limited(limit: int):
    """preexec_fn of a child that may write no file larger than ``limit`` bytes (ulimit -f)."""

    def apply() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_build_and_publish_past_the_file_size_limit_are_one_line(tmp_path, pairs_src, cli):
    def brinelite_limited(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "brinelite", *map(str, args)],
            preexec_fn=_limited(20_000),  # the images fit, the archive (~80 KB) does not
            capture_output=True,
            text=True,
        )

    out = tmp_path / "pairs.tar.gz"
    built = brinelite_limited("build", pairs_src, "--name", "gen/discs", "--out", out, "-q")
    assert built.returncode == 1, built.stderr
    assert built.stderr.count("\n") == 1 and "ulimit -f" in built.stderr  # before: traceback
    assert not out.exists() and list(tmp_path.glob(".pairs*")) == []

    assert cli("build", pairs_src, "--name", "gen/discs", "--out", out, "-q").code == 0
    registry = tmp_path / "registry"
    published = brinelite_limited("publish", out, "--registry", registry)
    assert published.returncode == 1, published.stderr
    assert published.stderr.count("\n") == 1 and "ulimit -f" in published.stderr
    assert not list(registry.rglob("*.json")) and not list(registry.rglob("*.tar.gz"))
    assert cli("publish", out, "--registry", registry).code == 0  # the same command completes


_CTRL_C_AT_NUMPY = """
import os, signal, sys

class CtrlC:  # a real SIGINT, delivered while brinelite's imports are under way
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlC())
"""


def _sigint_as_a_shell_leaves_it() -> None:
    """SIGINT at its default in the child, as a shell starts a command: a child inherits an
    ignored SIGINT (a test before it in this pytest worker may leave it so), and Ctrl-C then
    does nothing at all (the suite saw (0, '') three times)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_while_the_command_starts_is_aborted_not_a_traceback(tmp_path, brinelite_home):
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(_CTRL_C_AT_NUMPY)
    script = tmp_path / "bin" / "brinelite"  # what pip writes for the console script
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\nfrom brinelite.cli import main\nmain()\n")
    script.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "hook"), str(REPO)])}
    for command in ([sys.executable, "-m", "brinelite"], [str(script)]):
        run = subprocess.run(
            [*command, "install", "demo/membrane"], env=env, capture_output=True, text=True,
            preexec_fn=_sigint_as_a_shell_leaves_it,
        )  # fmt: skip
        assert (run.returncode, run.stderr) == (130, "Aborted.\n")  # before: a traceback
    assert not (brinelite_home / "datasets").exists()
    library = subprocess.run(  # any other program importing brinelite keeps Python's Ctrl-C
        [sys.executable, "-c", "import brinelite, signal; print(signal.getsignal(2).__name__)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=_sigint_as_a_shell_leaves_it,
    )
    assert library.stdout == "default_int_handler\n", library.stderr

"""The docs stay true to the code: every environment variable the code reads is in
docs/configuration.md, and every relative link in README.md and docs/*.md leads somewhere."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION = ROOT / "docs" / "configuration.md"
SERVICE_SOURCES = [*sorted((ROOT / "triage").rglob("*.py")), ROOT / "app.py"]
ALL_SOURCES = [
    *SERVICE_SOURCES,
    *sorted((ROOT / "tests").rglob("*.py")),
    *sorted((ROOT / "bench").rglob("*.py")),
]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_ENV_NAME = re.compile(r"`([A-Z][A-Z0-9_]*)`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.MULTILINE | re.DOTALL)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


class EnvReads(ast.NodeVisitor):
    """Collects the environment variables a module reads by a literal name.

    Reads are `os.environ.get("X")`, `os.environ["X"]`, `"X" in os.environ`, `os.getenv("X")`, and calls
    of a name bound to one of those (`env = os.environ.get`) or of a function that passes one of its own
    parameters to one (`_env_int("X", 5)`). A read by a name the visitor cannot see (not a literal and
    not a wrapper's parameter) is kept in `dynamic`, so that no read escapes the check unnoticed.
    """

    def __init__(self, tree: ast.Module) -> None:
        self.names: set[str] = set()
        self.dynamic: list[int] = []
        self.readers: set[str] = set()
        self._find_readers(tree)
        self._parameters: list[set[str]] = []
        self.visit(tree)

    def _find_readers(self, tree: ast.Module) -> None:
        """Aliases of the readers and wrapper functions, until no new one turns up."""
        while True:
            found = set(self.readers)
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and self._is_reader(node.value):
                    found |= {t.id for t in node.targets if isinstance(t, ast.Name)}
                elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    params = {a.arg for a in node.args.args + node.args.kwonlyargs}
                    for call in ast.walk(node):
                        if (
                            isinstance(call, ast.Call)
                            and self._is_reader(call.func)
                            and call.args
                            and isinstance(call.args[0], ast.Name)
                            and call.args[0].id in params
                        ):
                            found.add(node.name)
            if found == self.readers:
                return
            self.readers = found

    @staticmethod
    def _is_environ(node: ast.expr) -> bool:
        """`os.environ`, or `environ` imported from os (not a WSGI `request.environ`)."""
        if isinstance(node, ast.Attribute):
            return (
                node.attr == "environ"
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            )
        return isinstance(node, ast.Name) and node.id == "environ"

    def _is_reader(self, func: ast.expr) -> bool:
        """`os.environ.get`, `os.getenv`, or a name known to read the environment."""
        if isinstance(func, ast.Attribute):
            if func.attr in {"get", "pop", "setdefault"} and self._is_environ(func.value):
                return True
            return func.attr == "getenv" or func.attr in self.readers
        return isinstance(func, ast.Name) and (func.id == "getenv" or func.id in self.readers)

    def _read(self, node: ast.expr | None, line: int) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            self.names.add(node.value)
        elif not (
            isinstance(node, ast.Name) and self._parameters and node.id in self._parameters[-1]
        ):
            self.dynamic.append(line)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        """Remember the parameters: a wrapper reads the name its caller gives."""
        names = {a.arg for a in node.args.args + node.args.kwonlyargs}
        self._parameters.append(names if node.name in self.readers else set())
        self.generic_visit(node)
        self._parameters.pop()

    def visit_Call(self, node: ast.Call) -> None:
        """`reader("X", ...)`."""
        if self._is_reader(node.func):
            self._read(node.args[0] if node.args else None, node.lineno)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        """`os.environ["X"]`."""
        if self._is_environ(node.value):
            self._read(node.slice, node.lineno)
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        """`"X" in os.environ`."""
        if any(isinstance(op, ast.In | ast.NotIn) for op in node.ops) and any(
            self._is_environ(c) for c in node.comparators
        ):
            self._read(node.left, node.lineno)
        self.generic_visit(node)


def env_reads(paths: list[Path]) -> dict[str, list[str]]:
    """Every environment variable read in `paths`, with where ("file:line" of the first read)."""
    found: dict[str, list[str]] = {}
    for path in paths:
        reads = EnvReads(ast.parse(path.read_text(), str(path)))
        for name in reads.names:
            found.setdefault(name, []).append(str(path.relative_to(ROOT)))
        for line in reads.dynamic:
            found.setdefault("<dynamic>", []).append(f"{path.relative_to(ROOT)}:{line}")
    return found


def documented_settings() -> set[str]:
    """Names in the first cell of a table row of docs/configuration.md."""
    names: set[str] = set()
    for line in CONFIGURATION.read_text().splitlines():
        cells = line.strip().split("|")
        if line.lstrip().startswith("|") and len(cells) > 2:
            names |= set(_ENV_NAME.findall(cells[1]))
    return names


def test_the_finder_sees_every_way_of_reading_the_environment() -> None:
    source = """
import os
from os import environ, getenv

def _env_int(name, default):
    raw = os.environ.get(name)
    return int(raw) if raw else default

def _env_flag(key):
    return _env_int(key, 0) == 1

env = os.environ.get
A = os.environ.get("A_GET")
B = os.environ["B_ITEM"]
C = os.getenv("C_GETENV")
D = getenv("D_GETENV")
E = environ.get("E_FROM_IMPORT")
F = env("F_ALIAS")
G = _env_int("G_WRAPPER", 3)
H = _env_flag("H_WRAPPED_WRAPPER")
I = "I_IN" in os.environ
os.environ.setdefault("J_DEFAULT", "1")
settings = {"K_NOT_READ": 1}
L = os.environ.get(f"L_{A}")
"""
    reads = EnvReads(ast.parse(source))
    assert reads.names == {
        "A_GET",
        "B_ITEM",
        "C_GETENV",
        "D_GETENV",
        "E_FROM_IMPORT",
        "F_ALIAS",
        "G_WRAPPER",
        "H_WRAPPED_WRAPPER",
        "I_IN",
        "J_DEFAULT",
    }
    assert reads.dynamic == [24]


def test_the_finder_sees_the_services_settings() -> None:
    found = env_reads(SERVICE_SOURCES)
    # one of each kind: os.environ.get alias in from_env, _env_int, _env_bool, gunicorn's os.environ.get
    assert {"DATABASE_URL", "SMTP_PORT", "SMTP_STARTTLS", "BIND"} <= set(found)


def test_every_setting_the_code_reads_is_documented() -> None:
    found = env_reads(SERVICE_SOURCES)
    assert "<dynamic>" not in found, (
        "environment read by a computed name (name it literally, so this test can check the docs): "
        + ", ".join(found["<dynamic>"])
    )
    missing = sorted(set(found) - documented_settings())
    assert not missing, "read by the code but missing from a table in docs/configuration.md: " + (
        ", ".join(f"{name} ({found[name][0]})" for name in missing)
    )


def test_every_documented_setting_is_read_somewhere() -> None:
    read = set(env_reads(ALL_SOURCES))
    stale = sorted(documented_settings() - read)
    assert not stale, (
        "documented in docs/configuration.md but read by no code in triage/, app.py, tests/ or bench/: "
        + ", ".join(stale)
    )


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE)}


def _links(path: Path) -> list[str]:
    text = _FENCE.sub("", path.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans: `[a](b)` there is not a link
    return _LINK.findall(text) + _REFERENCE.findall(text)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_that_exist(doc: Path) -> None:
    broken = []
    for target in _links(doc):
        if _SCHEME.match(target):
            continue  # http:, https:, mailto: ...
        file_part, _, anchor = target.partition("#")
        resolved = (doc.parent / file_part).resolve() if file_part else doc
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target} (no heading with that anchor)")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_docs_are_all_there() -> None:
    names = {p.name for p in DOCS}
    assert {
        "README.md",
        "architecture.md",
        "operations.md",
        "configuration.md",
        "performance.md",
    } <= names

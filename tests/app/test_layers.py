"""Who may import whom (docs/architecture.md), read from the source with ``ast``, and files of one job."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 450
#: modules of app/stages that are no stage: shared helpers any stage may import
STAGE_HELPERS = {"app.stages.models"}
#: files still over MAX_LINES, with why (each one is a promise to split it, not a licence)
TOO_LONG: dict[str, str] = {}


def module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (relative imports resolved)."""
    found = set()
    package = module_of(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_runtime_imports_no_stage_display_gallery_or_tracking_module():
    bad = {module_of(p): sorted(m for m in imports(p) if under(m, "app.stages", "app.display", "app.gallery",
                                                             "app.tracking", "app.cli"))
           for p in sources("app/runtime")}
    assert {k: v for k, v in bad.items() if v} == {}


def test_a_stage_imports_neither_the_runtime_nor_another_stage():
    stages = {module_of(p) for p in sources("app/stages")} - STAGE_HELPERS - {"app.stages"}
    assert {"app.stages.capture", "app.stages.detect", "app.stages.display"} <= stages
    bad = {}
    for path in sources("app/stages"):
        me = module_of(path)
        wrong = sorted(m for m in imports(path) if under(m, "app.runtime", "app.cli")
                       or any(under(m, s) for s in stages - {me}))
        if wrong:
            bad[me] = wrong
    assert bad == {}


def test_engines_know_nothing_of_the_app_and_nothing_imports_the_cli():
    assert {module_of(p): sorted(m for m in imports(p) if under(m, "app"))
            for p in sources("engines") if any(under(m, "app") for m in imports(p))} == {}
    outside = [p for p in sources("app") if not under(module_of(p), "app.cli", "app.__main__")]
    assert {module_of(p) for p in outside if any(under(m, "app.cli") for m in imports(p))} == set()


@pytest.mark.parametrize("folder", ["app", "engines"])
def test_no_source_file_is_over_the_line_limit(folder):
    long = {str(p.relative_to(ROOT)): n for p in sources(folder) if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert {k: v for k, v in long.items() if k not in TOO_LONG} == {}, f"split these (> {MAX_LINES} lines)"
    assert [k for k in TOO_LONG if k.startswith(folder + "/") and k not in long] == [], "short now: unlist it"

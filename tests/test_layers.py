"""The apps' layers, bottom to top; an app imports only from its own layer and below:

0. infrastructure, no domain: leadflow/db.py, env.py, middleware.py, storage.py, charts.py,
   progress.py, query.py, pagination.py, openapi.py, throttling.py, representation.py,
   metrics.py, metrics_files.py, encryption.py
1. the core, ``leadflow.leads``: leads, events, sources, keys, ingest, roles, and the
   lifecycle (stages, transitions, StageChange)
2. ``scoring``
3. ``handoff``
4. the project package ``leadflow`` (settings, urls, celery, pages composed of apps)

A lower layer learns of what happens above it through signals (the lifecycle's
``stages_changed``) or names (the core enqueues ``scoring.tasks.score_leads`` by name).
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("leadflow", "scoring", "handoff")
LAYER_NAMES = {0: "infrastructure", 1: "core", 2: "scoring", 3: "handoff", 4: "project"}
INFRASTRUCTURE = (
    "leadflow.db",
    "leadflow.env",
    "leadflow.middleware",
    "leadflow.storage",
    "leadflow.charts",
    "leadflow.progress",
    "leadflow.query",
    "leadflow.pagination",
    "leadflow.openapi",
    "leadflow.throttling",
    "leadflow.representation",
    "leadflow.metrics",
    "leadflow.metrics_files",
    "leadflow.encryption",
)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_of(module: str) -> int | None:
    """The layer of a module of ours, None for anything else (Django, the standard library…)."""
    if any(_within(module, name) for name in INFRASTRUCTURE):
        return 0
    if _within(module, "leadflow.leads"):
        return 1
    if _within(module, "scoring"):
        return 2
    if _within(module, "handoff"):
        return 3
    if _within(module, "leadflow"):
        return 4
    return None


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str, root: Path) -> bool:
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, at module level or inside a function.
    ``from package import module`` counts as importing the module."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[tuple[int, str], None] = {}  # ordered, without repeats
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(((node.lineno, alias.name), None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the file's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found[node.lineno, candidate if _is_module(candidate, root) else base] = None
    return sorted(found)


def layering_violations(root: Path) -> list[str]:
    problems = []
    for app in APPS:
        for path in sorted((root / app).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            own = layer_of(_module_name(path, root))
            if own is None:
                continue
            for line, imported in imported_modules(path, root):
                target = layer_of(imported)
                if target is not None and target > own:
                    problems.append(
                        f"{relative}:{line} imports {imported} "
                        f"(layer {own} {LAYER_NAMES[own]} imports layer {target} {LAYER_NAMES[target]} above it)"
                    )
    return problems


def test_no_app_imports_a_layer_above_it():
    problems = layering_violations(ROOT)
    assert not problems, "Imports against the layering:\n" + "\n".join(problems)


def test_the_layering_check_catches_an_upward_import_even_inside_a_function(tmp_path):
    for package in ("leadflow", "leadflow/leads", "scoring", "handoff"):
        (tmp_path / package).mkdir(parents=True, exist_ok=True)
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "handoff" / "services.py").write_text("from leadflow.leads import lifecycle\n")
    (tmp_path / "leadflow" / "db.py").write_text("import json\n")
    (tmp_path / "scoring" / "services.py").write_text(
        "from handoff import services\n\n\ndef later():\n    from leadflow import urls\n"
    )
    (tmp_path / "leadflow" / "leads" / "models.py").write_text("from ..db import update_from_values\n")
    (tmp_path / "leadflow" / "leads" / "lifecycle.py").write_text("from .. import urls\n")

    assert layering_violations(tmp_path) == [
        "leadflow/leads/lifecycle.py:1 imports leadflow (layer 1 core imports layer 4 project above it)",
        "scoring/services.py:1 imports handoff.services (layer 2 scoring imports layer 3 handoff above it)",
        "scoring/services.py:5 imports leadflow (layer 2 scoring imports layer 4 project above it)",
    ]


# --- Every module imports in a fresh interpreter, in any order ----------------------------------
def _app_modules() -> list[str]:
    names = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.relative_to(ROOT).parts:
                names.append(_module_name(path, ROOT))
    return names


_IMPORT_ALL = """
import importlib, json, sys, traceback
import django
django.setup()
failed = {}
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception:
        failed[name] = traceback.format_exc()
print(json.dumps(failed))
"""


def _fresh_env() -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "leadflow.settings", "DEBUG": "1", "PYTHONPATH": str(ROOT)}


def _app_of(module: str) -> str:
    return "leadflow.leads" if _within(module, "leadflow.leads") else module.split(".")[0]


@pytest.mark.parametrize(
    "order",
    [
        ("handoff", "scoring", "leadflow.leads", "leadflow"),
        ("scoring", "handoff", "leadflow.leads", "leadflow"),
        ("leadflow.leads", "handoff", "scoring", "leadflow"),
        ("leadflow", "handoff", "scoring", "leadflow.leads"),
        "reverse-alphabetical",
    ],
    ids=lambda order: order if isinstance(order, str) else "-".join(order),
)
def test_every_module_imports_in_a_fresh_interpreter(order):
    """django.setup() and then every module of the apps (migrations aside), handoff's
    before scoring's and the other way round: no import cycle, now that every import
    between apps is at module level."""
    everything = _app_modules()
    if isinstance(order, str):
        modules = sorted(everything, reverse=True)
    else:
        modules = [name for app in order for name in everything if _app_of(name) == app]
    assert sorted(modules) == sorted(everything)
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, json.dumps(modules)],
        cwd=ROOT,
        env=_fresh_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    failed = json.loads(result.stdout.strip().splitlines()[-1])
    assert not failed, "\n".join(f"{name}:\n{error}" for name, error in failed.items())


def test_the_core_enqueues_scoring_by_name_and_eager_mode_runs_it_in_process():
    """A fresh process that only set Django up (a web server's) knows scoring's task, so
    the core's by-name enqueue runs it eagerly, as importing the task used to."""
    script = """
import django
django.setup()
from unittest import mock
from celery import current_app
from leadflow.leads import scoring_requests
assert scoring_requests.SCORE_LEADS_TASK in current_app.tasks, "scoring's AppConfig registers its tasks"
with mock.patch("scoring.services.leads_score") as leads_score:
    scoring_requests.request_scoring([3, 1, 2])
leads_score.assert_called_once_with(lead_ids=[3, 1, 2])
"""
    env = {**_fresh_env(), "CELERY_TASK_ALWAYS_EAGER": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr

"""contracts/ holds the Solidity, its build, the compiler and the artifact loader, and nothing of
the Django project: the chain client and the indexer live in marketplace/payments/. The
dependency runs one way (payments uses contracts), so the build check and a plain deploy work
without Django, and contracts/ can never close an import circle with the payments app."""

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = REPO_ROOT / "contracts"


def _modules() -> list[str]:
    return sorted(f"contracts.{p.stem}" for p in CONTRACTS_DIR.glob("*.py") if p.stem != "__init__")


def test_contracts_modules_import_without_django():
    modules = _modules()
    assert "contracts.deploy" in modules and "contracts.compile" in modules
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    # A clean interpreter: no DJANGO_SETTINGS_MODULE, nothing imported by pytest-django.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    top_level = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "contracts" in top_level
    assert "django" not in top_level
    assert "marketplace" not in top_level
    assert "workers" not in top_level


def test_no_contracts_source_names_django_or_the_project():
    """Also the imports inside functions, which importing the module does not run."""
    offenders = []
    for path in sorted(CONTRACTS_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] in ("django", "rest_framework", "celery", "marketplace"):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {name}")
    assert offenders == []

"""Build contracts/build/*.json from contracts/src/*.sol, or check that the committed build matches.

    python contracts/compile.py           # write the build
    python contracts/compile.py --check   # exit 1 if build/ differs from a fresh compile

The compiler is solc-js pinned in package.json, so run `npm ci` first. Standard library only:
the check runs in CI before Django or web3 is importable.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

CONTRACTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = CONTRACTS_DIR.parent
BUILD_DIR = CONTRACTS_DIR / "build"
COMPILE_JS = CONTRACTS_DIR / "compile.js"
SOLC_PACKAGE = REPO_ROOT / "node_modules" / "solc"


class CompileError(RuntimeError):
    pass


def compile_sources() -> dict[str, dict]:
    """Compile every source in memory and return {contract name: artifact}."""
    if not SOLC_PACKAGE.is_dir():
        raise CompileError(f"{SOLC_PACKAGE} is missing: run `npm ci` in {REPO_ROOT} first")
    node = shutil.which("node")
    if node is None:
        raise CompileError("node is not on PATH; the Solidity compiler is solc-js")
    result = subprocess.run(
        [node, str(COMPILE_JS)], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise CompileError(f"solc failed:\n{result.stderr}")
    if result.stderr:
        # Warnings are not fatal, but they should not scroll by unseen either.
        print(result.stderr, file=sys.stderr, end="")
    return json.loads(result.stdout)


def render(artifact: dict) -> str:
    return json.dumps(artifact, sort_keys=True, indent=2) + "\n"


def write_build(artifacts: dict[str, dict]) -> None:
    BUILD_DIR.mkdir(exist_ok=True)
    for stale in set(_built_names()) - set(artifacts):
        (BUILD_DIR / f"{stale}.json").unlink()
    for name, artifact in artifacts.items():
        (BUILD_DIR / f"{name}.json").write_text(render(artifact))


def check_build(artifacts: dict[str, dict] | None = None) -> list[str]:
    """Return one line per difference between build/ and a fresh compile; empty when in sync."""
    if artifacts is None:
        artifacts = compile_sources()
    problems = []
    built = set(_built_names())
    for name in sorted(built - set(artifacts)):
        problems.append(f"build/{name}.json has no source contract")
    for name in sorted(artifacts):
        if name not in built:
            problems.append(f"build/{name}.json is missing")
        elif (BUILD_DIR / f"{name}.json").read_text() != render(artifacts[name]):
            problems.append(f"build/{name}.json is out of date")
    return problems


def _built_names() -> list[str]:
    if not BUILD_DIR.is_dir():
        return []
    return [p.stem for p in BUILD_DIR.glob("*.json")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    try:
        artifacts = compile_sources()
    except CompileError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.check:
        problems = check_build(artifacts)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run `python contracts/compile.py` and commit contracts/build/", file=sys.stderr)
            return 1
        print(f"contracts/build is up to date ({len(artifacts)} contracts)")
        return 0
    write_build(artifacts)
    print(f"wrote {len(artifacts)} artifacts to {BUILD_DIR.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

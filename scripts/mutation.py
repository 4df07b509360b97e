"""`make mutation`: mutation testing (mutmut 3) of the modules that money and trust rest on.

Each scope is a set of modules and the tests that guard them. For each scope this copies the
working tree (tracked and new files) to .run/mutation/<scope>/, writes mutmut's configuration
there, runs `mutmut run` (mutmut runs, for each mutant, only the tests that reach the mutated
function), and reads every mutant's status back. Then it prints, per module: mutants, killed
(timeouts count as killed: the mutant made the tests hang, which a test run notices), survived,
equivalent, and the kill rate over the non-equivalent mutants beside the target.

Equivalent mutants are listed in scripts/mutation_equivalents.toml, each matched by module,
function and the exact lines the mutant changes (not by mutmut's number, which moves when the
source changes), with the reason it cannot be told apart from the original.

    python scripts/mutation.py                    # every scope
    python scripts/mutation.py verification       # one scope
    python scripts/mutation.py --list             # the scopes and their tests
    python scripts/mutation.py --show-survivors   # print each survivor's diff

Exit status: 0 when every module reaches the target, 1 otherwise.
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".run" / "mutation"
EQUIVALENTS = REPO / "scripts" / "mutation_equivalents.toml"
TARGET = 0.90


@dataclass(frozen=True)
class Scope:
    name: str
    modules: tuple[str, ...]
    tests: tuple[str, ...]
    # A Redis database of its own, so a scope's Celery tasks never reach another run's worker.
    redis_db: int = 7
    # Tests in the selected paths left out of the run (slow, or exercising nothing mutated here).
    deselect: tuple[str, ...] = ()


# Test selections sized for a 2-core machine: the tests that exercise each module, not the suite.
SCOPES = [
    Scope(
        "verification",
        modules=(
            "workers/verification/merkle.py",
            "workers/verification/protocol.py",
            "workers/kernels/generator.py",
        ),
        tests=(
            "tests/workers/test_merkle.py",
            "tests/workers/test_protocol.py",
            "tests/workers/test_generator.py",
            "tests/workers/test_verify_fast.py",
            "tests/workers/test_mutation_kills_verification.py",
        ),
    ),
    Scope(
        "sketch",
        modules=(
            "workers/verification/sketch.py",
            "workers/verification/precision.py",
            "workers/kernels/chain.py",
            "workers/kernels/floatgen.py",
        ),
        # test_int8_chain: the exact integer chain (issue 9) in chain.py, floatgen.py, sketch.py.
        tests=("tests/verification_sketch/", "tests/workers/test_int8_chain.py"),
        # 3 s per run in a subprocess the mutants never reach (mutmut's trampolines are not
        # loaded there); the in-process tests cover the same computation.
        deselect=(
            "tests/verification_sketch/test_honest.py::"
            "test_bob_in_another_process_with_other_blas_threads_passes",
        ),
        redis_db=7,
    ),
    Scope(
        "orders",
        modules=("marketplace/orders/services.py", "marketplace/orders/selectors.py"),
        tests=(
            "tests/core/test_order_lifecycle.py",
            "tests/core/test_order_exact.py",
            "tests/orders_capacity/",
            "tests/api/test_order_idempotency.py",
            "tests/races/test_order_transition_race.py",
            "tests/orders/",
        ),
        redis_db=6,
    ),
    # Issue 14 names "collateral and slashing": what a provider must lock, what a verdict
    # slashes, what the period's rewards pay, and the stake replayed from chain events.
    Scope(
        "collateral",
        modules=(
            "marketplace/payments/collateral.py",
            "marketplace/payments/collateral_services.py",
            "marketplace/payments/rewards.py",
            "marketplace/payments/services/stakes.py",
            "marketplace/payments/services/slashing.py",
            "marketplace/payments/services/rewarding.py",
        ),
        tests=(
            "tests/collateral/",
            "tests/payments/test_verdict_effects.py",
            "tests/payments/test_liveness_slash.py",
            "tests/payments/test_indexer.py",
            "tests/lease_checks/test_lease_check_deadline.py",
        ),
        deselect=(
            # The agent's stake command in a subprocess on Anvil (tens of seconds a run): the
            # mutants are not reached there, and the same stake path runs in process in the
            # others.
            "tests/collateral/test_agent_stake_cli.py",
        ),
        redis_db=5,
    ),
    # Issue 14's "funding-term checks, settlement amounts, indexer effects": the escrow's
    # funding and settlement as the indexer applies them. Not here: services/deployment.py
    # (deploys the contracts), services/faucet.py (mints test tokens, local chains only) and
    # services/transactions.py (waits for and rebroadcasts our own transactions): none of them
    # decides an amount or a state that money follows.
    Scope(
        "settlement",
        modules=(
            "marketplace/payments/services/leases.py",
            "marketplace/payments/services/chain_events.py",
            "marketplace/payments/indexer.py",
            "marketplace/payments/selectors.py",
            "marketplace/payments/reconciliation.py",
        ),
        tests=(
            "tests/payments/",
            "tests/indexer/",
            "tests/reconcile/",
            "tests/races/test_settlement_race.py",
            "tests/lease_checks/test_start_confirmation.py",
            "tests/orders_capacity/test_funding.py",
        ),
        redis_db=8,
    ),
]


@dataclass
class ModuleResult:
    mutants: int = 0
    killed: int = 0
    timeouts: int = 0
    survived: list[str] = field(default_factory=list)
    equivalent: list[tuple[str, str]] = field(default_factory=list)
    not_run: int = 0
    # With --sample: the module's mutants left out of the sample (mutmut's "not checked").
    unsampled: int = 0

    @property
    def judged(self) -> int:
        return self.mutants - len(self.equivalent) - self.not_run

    @property
    def rate(self) -> float:
        return 1.0 if self.judged <= 0 else self.killed / self.judged

    def interval(self) -> tuple[float, float]:
        """Wilson 95% interval of the kill rate, for a sampled module (the mutants drawn are a
        simple random sample of the module's, so the rate over all of them lies in here 19
        times in 20)."""
        n = self.judged
        if n <= 0:
            return 0.0, 1.0
        z = 1.959964
        p = self.killed / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)


def copy_tree(dest: Path, committed: bool = False) -> None:
    """The tracked files and new files not ignored: what the next commit would hold. With
    `committed`, the last commit only: in a checkout others are editing, their half-done
    changes (a contract rewritten before the code that calls it) stay out of the run."""
    if dest.exists():
        shutil.rmtree(dest)
    if committed:
        dest.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", "HEAD"], cwd=REPO, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        for shared in (".venv", "node_modules"):
            if (REPO / shared).exists():
                (dest / shared).symlink_to(REPO / shared)
        return
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = Path(raw.decode())
        source = REPO / rel
        if not source.is_file():
            continue  # deleted in the working tree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    for shared in (".venv", "node_modules"):
        if (REPO / shared).exists():
            (dest / shared).symlink_to(REPO / shared)


def configure(dest: Path, scope: Scope) -> None:
    # The root conftest of the copy only: one migrated test database, copied per pytest session.
    shutil.copy2(REPO / "scripts" / "mutation_conftest.py", dest / "conftest.py")
    quoted = ", ".join(f'"{m}"' for m in scope.modules)
    tests = ", ".join(f'"{t}"' for t in scope.tests)
    with open(dest / "pyproject.toml", "a") as config:
        config.write(
            "\n[tool.mutmut]\n"
            f"source_paths = [{quoted}]\n"
            'also_copy = ["marketplace", "workers", "contracts", "tests", "manage.py", '
            '"conftest.py"]\n'
            f"pytest_add_cli_args_test_selection = [{tests}]\n"
            # torch's thread pools are not fork-safe: a worker forked from a process that ran
            # the tests can deadlock on an inherited lock and be counted as a 'timeout' kill.
            # A fork server that has run nothing forks clean workers.
            'process_isolation = "forkserver"\n'
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x", "-m", "not slow"'
            + "".join(f', "--deselect", "{test}"' for test in scope.deselect)
            + "]\n"
        )


def sync_tests(dest: Path) -> None:
    """For --resume: the current tests/ tree into the existing copy (and mutmut's own copy of
    it, mutants/), so that tests written since the copy was made run against the mutants; the
    whole tree, not only the scope's selection, because new tests import new shared helpers
    (tests/factories.py, conftests). mutmut collects coverage for new tests only."""
    for root in (dest, dest / "mutants"):
        shutil.copy2(REPO / "scripts" / "mutation_conftest.py", root / "conftest.py")
    for path in sorted((REPO / "tests").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            rel = path.relative_to(REPO)
            for root in (dest, dest / "mutants"):
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, root / rel)


def run_mutmut(
    dest: Path, scope: Scope, max_children: int, names: tuple[str, ...] = (), check: bool = True
) -> None:
    env = {
        **os.environ,
        "TEST_SQLITE_PATH": str(dest / ".run" / "test.sqlite3"),
        "REDIS_URL": f"redis://127.0.0.1:6379/{scope.redis_db}",
        "PYTHONDONTWRITEBYTECODE": "1",
        # Built by the first pytest session of this run (scripts/mutation_conftest.py), from the
        # migrations as they are now, then copied by every later one.
        "MUTATION_DB_TEMPLATE": str(dest / ".run" / "template.sqlite3"),
    }
    (dest / ".run").mkdir(exist_ok=True)
    (dest / ".run" / "template.sqlite3").unlink(missing_ok=True)
    # mutmut's own copy (mutants/, where the tests run) holds only `also_copy`; the chain tests
    # start node_modules/.bin/anvil from the tree root (mutmut never deletes mutants/).
    if (REPO / "node_modules").exists():
        (dest / "mutants").mkdir(exist_ok=True)
        link = dest / "mutants" / "node_modules"
        if not link.exists():
            link.symlink_to(REPO / "node_modules")
    mutmut = REPO / ".venv" / "bin" / "mutmut"
    # mutmut draws its own progress line (mutants done, killed, survived) on the terminal.
    subprocess.run(
        [str(mutmut), "run", "--max-children", str(max_children), *names],
        cwd=dest,
        env=env,
        check=check,
    )


def statuses(dest: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(REPO / ".venv" / "bin" / "mutmut"), "results", "--all", "true"],
        cwd=dest,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep:
            found[name] = status.strip()
    return found


def mutant_diff(dest: Path, name: str) -> tuple[list[str], list[str], list[str]]:
    """The lines the mutant removes, those it adds, and the diff's unchanged context lines."""
    out = subprocess.run(
        [str(REPO / ".venv" / "bin" / "mutmut"), "show", name],
        cwd=dest,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    removed = [
        line[1:].strip()
        for line in out.splitlines()
        if line.startswith("-") and not line.startswith("---")
    ]
    added = [
        line[1:].strip()
        for line in out.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]
    context = [line[1:].strip() for line in out.splitlines() if line.startswith(" ")]
    return removed, added, context


_NAME = re.compile(r"^(?P<module>.+)\.x(?:ǁ(?P<cls>[^ǁ]+)ǁ|_)(?P<func>.+?)__mutmut_\d+$")


def module_and_function(name: str) -> tuple[str, str]:
    match = _NAME.match(name)
    if not match:
        return name.rsplit(".", 1)[0], "?"
    func = match["func"]
    if match["cls"]:
        func = f"{match['cls']}.{func}"
    return match["module"], func


def load_equivalents() -> list[dict]:
    if not EQUIVALENTS.exists():
        return []
    with open(EQUIVALENTS, "rb") as source:
        return tomllib.load(source).get("equivalent", [])


def equivalence_reason(
    equivalents: list[dict],
    module: str,
    func: str,
    removed: list[str],
    added: list[str],
    context: list[str] = (),
) -> str | None:
    """An entry's optional `context` lines must be among the diff's unchanged lines around the
    change: for lines that occur more than once in a function, it says which occurrence."""
    for entry in equivalents:
        if (
            entry["module"] == module
            and entry["function"] == func
            and [line.strip() for line in entry["original"]] == removed
            and [line.strip() for line in entry["mutant"]] == added
            and all(line.strip() in context for line in entry.get("context", []))
        ):
            return entry["why"]
    return None


def judge(dest: Path, show_survivors: bool) -> dict[str, ModuleResult]:
    equivalents = load_equivalents()
    sample = read_sample(dest)
    results: dict[str, ModuleResult] = {}
    for name, status in sorted(statuses(dest).items()):
        module, func = module_and_function(name)
        result = results.setdefault(module, ModuleResult())
        if sample is not None and name not in sample:
            result.unsampled += 1
            continue
        result.mutants += 1
        if status == "killed":
            result.killed += 1
        elif status == "timeout":
            result.killed += 1
            result.timeouts += 1
        elif status in ("survived", "no tests"):
            removed, added, context = mutant_diff(dest, name)
            why = equivalence_reason(equivalents, module, func, removed, added, context)
            if why:
                result.equivalent.append((name, why))
            else:
                result.survived.append(name)
                if show_survivors:
                    print(f"\nSURVIVED {name} ({status})")
                    for line in removed:
                        print(f"  - {line}")
                    for line in added:
                        print(f"  + {line}")
        else:  # not checked, suspicious, skipped, segfault: not judged either way
            result.not_run += 1
    return results


SAMPLE_LISTING_ONLY = "*__mutmut_none_sample_listing_only"


def draw_sample(
    dest: Path, scope: Scope, per_module: int, seed: int, max_children: int, listed: bool = False
):
    """A seeded simple random sample of each module's mutants, for a scope too big to run whole
    in the time there is. mutmut is run once with a pattern no mutant matches (it generates the
    mutants and maps tests to functions, and tests none), the sample is drawn from the mutants
    it lists, per module, with random.Random(f"{seed}:{module}"), and written to
    .run/sample.txt: the report then counts only those (see ModuleResult.interval)."""
    # mutmut generates the mutants and records which tests reach which function, then stops
    # with "nothing matches" (exit status 1): the listing below says whether it got that far.
    if not listed:
        run_mutmut(dest, scope, max_children, (SAMPLE_LISTING_ONLY,), check=False)
    by_module: dict[str, list[str]] = {}
    found = statuses(dest)
    for name in found:
        by_module.setdefault(module_and_function(name)[0], []).append(name)
    if not by_module:
        raise SystemExit(f"mutmut listed no mutants for scope {scope.name}")
    chosen = []
    for module, names in sorted(by_module.items()):
        names.sort()
        if all(found[name] != "not checked" for name in names):
            # Run whole already (a resumed copy, `--only` its mutants): its full figure stands.
            chosen += names
            continue
        rng = random.Random(f"{seed}:{module}")
        chosen += rng.sample(names, min(per_module, len(names)))
    (dest / ".run" / "sample.txt").write_text(
        f"# seed {seed}, {per_module} per module\n" + "\n".join(sorted(chosen)) + "\n"
    )
    return tuple(sorted(chosen))


def read_sample(dest: Path) -> set[str] | None:
    path = dest / ".run" / "sample.txt"
    if not path.exists():
        return None
    return {line for line in path.read_text().splitlines() if line and not line.startswith("#")}


def pending_mutants(dest: Path, patterns: tuple[str, ...]) -> tuple[str, ...]:
    """The mutants named by `patterns` (names or fnmatch globs) that have no result yet."""
    exact = set(patterns)
    globs = [p for p in patterns if any(c in p for c in "*?[")]
    return tuple(
        name
        for name, status in sorted(statuses(dest).items())
        if status == "not checked"
        and (name in exact or any(fnmatch.fnmatch(name, glob) for glob in globs))
    )


def survivors_to_rerun(dest: Path) -> tuple[str, ...]:
    """Last run's survivors, less those listed as equivalent (no test can kill them)."""
    equivalents = load_equivalents()
    names = []
    for name, status in statuses(dest).items():
        if status not in ("survived", "no tests"):
            continue
        module, func = module_and_function(name)
        if not equivalence_reason(equivalents, module, func, *mutant_diff(dest, name)):
            names.append(name)
    return tuple(names)


def print_table(all_results: dict[str, ModuleResult]) -> bool:
    header = (
        f"{'module':45} {'mutants':>7} {'killed':>7} {'(timeout)':>9} {'survived':>8} "
        f"{'equiv.':>6} {'not run':>7} {'killed %':>8}  target"
    )
    print("\n" + header)
    print("-" * len(header))
    all_met = True
    for module, r in sorted(all_results.items()):
        # Nothing judged because nothing ran (an interrupted run) is no figure at all.
        unjudged = r.judged <= 0 and r.not_run > 0
        # Some run, some not (an interrupted or --only run): the rate is over those run only,
        # which is neither the full figure nor a random sample of it.
        partial = not unjudged and r.not_run > 0
        met = r.rate >= TARGET and not unjudged and not partial
        all_met &= met
        rate = f"{'n/a':>8}" if unjudged else f"{r.rate:8.1%}"
        verdict = "met" if met else ("NOT RUN" if unjudged else "MISSED")
        if partial:
            verdict = f"PARTIAL: {r.not_run} of {r.mutants} not run"
        print(
            f"{module:45} {r.mutants:7} {r.killed:7} {r.timeouts:9} {len(r.survived):8} "
            f"{len(r.equivalent):6} {r.not_run:7} {rate}  ≥{TARGET:.0%} {verdict}"
        )
    for module, r in sorted(all_results.items()):
        if r.unsampled and r.judged > 0:
            low, high = r.interval()
            print(
                f"  {module}: SAMPLE, not the full figure: sampled {r.mutants} of "
                f"{r.mutants + r.unsampled} mutants; kill rate {r.rate:.1%} "
                f"(95% interval {low:.1%} to {high:.1%}) over {r.judged} non-equivalent"
            )
    equivalents = [(n, why) for r in all_results.values() for n, why in r.equivalent]
    if equivalents:
        print("\nEquivalent mutants (scripts/mutation_equivalents.toml):")
        for name, why in equivalents:
            print(f"  {name}: {why}")
    survivors = [n for r in all_results.values() for n in r.survived]
    if survivors:
        print(f"\n{len(survivors)} survivors (`mutmut show NAME` in .run/mutation/<scope>/):")
        for name in survivors:
            print(f"  {name}")
    return all_met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scopes", nargs="*", help="scopes to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the scopes and exit")
    parser.add_argument("--show-survivors", action="store_true")
    parser.add_argument(
        "--report-only", action="store_true", help="re-read the last run's results, run nothing"
    )
    parser.add_argument(
        "--max-children",
        type=int,
        default=2,
        help="mutants tested at once (default 2: the machine is shared)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the last copy (mutants already judged keep their result), bring in the "
        "current tests, and run what is left",
    )
    parser.add_argument(
        "--rerun-survivors",
        action="store_true",
        help="with --resume: run the last run's survivors again (after adding tests)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GLOB",
        help="run only the mutants whose names match (fnmatch; repeatable)",
    )
    parser.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help="test a seeded random sample of N mutants per module instead of all of them "
        "(reported as a sample, with the kill rate's 95%% interval)",
    )
    parser.add_argument("--seed", type=int, default=20261130, help="seed of --sample")
    parser.add_argument(
        "--committed",
        action="store_true",
        help="test the last commit (HEAD), leaving out uncommitted changes in the checkout",
    )
    parser.add_argument(
        "--redis-db",
        type=int,
        help="Redis database for the run instead of the scope's own (one no other run uses)",
    )
    args = parser.parse_args()
    by_name = {s.name: s for s in SCOPES}
    if args.list:
        for s in SCOPES:
            print(f"{s.name}: {', '.join(s.modules)}  <-  {' '.join(s.tests)}")
        return 0
    unknown = [n for n in args.scopes if n not in by_name]
    if unknown:
        parser.error(f"unknown scope(s) {unknown}; known: {sorted(by_name)}")
    chosen = [by_name[n] for n in args.scopes] if args.scopes else SCOPES
    if args.redis_db is not None:
        chosen = [replace(scope, redis_db=args.redis_db) for scope in chosen]
    all_results: dict[str, ModuleResult] = {}
    for scope in chosen:
        dest = WORK / scope.name
        if not args.report_only:
            commit = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=REPO,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            print(
                f"== mutation scope '{scope.name}' at {commit} "
                f"({'committed tree only' if args.committed else 'plus uncommitted changes'}): "
                f"{', '.join(scope.modules)}",
                flush=True,
            )
            started = time.monotonic()
            names = tuple(args.only)
            rerun: tuple[str, ...] = ()
            if args.resume and dest.exists():
                sync_tests(dest)
                if args.rerun_survivors:
                    rerun = survivors_to_rerun(dest)
            else:
                copy_tree(dest, committed=args.committed)
                configure(dest, scope)
            if args.sample:
                names += draw_sample(
                    dest,
                    scope,
                    args.sample,
                    args.seed,
                    args.max_children,
                    # A resumed copy whose mutants are generated already: draw from those.
                    listed=args.resume and bool(statuses(dest)),
                )
            elif not args.resume:
                (dest / ".run" / "sample.txt").unlink(missing_ok=True)
            if args.resume and (names or rerun):
                # mutmut runs again every mutant it is named, judged or not: name only those
                # still without a result, and the survivors asked for.
                names = pending_mutants(dest, names) + rerun
                if not names:
                    print(f"== scope '{scope.name}': nothing left to run", flush=True)
            if names or not (args.only or args.sample or args.rerun_survivors):
                run_mutmut(dest, scope, args.max_children, names)
            minutes = (time.monotonic() - started) / 60
            print(f"== scope '{scope.name}' took {minutes:.1f} min", flush=True)
        all_results.update(judge(dest, args.show_survivors))
    return 0 if print_table(all_results) else 1


if __name__ == "__main__":
    sys.exit(main())

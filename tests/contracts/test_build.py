from contracts.compile import SOLC_PACKAGE, check_build


def test_committed_build_matches_sources():
    # Not a skip: CI must install node_modules (`npm ci`) before the tests, and a silently
    # skipped check would let build/ drift from src/.
    assert SOLC_PACKAGE.is_dir(), f"{SOLC_PACKAGE} is missing: run `npm ci` before the tests"
    problems = check_build()
    assert problems == [], "contracts/build is stale, run `python contracts/compile.py`: " + (
        "; ".join(problems)
    )

"""Audit a verification report without the platform's database.

    python -m workers.audit --url http://127.0.0.1:8000 0x<report hash>
    python -m workers.audit --url http://127.0.0.1:8000 --rpc http://127.0.0.1:8545 \\
        --staking 0x<ProviderStaking address> --all-slashes

For each report it fetches GET /api/v1/reports/{hash} (public), then:
1. checks that the SHA-256 of the document's canonical JSON (sorted keys, no spaces, ASCII) is
   the hash: a report changed after the fact fails here;
2. checks that the evidence (the agent's answer, published for failures) is the one the document
   names (its SHA-256 for a chain-sketch job);
3. runs the verification again from the document alone (spec, seed, the sampled units or the
   challenge) and checks that it comes out as the document says (passed, reason);
4. with --rpc and --staking, checks that the hash is the one a Slashed event on chain cites.
With --all-slashes it audits the report of every slash on chain. Exit status 0 when every
report passes, 1 otherwise. Needs NumPy and the repository's workers package, not Django.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AuditResult:
    report_hash: str
    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def check(self, condition: bool, passed: str, failed: str) -> None:
        self.lines.append(("ok    " if condition else "FAIL  ") + (passed if condition else failed))
        self.ok = self.ok and condition


def audit_report(report: dict[str, Any], *, expected_hash: str | None = None) -> AuditResult:
    """Steps 1-3 on a report as the API serves it."""
    claimed = str(report.get("report_hash", "")).lower()
    result = AuditResult(expected_hash or claimed)
    document = report.get("document")
    if not isinstance(document, dict):
        result.check(False, "", "the report has no document")
        return result
    from workers.verification.protocol import document_hash

    digest = "0x" + document_hash(document)
    result.check(
        digest == result.report_hash.lower() and digest == claimed,
        f"document hashes to {digest}",
        f"document hashes to {digest}, not {result.report_hash}",
    )
    if document.get("kind") == "liveness":
        result.lines.append(
            f"info  liveness: last heartbeat {document.get('last_heartbeat_at')}, detected "
            f"{document.get('detected_at')}, leases broken {document.get('broken_orders')}"
        )
        return result
    outcome = document.get("outcome") or {}
    evidence = report.get("evidence")
    if evidence is None:
        why = (
            "a pass keeps only its digest"
            if outcome.get("passed")
            else f"decided {outcome.get('reason')} without an answer to re-run"
        )
        result.lines.append(f"info  no evidence published ({why}): hash checked only")
        return result
    try:
        passed, reason = _rerun(document, evidence, result)
    except Exception as exc:  # noqa: BLE001 - a malformed published report is a failed audit
        result.check(False, "", f"verification could not be run again: {exc}")
        return result
    result.check(
        (passed, reason) == (outcome.get("passed"), outcome.get("reason")),
        f"verification run again: passed={passed} reason={reason}, as the report says",
        f"verification run again: passed={passed} reason={reason}; the report says "
        f"passed={outcome.get('passed')} reason={outcome.get('reason')}",
    )
    return result


def _rerun(document: dict[str, Any], evidence: Any, result: AuditResult) -> tuple[bool, Any]:
    if str(document.get("protocol", "")).startswith("chain-sketch"):
        from workers.kernels.chain import chain_spec_from_dict
        from workers.verification.sketch import payload_digest, sketch_verify

        result.check(
            payload_digest(evidence) == document.get("payload_sha256"),
            "evidence is the payload the report names",
            "evidence is not the payload the report names",
        )
        spec = chain_spec_from_dict(document["spec"])
        report = sketch_verify(spec, document["seed"], evidence, units=document["units"])
        return report.passed, report.reason
    from workers.kernels import spec_from_dict
    from workers.verification import answer_verify

    spec = spec_from_dict(document["spec"])
    report = answer_verify(
        spec, document["seed"], document["root"], document["challenge"], evidence
    )
    return report.passed, report.reason


# --- the chain ----------------------------------------------------------------------------------

SLASHED_SIGNATURE = "Slashed(address,uint256,bytes32)"


def slashes_on_chain(rpc_url: str, staking: str) -> list[dict[str, Any]]:
    """Every Slashed event of the staking contract: provider, amount, report hash, tx."""
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    topic = Web3.keccak(text=SLASHED_SIGNATURE)
    logs = w3.eth.get_logs(
        {
            "address": Web3.to_checksum_address(staking),
            "fromBlock": 0,
            "toBlock": "latest",
            "topics": [topic],
        }
    )
    found = []
    for log in logs:
        data = bytes(log["data"])
        found.append(
            {
                "provider": "0x" + bytes(log["topics"][1])[-20:].hex(),
                "amount": int.from_bytes(data[:32], "big"),
                "report_hash": "0x" + data[32:64].hex(),
                "tx": "0x" + bytes(log["transactionHash"]).hex().removeprefix("0x"),
                "block": log["blockNumber"],
            }
        )
    return found


def fetch_report(url: str, report_hash: str) -> dict[str, Any]:
    import requests

    response = requests.get(f"{url.rstrip('/')}/api/v1/reports/{report_hash}", timeout=30)
    if response.status_code != 200:
        raise SystemExit(f"{report_hash}: {response.status_code} {response.text[:300]}")
    return response.json()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.audit", description=__doc__)
    parser.add_argument("hashes", nargs="*", help="report hashes (0x + 64 hex)")
    parser.add_argument("--url", required=True, help="the platform's base URL")
    parser.add_argument("--rpc", help="an Ethereum JSON-RPC URL, to check the hash on chain")
    parser.add_argument("--staking", help="the ProviderStaking contract's address")
    parser.add_argument("--all-slashes", action="store_true", help="audit every slash on chain")
    args = parser.parse_args(argv)
    if (args.rpc is None) != (args.staking is None):
        parser.error("--rpc and --staking go together")
    if args.all_slashes and not args.rpc:
        parser.error("--all-slashes needs --rpc and --staking")
    slashes = slashes_on_chain(args.rpc, args.staking) if args.rpc else []
    hashes = [h.lower() if h.startswith("0x") else "0x" + h.lower() for h in args.hashes]
    if args.all_slashes:
        hashes += [s["report_hash"] for s in slashes if s["report_hash"] not in hashes]
        if not slashes:
            print("no slash on chain")
    failures = 0
    for report_hash in hashes:
        result = audit_report(fetch_report(args.url, report_hash), expected_hash=report_hash)
        if args.rpc:
            cited = [s for s in slashes if s["report_hash"] == report_hash]
            result.check(
                bool(cited),
                "cited on chain by "
                + ", ".join(f"Slashed {s['amount']} in tx {s['tx']}" for s in cited),
                "no Slashed event on chain cites this hash",
            )
        print(f"report {report_hash}: {'PASSED' if result.ok else 'FAILED'}")
        for line in result.lines:
            print(f"  {line}")
        failures += not result.ok
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

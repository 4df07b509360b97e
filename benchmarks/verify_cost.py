"""What verifying a benchmark costs the platform, against recomputing it.

    .venv/bin/python benchmarks/verify_cost.py [--n 8192] [--k 32] [--quick]

Prints CPU (process) and wall time of `answer_verify` for a matmul job and for a conv2d job,
the time to recompute the full output on this machine (measured at a smaller size and
extrapolated by FLOPs when the full size is too slow here, which is said in the output), and the
bytes moved: commitment + challenge + answer, as raw JSON and as actually sent (the agent's
answer body is gzip; the verify time includes decompressing it, as the server does).
Targets: verify <= 1% of recompute, <= 1 MB moved.
"""

from __future__ import annotations

import argparse
import gzip
import json
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm  # noqa: E402

from workers.agent.runner import JobRunner  # noqa: E402
from workers.kernels import Conv2dSpec, MatmulSpec, compute  # noqa: E402
from workers.kernels.backends import prepare  # noqa: E402
from workers.verification import (  # noqa: E402
    answer_verify,
    challenge_answer,
    challenge_create,
    commitment_create,
)


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def recompute_seconds(spec, measured_spec, seed):
    """(wall, cpu) of the numpy kernel for measured_spec, scaled by FLOPs to spec."""
    prepared = prepare(measured_spec, seed, "numpy")
    _, wall, cpu = timed(prepared.run)
    scale = spec.flops / measured_spec.flops
    return wall * scale, cpu * scale


def run(spec, measured_spec, k, progress):
    seed = secrets.token_hex(32)
    progress.set_description(f"{spec.kind}: agent compute + commit")
    output = compute(spec, seed)
    root, tree = commitment_create(spec, output)
    challenge = challenge_create(spec, sample_count=k)
    answer = challenge_answer(spec, output, tree, challenge)
    answer_json = json.dumps(answer, separators=(",", ":")).encode()
    sent_body = JobRunner(api=None).answer_body(answer)  # exactly what the agent POSTs
    commitment_body = JobRunner(api=None).commitment_body(root, 1.0)
    del output, tree, answer
    progress.update()
    progress.set_description(f"{spec.kind}: verify")
    report, v_wall, v_cpu = timed(
        lambda: answer_verify(spec, seed, root, challenge, gzip.decompress(sent_body))
    )
    assert report.passed, report
    progress.update()
    progress.set_description(f"{spec.kind}: recompute")
    r_wall, r_cpu = recompute_seconds(spec, measured_spec, seed)
    progress.update()
    challenge_json = len(json.dumps({"challenge": challenge}, separators=(",", ":")))
    moved = {
        "commitment": len(commitment_body),
        "challenge": challenge_json,
        "answer": len(answer_json),
    }
    sent = {**moved, "answer": len(sent_body)}
    return {
        "spec": spec,
        "measured": measured_spec,
        "verify_wall": v_wall,
        "verify_cpu": v_cpu,
        "recompute_wall": r_wall,
        "recompute_cpu": r_cpu,
        "moved": moved,
        "sent": sent,
    }


def describe(spec):
    if isinstance(spec, MatmulSpec):
        return f"matmul n={spec.n} {spec.precision}"
    return (
        f"conv2d b={spec.batch} {spec.in_channels}->{spec.out_channels} "
        f"{spec.height}x{spec.width} k={spec.kernel_size} s={spec.stride} p={spec.padding}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8192, help="matmul size (default 8192)")
    parser.add_argument("--k", type=int, default=32, help="sampled rows/planes (default 32)")
    parser.add_argument("--quick", action="store_true", help="n=2048 and a smaller conv")
    args = parser.parse_args()
    n = 2048 if args.quick else args.n
    matmul = MatmulSpec(n)
    # The agent computes the full n = 8192 output here (needed to answer); only the
    # platform-side *recompute* is extrapolated, from n/2, to keep the run short on 2 cores.
    matmul_measured = MatmulSpec(max(1, n // 2)) if n > 2048 else matmul
    conv = (
        Conv2dSpec(8, 64, 64, 56, 56, 3, padding=1)
        if args.quick
        else Conv2dSpec(32, 128, 128, 56, 56, 3, padding=1)
    )
    conv_measured = Conv2dSpec(8, 128, 128, 56, 56, 3, padding=1) if not args.quick else conv
    rows = []
    with tqdm(total=6, unit="step", file=sys.stderr) as progress:
        rows.append(run(matmul, matmul_measured, args.k, progress))
        rows.append(run(conv, conv_measured, args.k, progress))
    print()
    print(f"verification cost, k={args.k}, fp32, numpy BLAS on this machine")
    for row in rows:
        spec, measured = row["spec"], row["measured"]
        extrapolated = measured != spec
        print(f"\n{describe(spec)}  ({spec.flops / 1e12:.3f} TFLOP)")
        print(f"  verify     wall {row['verify_wall']:8.3f} s   cpu {row['verify_cpu']:8.3f} s")
        note = f"  (extrapolated by FLOPs from {describe(measured)})" if extrapolated else ""
        print(
            f"  recompute  wall {row['recompute_wall']:8.3f} s   "
            f"cpu {row['recompute_cpu']:8.3f} s{note}"
        )
        print(
            f"  verify / recompute: wall {100 * row['verify_wall'] / row['recompute_wall']:.2f}%"
            f"   cpu {100 * row['verify_cpu'] / row['recompute_cpu']:.2f}%   (target <= 1%)"
        )
        for label, moved in (("raw JSON", row["moved"]), ("as sent", row["sent"])):
            total = sum(moved.values())
            parts = ", ".join(f"{name} {size:,} B" for name, size in moved.items())
            print(f"  bytes {label:8s}: {total:,} B ({parts})")
        print("  (target <= 1,000,000 B as sent)")


if __name__ == "__main__":
    main()

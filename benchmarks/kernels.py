"""Agent kernel throughput against each backend's own best library call, in the same run.

    .venv/bin/python benchmarks/kernels.py [--quick]

For every available backend and every precision it runs exactly, times our kernel
(`workers.kernels.bench`, inputs already on the device) and the backend's reference call
(`reference_call_seconds`: numpy.matmul / torch.mm / torch._int_mm /
torch.nn.functional.conv2d on the same inputs) and prints TFLOP/s and ours/reference
(target >= 95%). Generation and copy-back times are shown apart: the server's
dispatch-to-commit timing includes them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm  # noqa: E402

from workers.kernels import (  # noqa: E402
    PRECISIONS,
    Conv2dSpec,
    MatmulSpec,
    available_backends,
    backend_device_name,
    bench,
    reference_call_seconds,
    supports,
)
from workers.kernels.backends import prepare  # noqa: E402

# torch's CPU fp16 GEMM runs below 1 GFLOP/s on machines without AVX512-FP16/AMX-FP16, so fp16
# on CPU gets a small size; everything else on CPU a size that takes about a second.
CPU_SIZES = {"full": 4096, "quick": 1024, "fp16": 512}
CUDA_SIZES = {"full": 8192, "quick": 4096, "fp16": 8192}


def specs_for(backend, quick):
    on_cuda = backend in ("torch-cuda", "cupy")
    sizes = CUDA_SIZES if on_cuda else CPU_SIZES
    for precision in PRECISIONS:
        n = sizes["quick" if quick else "full"]
        if precision == "fp16" and not on_cuda:
            n = sizes["fp16"]
        yield MatmulSpec(n, precision)
    for precision in PRECISIONS:
        batch = 32 if on_cuda else (4 if quick else 16)
        if precision == "fp16" and not on_cuda:
            batch = 1
        yield Conv2dSpec(batch, 128, 128, 56, 56, 3, padding=1, precision=precision)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    jobs = [
        (backend, spec)
        for backend in available_backends()
        for spec in specs_for(backend, args.quick)
        if supports(backend, spec)
    ]
    results = []
    for backend, spec in tqdm(jobs, unit="job", file=sys.stderr):
        ours = bench(spec, backend, repeats=args.repeats, seed="ab" * 32)
        prepared = prepare(spec, "ab" * 32, backend)
        reference = reference_call_seconds(spec, backend, args.repeats, prepared=prepared)
        results.append((backend, spec, ours, reference))
    print()
    for backend in available_backends():
        print(f"{backend}: {backend_device_name(backend)}")
    header = (
        f"{'backend':<10} {'kernel':<7} {'prec':<5} {'size':<22} {'ours TF/s':>10} "
        f"{'ref TF/s':>9} {'ratio':>7} {'gen s':>7} {'out s':>7}"
    )
    print(header)
    print("-" * len(header))
    for backend, spec, ours, reference in results:
        if isinstance(spec, MatmulSpec):
            size = f"n={spec.n}"
        else:
            size = f"b={spec.batch} {spec.in_channels}->{spec.out_channels} {spec.height}^2 k3"
        ref_tflops = spec.flops / reference / 1e12
        print(
            f"{backend:<10} {spec.kind:<7} {spec.precision:<5} {size:<22} "
            f"{ours['tflops']:>10.4f} {ref_tflops:>9.4f} {ours['tflops'] / ref_tflops:>7.1%} "
            f"{ours['generate_seconds']:>7.3f} {ours['output_seconds']:>7.3f}"
        )


if __name__ == "__main__":
    main()

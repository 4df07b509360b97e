"""The renter's own throughput measurement on a lease: times square matrix multiplications and
prints TFLOP/s next to the listing's verified figure (pass it as VERIFIED_TFLOPS, from
`python -m workers.renter search`). Uses torch on CUDA when the sandbox offers it, else numpy.

    python -m workers.renter run ORDER --dir examples/matmul --env VERIFIED_TFLOPS=268.0 \\
        -- python3 matmul.py
"""

import os
import time

N = int(os.environ.get("N", "2048"))
REPEATS = int(os.environ.get("REPEATS", "5"))
PRECISION = os.environ.get("PRECISION", "fp32")


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def measure() -> tuple[float, str]:
    """Best-of-REPEATS seconds for one N×N×N multiplication, and the device it ran on."""
    torch = _torch_cuda()
    if torch is not None:
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[PRECISION]
        a = torch.randn(N, N, device="cuda", dtype=dtype)
        b = torch.randn(N, N, device="cuda", dtype=dtype)
        a @ b  # warm-up: kernel selection and clocks
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(REPEATS):
            start = time.perf_counter()
            a @ b
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best, torch.cuda.get_device_name(0)
    import numpy as np

    dtype = {"fp32": np.float32, "fp16": np.float16}.get(PRECISION, np.float32)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((N, N)).astype(dtype)
    b = rng.standard_normal((N, N)).astype(dtype)
    a @ b
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best, f"cpu (numpy, {os.cpu_count()} cores visible)"


def main() -> None:
    seconds, device = measure()
    tflops = 2 * N**3 / seconds / 1e12
    print(f"matmul {N}x{N} {PRECISION} on {device}: best of {REPEATS} {seconds * 1e3:.2f} ms")
    print(f"measured  {tflops:10.3f} TFLOP/s (one device, this run)")
    verified = os.environ.get("VERIFIED_TFLOPS")
    if verified:
        verified_value = float(verified)
        print(f"verified  {verified_value:10.3f} TFLOP/s (the listing's figure, whole machine)")
        print(f"ratio     {tflops / verified_value:10.3f}")
    else:
        print("verified  (set VERIFIED_TFLOPS to the listing's figure to compare)")


if __name__ == "__main__":
    main()

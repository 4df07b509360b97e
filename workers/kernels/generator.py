"""Counter-based input generator: the same small integers on every backend.

Element `i` of tensor `name` under `seed` is a pure function of (seed, name, i):

    key    = first 8 bytes (little-endian) of SHA-256(DOMAIN || seed bytes || 0x00 || name)
    word j = splitmix64_mix(key + (j + 1) * GAMMA)          (all arithmetic mod 2**64)
    byte   = byte (i mod 8) of word (i div 8), least significant byte first
    value  = (byte * 5 >> 8) - 2                            (an integer in -2..2)

Eight elements per 64-bit hash keep the generator memory-bound rather than hash-bound; the server
regenerates A and B (2 n^2 elements) for every verification, so this is the verifier's main
cost. The byte-to-value map is 52:51:51:51:51 over -2..2, which is irrelevant to exactness and
to security (the seed is secret until dispatch; the values only need to be reproducible).

Being stateless, any slice (one row of A for the verifier, the whole of B for the agent) can be
generated independently, in any order, in chunks, on any device.

Backends:
- NumPy and CuPy share one implementation on uint64 arrays (`_fill_xp`), so CuPy generates on the
  GPU with the code path the CPU tests exercise.
- torch has no full uint64 arithmetic, so `generate_torch` runs the same mixing on int64 tensors:
  two's-complement add/multiply wrap to the same bits as uint64, and each right shift is made
  logical by masking off the sign-extended bits. It generates directly on the target device
  because host generation plus a PCIe copy of two n x n tensors would dominate the time the
  server measures for a fast GPU; the tests check it bit-for-bit against NumPy on CPU.
"""

from __future__ import annotations

import hashlib
import re
import sys
from typing import Any

import numpy as np

from .specs import VALUE_BOUND, SpecError

DOMAIN = b"gpu-marketplace/kernels/v1\x00"
GAMMA = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
_SPAN = 2 * VALUE_BOUND + 1

# 2**20 uint64 elements = 8 MiB per temporary: large enough to amortise NumPy call overhead,
# small enough to stay near cache and keep peak memory flat for n = 16384.
CHUNK = 1 << 20

_SEED_RE = re.compile(r"\A[0-9a-f]{32,128}\Z")


def seed_bytes(seed: Any) -> bytes:
    """Validate a seed (16..64 bytes as lowercase hex, e.g. secrets.token_hex(32))."""
    if not isinstance(seed, str) or not _SEED_RE.match(seed) or len(seed) % 2:
        raise SpecError("seed must be an even-length lowercase hex string of 32..128 characters")
    return bytes.fromhex(seed)


def tensor_key(seed: str, name: str) -> int:
    digest = hashlib.sha256(DOMAIN + seed_bytes(seed) + b"\x00" + name.encode()).digest()
    return int.from_bytes(digest[:8], "little")


_LUT = ((np.arange(256, dtype=np.int64) * _SPAN) >> 8) - VALUE_BOUND


def _fill_xp(xp: Any, key: int, start: int, out: Any) -> None:
    """Write elements start..start+len(out)-1 into the flat array `out` (any numeric dtype)."""
    gamma, mix1, mix2 = xp.uint64(GAMMA), xp.uint64(MIX1), xp.uint64(MIX2)
    key_u = xp.uint64(key)
    # Look up in int8 and let the assignment widen: a wider table makes the gather slower.
    lut = xp.asarray(_LUT.astype(np.int8))
    total = out.shape[0]
    first_word, skip = divmod(start, 8)
    words = -(-(skip + total) // 8)
    for w_lo in range(0, words, CHUNK):
        w_hi = min(words, w_lo + CHUNK)
        z = xp.arange(first_word + w_lo + 1, first_word + w_hi + 1, dtype=xp.uint64)
        z *= gamma
        z += key_u
        z ^= z >> xp.uint64(30)
        z *= mix1
        z ^= z >> xp.uint64(27)
        z *= mix2
        z ^= z >> xp.uint64(31)
        # Byte order is defined as little-endian; astype is a no-op view on little-endian hosts.
        raw = z.astype("<u8", copy=False).view(xp.uint8)
        lo = w_lo * 8 - skip  # element index of raw[0] within `out`
        a, b = max(0, lo), min(total, w_hi * 8 - skip)
        out[a:b] = xp.take(lut, raw[a - lo : b - lo])


def generate(seed: str, name: str, count: int, *, start: int = 0, dtype: Any = np.int8) -> Any:
    """Elements start..start+count-1 of tensor `name` as a flat NumPy array."""
    out = np.empty(count, dtype=dtype)
    _fill_xp(np, tensor_key(seed, name), start, out)
    return out


def generate_cupy(seed: str, name: str, count: int, *, dtype: Any) -> Any:
    import cupy

    out = cupy.empty(count, dtype=dtype)
    _fill_xp(cupy, tensor_key(seed, name), 0, out)
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _logical_shift(z: Any, bits: int) -> Any:
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def generate_torch(seed: str, name: str, count: int, *, device: Any, dtype: Any) -> Any:
    """The same elements as `generate`, computed on `device` with int64 tensor arithmetic."""
    import torch

    if sys.byteorder != "little":
        raise RuntimeError("the torch generator reads int64 words as little-endian bytes")
    key = _signed(tensor_key(seed, name))
    gamma, mix1, mix2 = _signed(GAMMA), _signed(MIX1), _signed(MIX2)
    out = torch.empty(count, dtype=dtype, device=device)
    words = -(-count // 8)
    # Larger chunks on a GPU: each one is a handful of kernel launches.
    chunk = CHUNK * (16 if torch.device(device).type == "cuda" else 1)
    for w_lo in range(0, words, chunk):
        w_hi = min(words, w_lo + chunk)
        z = torch.arange(w_lo + 1, w_hi + 1, dtype=torch.int64, device=device)
        z = z * gamma + key
        z = (z ^ _logical_shift(z, 30)) * mix1
        z = (z ^ _logical_shift(z, 27)) * mix2
        z = z ^ _logical_shift(z, 31)
        raw = z.view(torch.uint8).to(torch.int16)
        values = ((raw * _SPAN) >> 8) - VALUE_BOUND
        hi = min(count, w_hi * 8)
        out[w_lo * 8 : hi] = values[: hi - w_lo * 8].to(dtype)
    return out


def matmul_inputs(spec: Any, seed: str) -> tuple[np.ndarray, np.ndarray]:
    """A and B of a matmul spec as int8 NumPy arrays."""
    n = spec.n
    return (
        generate(seed, "A", n * n).reshape(n, n),
        generate(seed, "B", n * n).reshape(n, n),
    )


def conv_inputs(spec: Any, seed: str) -> tuple[np.ndarray, np.ndarray]:
    """X (batch, in, H, W) and W (out, in, k, k) of a conv2d spec as int8 NumPy arrays."""
    x_shape = (spec.batch, spec.in_channels, spec.height, spec.width)
    w_shape = (spec.out_channels, spec.in_channels, spec.kernel_size, spec.kernel_size)
    return (
        generate(seed, "X", int(np.prod(x_shape))).reshape(x_shape),
        generate(seed, "W", int(np.prod(w_shape))).reshape(w_shape),
    )


def input_names(kind: str) -> tuple[str, str]:
    return ("A", "B") if kind == "matmul" else ("X", "W")

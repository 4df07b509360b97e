"""Counter-based input generator: the same small integers on every backend.

Element `i` of tensor `name` under `seed` is a pure function of (seed, name, i):

    key    = first 8 bytes (little-endian) of SHA-256(DOMAIN || seed bytes || 0x00 || name)
    word j = splitmix64_mix(key + (j + 1) * GAMMA)          (all arithmetic mod 2**64)
    field  = bits 2*(i mod 32) .. 2*(i mod 32) + 1 of word (i div 32)
    value  = FIELD_VALUES[field] = (-2, -1, 1, 2)[field]    (an integer in -2..2)

Thirty-two elements per 64-bit hash (v1 took eight, one per byte): the server regenerates all
of B (n^2 elements) for every verification, and at eight per hash the mixing alone was a third
of that cost. Two bits per value give four values; dropping 0 keeps the set symmetric and every
value within VALUE_BOUND, which is all exactness needs. Security does not rest on the inputs'
distribution (the seed is secret until dispatch; the values only need to be reproducible), and
the DOMAIN tag changed with the format so a v1 agent can never silently disagree with the server.

The value map is applied one byte (four fields) at a time through a 256 x 4 table in the target
dtype, so float32/float64 come out directly, without an int64 or int8 intermediate.

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

DOMAIN = b"gpu-marketplace/kernels/v2\x00"
GAMMA = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
FIELD_VALUES = (-VALUE_BOUND, -1, 1, VALUE_BOUND)
VALUES_PER_WORD = 32

# 2**16 words = 2**21 values per chunk: large enough to amortise NumPy call overhead, small
# enough that the temporaries (512 KiB of words) stay in cache.
CHUNK = 1 << 16

_SEED_RE = re.compile(r"\A[0-9a-f]{32,128}\Z")


def seed_bytes(seed: Any) -> bytes:
    """Validate a seed (16..64 bytes as lowercase hex, e.g. secrets.token_hex(32))."""
    if not isinstance(seed, str) or not _SEED_RE.match(seed) or len(seed) % 2:
        raise SpecError("seed must be an even-length lowercase hex string of 32..128 characters")
    return bytes.fromhex(seed)


def tensor_key(seed: str, name: str) -> int:
    digest = hashlib.sha256(DOMAIN + seed_bytes(seed) + b"\x00" + name.encode()).digest()
    return int.from_bytes(digest[:8], "little")


# Byte b -> its four values, field t (bits 2t..2t+1) in column t.
_LUT4 = np.array(
    [[FIELD_VALUES[(b >> (2 * t)) & 3] for t in range(4)] for b in range(256)], dtype=np.int8
)


_LUT_CACHE: dict[Any, Any] = {}


def _lut(xp: Any, dtype: Any) -> Any:
    # The verifier fills B block by block (~1000 calls for n = 8192): build each table once.
    if xp is not np:
        return xp.asarray(_LUT4.astype(dtype))
    if dtype not in _LUT_CACHE:
        _LUT_CACHE[dtype] = _LUT4.astype(dtype)
    return _LUT_CACHE[dtype]


def _fill_xp(xp: Any, key: int, start: int, out: Any) -> None:
    """Write elements start..start+len(out)-1 into the flat array `out` (any numeric dtype)."""
    gamma, mix1, mix2 = xp.uint64(GAMMA), xp.uint64(MIX1), xp.uint64(MIX2)
    key_u = xp.uint64(key)
    lut = _lut(xp, out.dtype)
    total = out.shape[0]
    first_word, skip = divmod(start, VALUES_PER_WORD)
    words = -(-(skip + total) // VALUES_PER_WORD)
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
        lo = w_lo * VALUES_PER_WORD - skip  # element index of value 0 of raw[0] within `out`
        a, b = max(0, lo), min(total, w_hi * VALUES_PER_WORD - skip)
        first_byte, offset = divmod(a - lo, 4)
        last_byte = -(-(b - lo) // 4)
        if offset == 0 and (b - a) % 4 == 0:
            # Whole bytes: the table lookup writes straight into `out`, no temporary.
            xp.take(lut, raw[first_byte:last_byte], axis=0, out=out[a:b].reshape(-1, 4))
        else:
            values = xp.take(lut, raw[first_byte:last_byte], axis=0).reshape(-1)
            out[a:b] = values[offset : offset + b - a]


def generate_into(seed: str, name: str, out: np.ndarray, *, start: int = 0) -> np.ndarray:
    """Fill the flat array `out` with elements start..start+len(out)-1 (reusable buffer)."""
    _fill_xp(np, tensor_key(seed, name), start, out)
    return out


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
    words = -(-count // VALUES_PER_WORD)
    shifts = torch.arange(0, 8, 2, dtype=torch.int16, device=device)
    # Larger chunks on a GPU: each one is a handful of kernel launches.
    chunk = CHUNK * (256 if torch.device(device).type == "cuda" else 16)
    for w_lo in range(0, words, chunk):
        w_hi = min(words, w_lo + chunk)
        z = torch.arange(w_lo + 1, w_hi + 1, dtype=torch.int64, device=device)
        z = z * gamma + key
        z = (z ^ _logical_shift(z, 30)) * mix1
        z = (z ^ _logical_shift(z, 27)) * mix2
        z = z ^ _logical_shift(z, 31)
        raw = z.view(torch.uint8).to(torch.int16)
        fields = (raw.unsqueeze(1) >> shifts) & 3  # (bytes, 4): field t of each byte
        # FIELD_VALUES[f] without a gather: f - 2 + (f >> 1) maps 0, 1, 2, 3 to -2, -1, 1, 2.
        values = (fields - 2 + (fields >> 1)).reshape(-1)
        hi = min(count, w_hi * VALUES_PER_WORD)
        out[w_lo * VALUES_PER_WORD : hi] = values[: hi - w_lo * VALUES_PER_WORD].to(dtype)
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

"""Counter-based generator of floating-point inputs that use a precision's full mantissa.

The integer generator (generator.py) gives values in {-2, -1, 1, 2}: every format holds them and
every method sums them exactly, so an fp32 job could be answered through int8 (issue 9). Chain
jobs need inputs that only P holds exactly. Element i of tensor `name` under `seed`:

    key    = first 8 bytes of SHA-256(DOMAIN || seed bytes || 0x00 || name)   (little-endian)
    word   = splitmix64_mix(key + (i div 2 + 1) * GAMMA)                         (mod 2**64)
    u      = 32-bit half (i mod 2) of word, little-endian (half 0 = low bits)
    value  = (-1)**u[31] * 2**-u[28..30] * (1 + u[0..22] / 2**23),
             with the low 23 - MANTISSA_BITS[P] mantissa bits cleared

so magnitudes span eight binades, [2**-7, 2), and the significand has exactly P's stored
mantissa bits, each random: rounding to any format with fewer bits changes almost every value.
All of [2**-7, 2) is a normal number in fp16, bf16 and tf32, so the same values are exact in P.

The float32 bit pattern is assembled with four integer operations per value (no division, no
transcendental): generation costs a few ns per value, against the 2 * n multiply-adds each
input value feeds per layer. Any slice, or any set of indices (the server's cone of a sampled
output pixel), is generated independently; torch runs the same arithmetic on int64 tensors on
the job's device (as generator.generate_torch does), checked bit for bit against NumPy.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

import numpy as np

from .generator import GAMMA, MIX1, MIX2, seed_bytes

DOMAIN = b"gpu-marketplace/chain/v1\x00"
MANTISSA_BITS = {"fp32": 23, "tf32": 10, "bf16": 7, "fp16": 10}
# 2**15 words = 2**16 values per chunk: temporaries stay in L2.
_CHUNK_WORDS = 1 << 15
_EXPONENT_FIELD = 0x03800000  # bits 28..30 of u moved to 23..25 by u >> 5
_ONE = 0x3F800000  # float32 bits of 1.0


def chain_key(seed: str, name: str) -> int:
    digest = hashlib.sha256(DOMAIN + seed_bytes(seed) + b"\x00" + name.encode()).digest()
    return int.from_bytes(digest[:8], "little")


def keep_mask(precision: str) -> int:
    """Sign bit plus the top MANTISSA_BITS[precision] mantissa bits."""
    bits = MANTISSA_BITS[precision]
    return 0x80000000 | (0x7FFFFF & ~((1 << (23 - bits)) - 1))


def _mix_np(z: np.ndarray, key: int) -> np.ndarray:
    z *= np.uint64(GAMMA)
    z += np.uint64(key)
    z ^= z >> np.uint64(30)
    z *= np.uint64(MIX1)
    z ^= z >> np.uint64(27)
    z *= np.uint64(MIX2)
    z ^= z >> np.uint64(31)
    return z


def _assemble_np(u: np.ndarray, keep: int, out: np.ndarray) -> None:
    """float32 bits from 32-bit words u, written into the uint32 view `out`."""
    np.bitwise_and(u, np.uint32(keep), out=out)
    exponent = u >> np.uint32(5)
    exponent &= np.uint32(_EXPONENT_FIELD)
    np.subtract(np.uint32(_ONE), exponent, out=exponent)
    out |= exponent


def _word_halves(seed: str, name: str, count: int, start: int):
    """The 32-bit words behind elements start..start+count-1 of tensor `name`, in chunks of
    _CHUNK_WORDS 64-bit counter words: yields (a, b, u) where u holds the words of elements
    start+a..start+b-1 (element i is half i % 2 of counter word i // 2 + 1)."""
    key = chain_key(seed, name)
    first_word, skip = divmod(start, 2)
    words = (skip + count + 1) // 2
    for lo in range(0, words, _CHUNK_WORDS):
        hi = min(words, lo + _CHUNK_WORDS)
        z = _mix_np(np.arange(first_word + lo + 1, first_word + hi + 1, dtype=np.uint64), key)
        halves = z.astype("<u8", copy=False).view(np.uint32)
        a = max(0, 2 * lo - skip)
        b = min(count, 2 * hi - skip)
        yield a, b, halves[a + skip - 2 * lo : b + skip - 2 * lo]


def generate_floats(
    seed: str, name: str, count: int, precision: str, *, start: int = 0, out: Any = None
) -> np.ndarray:
    """Elements start..start+count-1 of tensor `name` as a flat float32 array (written into
    `out`, a flat float32 array of `count` elements, when given)."""
    keep = keep_mask(precision)
    out = np.empty(count, dtype=np.float32) if out is None else out
    bits = out.view(np.uint32)
    for a, b, halves in _word_halves(seed, name, count, start):
        _assemble_np(halves, keep, bits[a:b])
    return out


def generate_floats_at(seed: str, name: str, indices: np.ndarray, precision: str) -> np.ndarray:
    """Elements at arbitrary (non-negative int64) `indices`, same shape, float32."""
    indices = np.asarray(indices, dtype=np.int64)
    z = _mix_np((indices >> 1).astype(np.uint64) + np.uint64(1), chain_key(seed, name))
    shift = ((indices & 1) * 32).astype(np.uint64)
    u = ((z >> shift) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    out = np.empty(indices.shape, dtype=np.float32)
    _assemble_np(u, keep_mask(precision), out.view(np.uint32))
    return out


# --- int8 inputs (exact integer chain jobs) -----------------------------------------------------
#
# The same counter-based words, one 32-bit half per value as above; the value is the low byte
# v = u & 0xFF mapped to (v * 255 >> 8) - 127, an integer in [-127, 127] (-127 twice as likely
# as the others, which only shifts the second moment INT8_SECOND_MOMENT by a known amount). -128
# is never drawn, so |value| <= 127 and a product of two fits in 14 bits.


def _assemble_int_np(u: np.ndarray, out: np.ndarray) -> None:
    v = u & np.uint32(0xFF)
    v *= np.uint32(255)
    v >>= np.uint32(8)
    np.subtract(v.astype(np.int16), np.int16(127), out=out, casting="unsafe")


def generate_ints(seed: str, name: str, count: int, *, start: int = 0) -> np.ndarray:
    """Elements start..start+count-1 of int8 tensor `name` as a flat int8 array."""
    out = np.empty(count, dtype=np.int8)
    for a, b, halves in _word_halves(seed, name, count, start):
        _assemble_int_np(halves, out[a:b])
    return out


def generate_ints_at(seed: str, name: str, indices: np.ndarray) -> np.ndarray:
    """int8 elements at arbitrary (non-negative int64) `indices`, same shape."""
    indices = np.asarray(indices, dtype=np.int64)
    z = _mix_np((indices >> 1).astype(np.uint64) + np.uint64(1), chain_key(seed, name))
    shift = ((indices & 1) * 32).astype(np.uint64)
    u = ((z >> shift) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    out = np.empty(indices.shape, dtype=np.int8)
    _assemble_int_np(u, out)
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def _logical_shift(z: Any, bits: int) -> Any:
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def generate_floats_torch(
    seed: str, name: str, count: int, precision: str, *, device: Any, dtype: Any
) -> Any:
    """The same values as `generate_floats`, computed on `device` and cast (exactly) to dtype."""
    import torch

    if sys.byteorder != "little":
        raise RuntimeError("the torch generator reads int64 words as little-endian halves")
    key = _signed(chain_key(seed, name))
    gamma, mix1, mix2 = _signed(GAMMA), _signed(MIX1), _signed(MIX2)
    keep = _signed32(keep_mask(precision))
    out = torch.empty(count, dtype=dtype, device=device)
    words = (count + 1) // 2
    chunk = _CHUNK_WORDS * (512 if torch.device(device).type == "cuda" else 8)
    for lo in range(0, words, chunk):
        hi = min(words, lo + chunk)
        z = torch.arange(lo + 1, hi + 1, dtype=torch.int64, device=device)
        z = z * gamma + key
        z = (z ^ _logical_shift(z, 30)) * mix1
        z = (z ^ _logical_shift(z, 27)) * mix2
        z = z ^ _logical_shift(z, 31)
        u = z.view(torch.int32)
        # (u >> 5) sign-extends, but only bits 23..25 (u's bits 28..30) survive the mask.
        bits = (u & keep) | (_ONE - ((u >> 5) & _EXPONENT_FIELD))
        values = bits.view(torch.float32)
        end = min(count, 2 * hi)
        out[2 * lo : end] = values[: end - 2 * lo].to(dtype)
    return out


__all__ = [
    "MANTISSA_BITS",
    "chain_key",
    "generate_floats",
    "generate_floats_at",
    "generate_floats_torch",
    "generate_ints",
    "generate_ints_at",
    "keep_mask",
]

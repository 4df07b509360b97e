"""floatgen's values against the formula in its docstring, re-implemented here in plain Python
integers (mutation testing, issue 14): the other tests compare floatgen's paths with each other,
which a change made to all of them at once (a constant, a shift, the key's domain) still passes.

    key   = first 8 bytes of SHA-256(DOMAIN || seed bytes || 0x00 || name), little-endian
    word  = splitmix64_mix(key + (i div 2 + 1) * GAMMA)  mod 2**64
    u     = 32-bit half (i mod 2) of word, half 0 = low bits
    value = (-1)**u[31] * 2**-u[28..30] * (1 + u[0..22] / 2**23),
            with the low 23 - MANTISSA_BITS bits cleared
"""

import hashlib
import sys

import numpy as np
import pytest
import torch

from workers.kernels.floatgen import (
    generate_floats,
    generate_floats_at,
    generate_floats_torch,
    keep_mask,
)

SEED = "0123456789abcdef" * 4
MASK64 = (1 << 64) - 1
# The splitmix64 constants (Steele, Lea & Flood 2014), written out, not imported.
SPLITMIX_GAMMA = 0x9E3779B97F4A7C15
SPLITMIX_MIX1 = 0xBF58476D1CE4E5B9
SPLITMIX_MIX2 = 0x94D049BB133111EB
STORED_MANTISSA = {"fp32": 23, "tf32": 10, "bf16": 7, "fp16": 10}
TORCH_DTYPES = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def reference_value(seed: str, name: str, index: int, precision: str) -> float:
    digest = hashlib.sha256(
        b"gpu-marketplace/chain/v1\x00" + bytes.fromhex(seed) + b"\x00" + name.encode()
    ).digest()
    key = int.from_bytes(digest[:8], "little")
    z = (key + (index // 2 + 1) * SPLITMIX_GAMMA) & MASK64
    z = ((z ^ (z >> 30)) * SPLITMIX_MIX1) & MASK64
    z = ((z ^ (z >> 27)) * SPLITMIX_MIX2) & MASK64
    z ^= z >> 31
    u = (z >> (32 * (index % 2))) & 0xFFFFFFFF
    dropped = 23 - STORED_MANTISSA[precision]
    mantissa = (u & 0x7FFFFF) >> dropped << dropped
    exponent = (u >> 28) & 0b111
    sign = -1.0 if u >> 31 else 1.0
    return sign * 2.0**-exponent * (1 + mantissa / 2**23)


INDICES = [0, 1, 2, 3, 10, 65_535, 65_536, 65_537, 131_071, 131_072, 200_001]


@pytest.mark.parametrize("precision", list(STORED_MANTISSA))
def test_values_follow_the_documented_formula(precision):
    whole = generate_floats(SEED, "B", 200_002, precision)
    expected = [reference_value(SEED, "B", i, precision) for i in INDICES]
    assert whole[INDICES].tolist() == expected
    at = generate_floats_at(SEED, "B", np.array(INDICES), precision)
    assert at.tolist() == expected


def test_the_tensor_name_and_the_seed_enter_the_key():
    assert generate_floats(SEED, "W", 4, "fp32").tolist() == [
        reference_value(SEED, "W", i, "fp32") for i in range(4)
    ]
    other = "fedcba9876543210" * 4
    assert generate_floats(other, "B", 4, "fp32").tolist() == [
        reference_value(other, "B", i, "fp32") for i in range(4)
    ]


def test_keep_masks_written_out():
    # Sign bit plus the top 23 / 10 / 7 / 10 mantissa bits.
    assert keep_mask("fp32") == 0x807FFFFF
    assert keep_mask("tf32") == 0x807FE000
    assert keep_mask("bf16") == 0x807F0000
    assert keep_mask("fp16") == 0x807FE000


@pytest.mark.parametrize(("start", "count"), [(65_535, 70_000), (65_536, 65_536), (1, 131_072)])
def test_slices_across_chunk_boundaries_and_into_a_given_buffer(start, count):
    # 2**16 values per chunk: these slices start at odd and even indices and cross chunks.
    whole = generate_floats(SEED, "A", 200_000, "fp32")
    out = np.full(count, np.nan, dtype=np.float32)
    returned = generate_floats(SEED, "A", count, "fp32", start=start, out=out)
    assert returned is out
    assert np.array_equal(out, whole[start : start + count])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_torch_on_the_cpu_crosses_its_chunks_and_returns_the_requested_dtype(precision):
    # On a CPU torch works in chunks of 8 * 2**15 words = 524,288 values: this crosses one.
    count = 524_288 + 2 * 777 + 1
    on_torch = generate_floats_torch(
        SEED, "B", count, precision, device="cpu", dtype=TORCH_DTYPES[precision]
    )
    assert on_torch.dtype == TORCH_DTYPES[precision]
    assert on_torch.shape == (count,)
    assert np.array_equal(on_torch.float().numpy(), generate_floats(SEED, "B", count, precision))
    for i in (0, 524_287, 524_288, count - 1):
        assert on_torch[i].item() == reference_value(SEED, "B", i, precision)


def test_torch_generator_refuses_a_big_endian_host(monkeypatch):
    monkeypatch.setattr(sys, "byteorder", "big")
    with pytest.raises(RuntimeError) as refused:
        generate_floats_torch(SEED, "B", 4, "fp32", device="cpu", dtype=torch.float32)
    assert str(refused.value) == "the torch generator reads int64 words as little-endian halves"

import numpy as np
import pytest
import torch

from workers.kernels import SpecError, generate
from workers.kernels.generator import (
    CHUNK,
    FIELD_VALUES,
    GAMMA,
    MIX1,
    MIX2,
    VALUES_PER_WORD,
    generate_into,
    generate_torch,
    matmul_inputs,
    tensor_key,
)
from workers.kernels.specs import MatmulSpec


def test_generator_is_deterministic(seed):
    assert np.array_equal(generate(seed, "A", 10_000), generate(seed, "A", 10_000))


def test_generator_values_are_the_four_field_values_evenly(seed):
    values = generate(seed, "A", 100_000).astype(np.int64)
    assert set(np.unique(values).tolist()) == set(FIELD_VALUES) == {-2, -1, 1, 2}
    counts = np.array([(values == v).sum() for v in FIELD_VALUES])
    assert (np.abs(counts / values.size - 0.25) < 0.01).all()


def test_generator_follows_the_documented_definition(seed):
    """Element i = FIELD_VALUES[bits 2(i mod 32).. of splitmix64(key + (i div 32 + 1) GAMMA)],
    computed here with Python integers, independently of the vectorised code."""
    mask = (1 << 64) - 1
    key = tensor_key(seed, "B")

    def reference(i):
        z = (key + (i // 32 + 1) * GAMMA) & mask
        z = ((z ^ (z >> 30)) * MIX1) & mask
        z = ((z ^ (z >> 27)) * MIX2) & mask
        z ^= z >> 31
        return FIELD_VALUES[(z >> (2 * (i % 32))) & 3]

    indices = [0, 1, 2, 3, 4, 31, 32, 33, 63, 64, 1000, 12345]
    whole = generate(seed, "B", 12346)
    assert [int(whole[i]) for i in indices] == [reference(i) for i in indices]


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.float32, np.float64])
@pytest.mark.parametrize("start, count", [(0, 64), (3, 70), (32, 4), (5, 1), (100, 333)])
def test_generate_into_any_dtype_and_alignment_matches(seed, dtype, start, count):
    expected = generate(seed, "A", start + count).astype(np.int64)[start:]
    out = np.full(count, 99, dtype=dtype)
    generate_into(seed, "A", out, start=start)
    assert np.array_equal(out.astype(np.int64), expected)


def test_different_seeds_and_names_differ(seed):
    other = "ab" * 32
    base = generate(seed, "A", 4096)
    assert not np.array_equal(base, generate(other, "A", 4096))
    assert not np.array_equal(base, generate(seed, "B", 4096))


@pytest.mark.parametrize("start", [0, 1, 7, 8, 9, 31, 32, 33, 1000, (1 << 23) - 3])
def test_any_slice_equals_the_same_part_of_the_whole(seed, start):
    whole = generate(seed, "B", start + 777)
    assert np.array_equal(generate(seed, "B", 777, start=start), whole[start:])


def test_dtype_does_not_change_values(seed):
    as_int = generate(seed, "A", 5000).astype(np.int64)
    assert np.array_equal(generate(seed, "A", 5000, dtype=np.float32).astype(np.int64), as_int)


@pytest.mark.parametrize("dtype", [torch.int8, torch.float32, torch.bfloat16, torch.float16])
def test_torch_generator_matches_numpy_bit_for_bit(seed, dtype):
    # Crosses torch's CPU chunk (CHUNK * 16 words) and NumPy's, and ends mid-word and mid-byte.
    count = CHUNK * 16 * VALUES_PER_WORD + 4 * VALUES_PER_WORD + 13
    expected = generate(seed, "X", count).astype(np.int64)
    got = generate_torch(seed, "X", count, device="cpu", dtype=dtype)
    assert np.array_equal(got.to(torch.int64).numpy(), expected)


def test_matmul_inputs_are_row_major_slices_of_the_stream(seed):
    a, b = matmul_inputs(MatmulSpec(17), seed)
    assert np.array_equal(a[5], generate(seed, "A", 17, start=5 * 17))
    assert np.array_equal(b.reshape(-1), generate(seed, "B", 17 * 17))


@pytest.mark.parametrize("bad", ["", "zz" * 16, "AB" * 16, "a" * 33, "ab" * 8, None, 123])
def test_bad_seed_is_rejected(bad):
    with pytest.raises(SpecError, match="seed"):
        generate(bad, "A", 4)

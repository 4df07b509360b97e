import numpy as np
import pytest
import torch

from workers.kernels import SpecError, generate
from workers.kernels.generator import generate_torch, matmul_inputs
from workers.kernels.specs import MatmulSpec


def test_generator_is_deterministic(seed):
    assert np.array_equal(generate(seed, "A", 10_000), generate(seed, "A", 10_000))


def test_generator_values_are_small_integers_in_every_bucket(seed):
    values = generate(seed, "A", 100_000)
    assert values.min() == -2 and values.max() == 2
    counts = np.bincount(values.astype(np.int64) + 2)
    assert (np.abs(counts / values.size - 0.2) < 0.01).all()


def test_different_seeds_and_names_differ(seed):
    other = "ab" * 32
    base = generate(seed, "A", 4096)
    assert not np.array_equal(base, generate(other, "A", 4096))
    assert not np.array_equal(base, generate(seed, "B", 4096))


@pytest.mark.parametrize("start", [0, 1, 7, 8, 9, 1000, (1 << 23) - 3])
def test_any_slice_equals_the_same_part_of_the_whole(seed, start):
    whole = generate(seed, "B", start + 777)
    assert np.array_equal(generate(seed, "B", 777, start=start), whole[start:])


def test_dtype_does_not_change_values(seed):
    as_int = generate(seed, "A", 5000).astype(np.int64)
    assert np.array_equal(generate(seed, "A", 5000, dtype=np.float32).astype(np.int64), as_int)


@pytest.mark.parametrize("dtype", [torch.int8, torch.float32, torch.bfloat16, torch.float16])
def test_torch_generator_matches_numpy_bit_for_bit(seed, dtype):
    count = (1 << 20) + 13  # crosses a chunk boundary and ends mid-word
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

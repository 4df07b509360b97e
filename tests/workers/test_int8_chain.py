"""The exact int8 chain (workers/kernels/chain.py, chain_run.py; workers/verification/sketch.py).

Expected values are written down by hand (the generator's byte map, the second moment, the
suite's shifts, the layer map on chosen integers) or come from a separate pure-Python integer
implementation of the chain below, which shares nothing with the kernels but the generated
inputs.
"""

import numpy as np
import pytest

from workers.kernels.chain import (
    ConvChainSpec,
    MatmulChainSpec,
    chain_spec_from_dict,
    int8_map_np,
)
from workers.kernels.chain_run import chain_backends, chain_compute
from workers.kernels.floatgen import _assemble_int_np, generate_ints
from workers.kernels.specs import SpecError
from workers.verification.sketch import sketch_payload, sketch_verify

SEED = "1f" * 32
BACKENDS = [b for b in ("numpy", "torch-cpu") if b in chain_backends("int8")]


# --- hand-written values ------------------------------------------------------------------------


def test_generator_maps_the_low_byte_to_minus_127_through_127():
    # (v * 255) >> 8 - 127: v = 0 and 1 both give -127, 128 gives 0, 255 gives 127; the high
    # bytes of the word are ignored.
    words = np.array([0, 1, 2, 128, 129, 255, 0xABCDEF00, 0x12345680], dtype=np.uint32)
    out = np.empty(len(words), dtype=np.int8)
    _assemble_int_np(words, out)
    assert out.tolist() == [-127, -127, -126, 0, 1, 127, -127, 0]


def test_layer_map_shifts_each_unit_by_its_largest_value_rounds_half_up_and_signs():
    z = np.array(
        [
            # max 5000: bit length 13, t = 6, (|z| + 32) >> 6
            [-13, 12, 11, 4, 3, -1020, 5000, 0],
            # max 255: t = 1, (|z| + 1) >> 1; 256 >> 1 = 128 saturates at 127
            [127, -128, 255, 0, 1, 2, 3, -254],
            # max 100: bit length 7, t = 0, unchanged
            [100, -5, 7, 0, 0, 0, 0, 1],
        ],
        dtype=np.float32,
    )
    sign = np.array([1, -1, 1, 1, 1, -1, 1, -1], dtype=np.float32)
    assert int8_map_np(z, sign, axis=-1).tolist() == [
        [0, 0, 0, 0, 0, -16, 78, 0],
        [64, -64, 127, 0, 1, -1, 2, -127],
        [100, -5, 7, 0, 0, 0, 0, -1],
    ]


def test_int8_specs_are_validated():
    # (2**31 - 1) // 127**2 = 133,144 products fit an int32 accumulator.
    MatmulChainSpec(n=16384, rows=64, layers=1, precision="int8")
    with pytest.raises(SpecError, match="at most 133144"):
        ConvChainSpec(
            batch=1, channels=2048, height=4, width=4, kernel_size=9, layers=1, precision="int8"
        )
    spec = MatmulChainSpec(n=64, rows=100, layers=2, precision="int8")
    assert chain_spec_from_dict(spec.to_dict()) == spec
    assert (spec.sketch_dtype, spec.sketch_width, spec.sketch_bytes) == ("<i4", 4, 1600)


# --- the kernels against a pure-Python integer chain --------------------------------------------


def _python_map(unit: list[int], signs: list[float]) -> list[int]:
    shift = max(0, max(abs(z) for z in unit).bit_length() - 7)
    values = [min(127, (abs(z) + ((1 << shift) >> 1)) >> shift) for z in unit]
    return [v if s > 0 else -v for v, s in zip(values, signs, strict=True)]


def _python_matmul_chain(spec: MatmulChainSpec, seed: str) -> list[list[int]]:
    n = spec.n
    a = generate_ints(seed, "A", spec.rows * n).tolist()
    b = generate_ints(seed, "B", n * n).tolist()
    x = [a[r * n : (r + 1) * n] for r in range(spec.rows)]
    for signs in spec.signs(seed).tolist():
        x = [
            _python_map([sum(row[j] * b[j * n + c] for j in range(n)) for c in range(n)], signs)
            for row in x
        ]
    v = generate_ints(seed, "V", n * spec.sketch_width).tolist()
    m = spec.sketch_width
    return [[sum(row[j] * v[j * m + i] for j in range(n)) for i in range(m)] for row in x]


def _python_conv_chain(spec: ConvChainSpec, seed: str) -> list[list[int]]:
    c, h, w, k, r = spec.channels, spec.height, spec.width, spec.kernel_size, spec.radius
    flat = generate_ints(seed, "X", spec.batch * c * h * w).tolist()
    weights = generate_ints(seed, "W", c * c * k * k).tolist()
    x = [
        [
            [[flat[((b * c + ch) * h + i) * w + j] for j in range(w)] for i in range(h)]
            for ch in range(c)
        ]
        for b in range(spec.batch)
    ]
    for signs in spec.signs(seed).tolist():
        out = []
        for image in x:
            planes = [[[0] * w for _ in range(h)] for _ in range(c)]
            for i in range(h):
                for j in range(w):
                    pixel = []
                    for o in range(c):
                        z = 0
                        for ch in range(c):
                            for dy in range(k):
                                for dx in range(k):
                                    ii, jj = i + dy - r, j + dx - r
                                    if 0 <= ii < h and 0 <= jj < w:
                                        tap = weights[((o * c + ch) * k + dy) * k + dx]
                                        z += image[ch][ii][jj] * tap
                        pixel.append(z)
                    for o, value in enumerate(_python_map(pixel, signs)):
                        planes[o][i][j] = value
            out.append(planes)
        x = out
    m = spec.sketch_width
    v = generate_ints(seed, "V", c * m).tolist()
    units = [
        [x[b][ch][i][j] for ch in range(c)]
        for b in range(spec.batch)
        for i in range(h)
        for j in range(w)
    ]
    return [[sum(u[ch] * v[ch * m + t] for ch in range(c)) for t in range(m)] for u in units]


@pytest.mark.parametrize("backend", BACKENDS)
def test_matmul_chain_equals_plain_integer_arithmetic(backend):
    spec = MatmulChainSpec(n=64, rows=19, layers=3, precision="int8")
    assert chain_compute(spec, SEED, backend).tolist() == _python_matmul_chain(spec, SEED)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_chain_equals_plain_integer_arithmetic(backend):
    spec = ConvChainSpec(
        batch=2, channels=8, height=5, width=4, kernel_size=3, layers=2, precision="int8"
    )
    assert chain_compute(spec, SEED, backend).tolist() == _python_conv_chain(spec, SEED)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_long_reduction_is_still_exact(backend):
    # n = 1100 > 1024: NumPy sums fp32-exact chunks; torch's int32 path needs no chunking.
    spec = MatmulChainSpec(n=1100, rows=2, layers=1, precision="int8")
    assert chain_compute(spec, SEED, backend).tolist() == _python_matmul_chain(spec, SEED)


@pytest.mark.parametrize("n", [64, 512])
def test_every_unit_keeps_its_scale_over_hundreds_of_layers(n):
    # A fixed shift schedule drifted to rms 1.4 and 28% zeros after 128 layers at n = 64 (a unit
    # that rounds to zero is a guessable answer); the per-unit shift keeps each row's largest
    # value in 64..127 at every layer.
    from workers.kernels.chain_run import chain_prepare

    spec = MatmulChainSpec(n=n, rows=64, layers=256, precision="int8")
    x = chain_prepare(spec, SEED, "numpy").layers_only()
    peaks = np.abs(x).max(axis=1)
    assert peaks.min() >= 64 and peaks.max() <= 127
    assert np.mean(x == 0) < 0.05


# --- verification: exact comparison -------------------------------------------------------------

SPEC = MatmulChainSpec(n=64, rows=512, layers=2, precision="int8")


@pytest.fixture(scope="module")
def honest_y():
    return chain_compute(SPEC, SEED, "numpy")


def test_honest_payload_passes_on_every_backend(honest_y):
    for backend in BACKENDS:
        y = chain_compute(SPEC, SEED, backend)
        report = sketch_verify(SPEC, SEED, sketch_payload(SPEC, SEED, y), verifier_seed=1)
        assert (report.passed, report.figures["units_mismatched"]) == (True, 0)


def test_skipping_half_the_rows_is_a_row_mismatch(honest_y):
    y = honest_y.copy()
    y[::2] = 0
    report = sketch_verify(SPEC, SEED, sketch_payload(SPEC, SEED, y), verifier_seed=2)
    assert (report.passed, report.reason) == (False, "row_mismatch")


def test_skipping_ten_percent_is_caught_on_at_least_95_percent_of_draws(honest_y):
    y = honest_y.copy()
    rng = np.random.default_rng(3)
    y[rng.choice(SPEC.units, SPEC.units // 10, replace=False)] += 1  # off by one: still wrong
    payload = sketch_payload(SPEC, SEED, y)
    caught = sum(not sketch_verify(SPEC, SEED, payload, verifier_seed=s).passed for s in range(200))
    assert caught >= 190  # expected 1 - 0.9^48 = 99.4%


def _cheat_chain(spec: MatmulChainSpec, seed: str, layer_map) -> np.ndarray:
    n = spec.n
    x = generate_ints(seed, "A", spec.rows * n).reshape(spec.rows, n).astype(np.int64)
    b = generate_ints(seed, "B", n * n).reshape(n, n).astype(np.int64)
    for sign in spec.signs(seed):
        z = np.abs(x @ b)
        bits = np.frexp(z.max(axis=1, keepdims=True).astype(np.float64))[1].astype(np.int64)
        x = layer_map(z, bits, sign.astype(np.int64))
    return x @ spec.sketch_matrix(seed).astype(np.int64)


def _rounded(z, t):
    return (z + ((1 << t) >> 1)) >> t


@pytest.mark.parametrize(
    "name,layer_map",
    [
        # truncating instead of rounding half up
        ("floor", lambda z, bits, d: np.minimum(127, z >> np.maximum(bits - 7, 0)) * d),
        # one bit less of shift, wrapped into int8 instead of saturated
        (
            "wrap",
            lambda z, bits, d: ((_rounded(z, np.maximum(bits - 8, 0)) * d + 128) % 256) - 128,
        ),
        # one fixed shift for every unit (no per-unit scale)
        ("fixed", lambda z, bits, d: np.minimum(127, _rounded(z, 11)) * d),
    ],
)
def test_an_answer_from_another_integer_map_fails(name, layer_map):
    y = _cheat_chain(SPEC, SEED, layer_map)
    report = sketch_verify(SPEC, SEED, sketch_payload(SPEC, SEED, y), verifier_seed=4)
    assert (report.passed, report.reason) == (False, "row_mismatch")
    # ... while the same code with the real map is accepted (the cheat differs only in the map).
    honest = _cheat_chain(
        SPEC, SEED, lambda z, bits, d: np.minimum(127, _rounded(z, np.maximum(bits - 7, 0))) * d
    )
    assert sketch_verify(SPEC, SEED, sketch_payload(SPEC, SEED, honest), verifier_seed=4).passed


def test_a_float_answer_to_an_int8_job_is_the_wrong_shape_or_wrong(honest_y):
    # Float32 bytes of the right length decode as different integers.
    payload = sketch_payload(SPEC, SEED, honest_y.astype(np.float32).view(np.int32))
    report = sketch_verify(SPEC, SEED, payload, verifier_seed=5)
    assert (report.passed, report.reason) == (False, "row_mismatch")

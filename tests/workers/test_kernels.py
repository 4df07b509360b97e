import numpy as np
import pytest
import torch

from workers.kernels import (
    PRECISIONS,
    BackendError,
    Conv2dSpec,
    MatmulSpec,
    available_backends,
    bench,
    best_backend,
    compute,
    conv_inputs,
    matmul_inputs,
    reference_call_seconds,
    supports,
)
from workers.kernels import backends as backends_module

from .conftest import cuda_available, cupy_available

CPU_BACKENDS = ("numpy", "torch-cpu")


def naive_matmul(spec, seed):
    a, b = matmul_inputs(spec, seed)
    return a.astype(np.int64) @ b.astype(np.int64)


def naive_conv(spec, seed):
    """Direct loops over output positions in int64, independent of both backends' code."""
    x, w = conv_inputs(spec, seed)
    x = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (spec.padding,) * 2, (spec.padding,) * 2))
    w = w.astype(np.int64)
    out = np.zeros(spec.output_shape, dtype=np.int64)
    k, s = spec.kernel_size, spec.stride
    for i in range(spec.out_height):
        for j in range(spec.out_width):
            window = x[:, :, i * s : i * s + k, j * s : j * s + k]
            out[:, :, i, j] = np.einsum("bchw,ochw->bo", window, w)
    return out


def backend_precisions(kind):
    kernel_spec = MatmulSpec(8) if kind == "matmul" else Conv2dSpec(1, 1, 1, 3, 3, 3)
    return [
        (backend, precision)
        for backend in CPU_BACKENDS
        for precision in PRECISIONS
        if supports(backend, type(kernel_spec)(**{**_fields(kernel_spec), "precision": precision}))
    ]


def _fields(spec):
    data = spec.to_dict()
    data.pop("kind")
    return data


@pytest.mark.parametrize(("backend", "precision"), backend_precisions("matmul"))
@pytest.mark.parametrize("n", [1, 7, 64, 300])
def test_matmul_matches_naive_int64(seed, backend, precision, n):
    spec = MatmulSpec(n, precision)
    out = compute(spec, seed, backend)
    assert out.dtype == np.int64 and out.shape == (n, n)
    assert np.array_equal(out, naive_matmul(spec, seed))


@pytest.mark.parametrize(("backend", "precision"), backend_precisions("conv2d"))
@pytest.mark.parametrize(
    "shape",
    [
        dict(batch=1, in_channels=1, out_channels=1, height=5, width=5, kernel_size=3),
        dict(batch=2, in_channels=3, out_channels=4, height=9, width=7, kernel_size=3, padding=1),
        dict(batch=2, in_channels=5, out_channels=3, height=11, width=10, kernel_size=3, stride=2),
        dict(
            batch=1,
            in_channels=2,
            out_channels=2,
            height=8,
            width=9,
            kernel_size=5,
            stride=3,
            padding=2,
        ),
        dict(batch=3, in_channels=4, out_channels=2, height=6, width=6, kernel_size=1),
    ],
)
def test_conv_matches_naive_int64(seed, backend, precision, shape):
    spec = Conv2dSpec(**shape, precision=precision)
    out = compute(spec, seed, backend)
    assert out.shape == spec.output_shape
    assert np.array_equal(out, naive_conv(spec, seed))


def test_conv_matches_torch_float64_reference(seed):
    spec = Conv2dSpec(2, 6, 5, 13, 12, 3, stride=2, padding=1)
    x, w = conv_inputs(spec, seed)
    expected = torch.nn.functional.conv2d(
        torch.from_numpy(x).double(), torch.from_numpy(w).double(), stride=2, padding=1
    )
    assert np.array_equal(compute(spec, seed, "numpy"), expected.long().numpy())


def test_bf16_output_stays_exact_where_a_plain_bf16_matmul_rounds(seed):
    """|C| passes 256 at n = 2048: a plain bf16 matmul rounds there, ours must not."""
    spec = MatmulSpec(2048, "bf16")
    a, b = matmul_inputs(spec, seed)
    # float64 BLAS is exact here (|C| <= 8192) and 100x faster than NumPy's int64 loops.
    expected = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    a, b = (torch.from_numpy(m).to(torch.bfloat16) for m in (a, b))
    plain = (a @ b).to(torch.int64).numpy()
    assert not np.array_equal(plain, expected), "the test needs sizes where rounding shows"
    assert np.array_equal(compute(spec, seed, "torch-cpu"), expected)


@pytest.mark.parametrize(
    ("precision", "dtype"), [("fp16", torch.float16), ("bf16", torch.bfloat16)]
)
def test_half_precision_kernel_is_exact_for_the_largest_possible_sums(precision, dtype):
    """Worst case |C| = 4 * 3001 = 12004, which neither fp16 nor bf16 can represent.

    Random inputs cannot reach this on CPU in test time (torch's CPU fp16 GEMM runs at well
    under 1 GFLOP/s), so the kernel runs on constant rows of 2 and -2.
    """
    spec = MatmulSpec(3001, precision)
    a = torch.full((4, 3001), 2, dtype=dtype)
    b = torch.full((3001, 4), -2, dtype=dtype)
    assert int((a @ b)[0, 0]) != -12004, "plain half precision must round here"
    out = backends_module._torch_matmul(torch, spec, a, b)
    assert (out.to(torch.int64) == -12004).all()


def test_bf16_conv_with_many_channels_stays_exact(seed):
    # 4 * 64 channels * 9 taps = 2304 > 256: the channel split must kick in.
    spec = Conv2dSpec(1, 64, 2, 6, 6, 3, padding=1, precision="bf16")
    assert spec.reduction_chunk < spec.in_channels
    assert np.array_equal(compute(spec, seed, "torch-cpu"), naive_conv(spec, seed))


def test_int8_matmul_pads_odd_sizes_exactly(seed):
    spec = MatmulSpec(13, "int8")
    assert np.array_equal(compute(spec, seed, "torch-cpu"), naive_matmul(spec, seed))


def test_backend_refuses_what_it_cannot_run_exactly(seed):
    with pytest.raises(BackendError, match="int8"):
        compute(Conv2dSpec(1, 1, 1, 3, 3, 3, precision="int8"), seed, "torch-cpu")
    with pytest.raises(BackendError, match="bf16"):
        compute(MatmulSpec(8, "bf16"), seed, "numpy")
    with pytest.raises(BackendError, match="unknown backend"):
        compute(MatmulSpec(8), seed, "tpu")


def test_torch_flags_are_restored_after_a_run(seed):
    matmul = torch.backends.cuda.matmul
    before = (matmul.allow_tf32, matmul.allow_fp16_reduced_precision_reduction)
    compute(MatmulSpec(16, "tf32"), seed, "torch-cpu")
    assert (matmul.allow_tf32, matmul.allow_fp16_reduced_precision_reduction) == before


def test_available_and_best_backends_on_this_machine():
    available = available_backends()
    assert "numpy" in available and "torch-cpu" in available
    if not cuda_available():
        assert best_backend(MatmulSpec(64, "fp32")) == "numpy"
        assert best_backend(MatmulSpec(64, "bf16")) == "torch-cpu"


def test_bench_reports_consistent_throughput():
    spec = MatmulSpec(128)
    result = bench(spec, "numpy", repeats=2)
    assert result["flops"] == spec.flops
    assert result["tflops"] == pytest.approx(spec.flops / result["seconds"] / 1e12)
    assert result["seconds"] <= result["median_seconds"]
    assert reference_call_seconds(spec, "numpy", repeats=1) > 0


def test_out_dtype_probe_is_false_on_cpu():
    # torch.mm(out_dtype=...) exists only for CUDA; on CPU the chunked path must be chosen.
    assert backends_module._torch_out_dtype_exact("cpu", "bfloat16") is False


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", PRECISIONS)
def test_torch_cuda_matmul_is_exact(seed, precision):
    spec = MatmulSpec(1024, precision)
    assert np.array_equal(compute(spec, seed, "torch-cuda"), naive_matmul(spec, seed))


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16", "fp16"])
def test_torch_cuda_conv_is_exact(seed, precision):
    spec = Conv2dSpec(2, 64, 8, 10, 10, 3, padding=1, precision=precision)
    assert np.array_equal(compute(spec, seed, "torch-cuda"), naive_conv(spec, seed))


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")
def test_torch_cuda_generator_matches_numpy(seed):
    from workers.kernels.generator import generate, generate_torch

    got = generate_torch(seed, "A", 3_000_001, device="cuda", dtype=torch.int8).cpu().numpy()
    assert np.array_equal(got, generate(seed, "A", 3_000_001))


@pytest.mark.gpu
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy with a CUDA device")
def test_cupy_matmul_and_conv_are_exact(seed):
    spec = MatmulSpec(512)
    assert np.array_equal(compute(spec, seed, "cupy"), naive_matmul(spec, seed))
    conv_spec = Conv2dSpec(2, 3, 4, 9, 9, 3, stride=2, padding=1)
    assert np.array_equal(compute(conv_spec, seed, "cupy"), naive_conv(conv_spec, seed))

import pytest

from workers.kernels import PRECISIONS, Conv2dSpec, MatmulSpec, SpecError, spec_from_dict
from workers.kernels.specs import MAX_N


def conv(**overrides):
    fields = dict(
        batch=2,
        in_channels=3,
        out_channels=4,
        height=8,
        width=9,
        kernel_size=3,
        stride=1,
        padding=1,
        precision="fp32",
    )
    fields.update(overrides)
    return Conv2dSpec(**fields)


def test_matmul_spec_flops_and_round_trip():
    spec = MatmulSpec(128, "bf16")
    assert spec.kind == "matmul"
    assert spec.flops == 2 * 128**3
    assert spec_from_dict(spec.to_dict()) == spec


def test_conv_spec_output_shape_flops_and_round_trip():
    spec = conv(height=10, width=7, kernel_size=3, stride=2, padding=1)
    assert spec.output_shape == (2, 4, 5, 4)
    assert spec.flops == 2 * 2 * 4 * 5 * 4 * 3 * 9
    assert spec_from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_is_accepted(precision):
    assert MatmulSpec(64, precision).precision == precision


@pytest.mark.parametrize(
    "n", [0, -1, MAX_N + 1, True, 3.0, "64", None], ids=lambda v: f"{type(v).__name__}-{v}"
)
def test_matmul_spec_rejects_bad_sizes(n):
    with pytest.raises(SpecError):
        MatmulSpec(n, "fp32")


@pytest.mark.parametrize("precision", ["fp64", "FP32", "", None, 32])
def test_spec_rejects_unknown_precision(precision):
    with pytest.raises(SpecError, match="precision"):
        MatmulSpec(64, precision)


@pytest.mark.parametrize(
    "overrides",
    [
        {"batch": 0},
        {"in_channels": True},
        {"out_channels": 5000},
        {"height": 2000},
        {"kernel_size": 12},
        {"stride": 0},
        {"padding": 3},  # padding >= kernel_size
        {"padding": -1},
        {"height": 2, "padding": 0},  # kernel larger than the input
        {"batch": 256, "in_channels": 4096, "height": 1024, "width": 1024},  # element cap
        {"height": 1024, "width": 1024, "kernel_size": 1, "padding": 0},  # plane cap
        {"precision": "bf16", "kernel_size": 9, "height": 16, "width": 16},  # not exact
    ],
)
def test_conv_spec_rejects_bad_fields(overrides):
    with pytest.raises(SpecError):
        conv(**overrides)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"kind": "fft", "n": 8, "precision": "fp32"},
        {"kind": "matmul", "n": 8},  # missing precision: no silent default over the wire
        {"kind": "matmul", "n": 8, "precision": "fp32", "extra": 1},
        {"kind": "matmul", "n": 1e3, "precision": "fp32"},
    ],
)
def test_spec_from_dict_rejects_malformed(data):
    with pytest.raises(SpecError):
        spec_from_dict(data)


def test_spec_error_is_a_value_error():
    assert issubclass(SpecError, ValueError)

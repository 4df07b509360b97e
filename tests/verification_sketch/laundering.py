"""A dishonest agent's chain: every layer computed through a cheaper format than the job's.

Emulated in NumPy/torch on the CPU, bit-faithfully to the format's rounding (round to nearest
even onto the cheaper significand; int8 with the usual per-row / per-column scales and an exact
int32 accumulation), so the test shows what the server sees from such hardware paths.
"""

from __future__ import annotations

import numpy as np
import torch

from workers.kernels.chain import ChainSpec, _abs_scale_np, inputs_numpy


def round_mantissa(x: np.ndarray, bits: int) -> np.ndarray:
    """x (float32) rounded to nearest even onto `bits` stored mantissa bits (tf32: 10)."""
    raw = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    drop = 23 - bits
    half = np.uint64(1 << (drop - 1))
    lsb = (raw >> np.uint64(drop)) & np.uint64(1)
    rounded = (raw + half - np.uint64(1) + lsb) >> np.uint64(drop) << np.uint64(drop)
    return rounded.astype(np.uint32).view(np.float32)


def to_format(x: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "tf32":
        return round_mantissa(x, 10)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[fmt]
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype).float().numpy()


def _int8(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    scale = np.abs(x).max(axis=axis, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    return np.clip(np.rint(x / scale), -127, 127), scale


def int8_matmul(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """int8 GEMM with per-row scales for x and per-column scales for b (exact int accumulation
    in float64: |sum| <= n * 127**2 < 2**53)."""
    qx, sx = _int8(x, axis=1)
    qb, sb = _int8(b, axis=0)
    return ((qx.astype(np.float64) @ qb.astype(np.float64)) * sx * sb).astype(np.float32)


def laundered_layer(spec: ChainSpec, x: np.ndarray, w: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "int8":
        if spec.kind != "matmul_chain":
            raise ValueError("int8 emulation is for matmul chains")
        return int8_matmul(x, w)
    z = spec.layer_numpy(to_format(x, fmt), to_format(w, fmt))
    return z if fmt == "tf32" else to_format(z, fmt)


def laundered_sketch(
    spec: ChainSpec, seed: str, fmt: str, *, rows: np.ndarray | None = None
) -> np.ndarray:
    """Y of a chain whose every layer went through `fmt`; with `rows`, only those units (the
    rest computed honestly in fp32) -- a partial laundering."""
    x0, w = inputs_numpy(spec, seed)
    x = x0
    honest = x0
    for scale in spec.scales(seed):
        scale = spec.broadcast_scale(scale)
        x = _abs_scale_np(laundered_layer(spec, x, w, fmt), scale)
        if rows is not None:
            honest = _abs_scale_np(spec.layer_numpy(honest, w), scale)
    y = spec.unit_vectors(x) @ spec.sketch_matrix(seed)
    if rows is not None:
        y_honest = spec.unit_vectors(honest) @ spec.sketch_matrix(seed)
        mask = np.zeros(len(y), dtype=bool)
        mask[rows] = True
        y = np.where(mask[:, None], y, y_honest)
    return np.ascontiguousarray(y, dtype=np.float32)

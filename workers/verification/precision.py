"""How far an honest answer in precision P may be from the real-arithmetic result, and what that
means for a chain job (see workers/kernels/chain.py).

The model (the standard probabilistic rounding-error model, Higham & Mary 2019: rounding errors
are independent, mean-zero, and each at most the unit roundoff u in relative terms).

One layer is z = x . B (a dot product of `reduction_length` terms, accumulated in fp32 whatever
P is, as every honest fp32/tf32/bf16/fp16 GEMM does), then the output rounded to P, then
f(z) = s * |z| with s a signed power of two (exact in every format). Per element of one layer:

- output rounding to P: relative error uniform in [-u_P, u_P], variance at most u_P^2 / 3;
- fp32 accumulation: the error of a sum of r random-signed terms in the worst usual order
  (recursive, as each GPU thread does along K) has variance about u_acc^2 * r / 6 relative to
  the result (partial sums are random walks of size sqrt(j)); blocked or pairwise orders
  (BLAS) are smaller. The server's own fp32 recompute has the same error, hence twice that.

So one layer adds relative noise of variance rho^2 = u_P^2/3 + 2 * u_acc^2 * r / 6. The layer
map preserves the norm of a random error vector (the scale s is chosen so that |z| keeps the
norm of x, and |.| is 1-Lipschitz), so after L layers the relative error of a unit's output
vector has rms at most sigma = sqrt(L) * rho. A sketch value y = x_L . v then differs from the
server's by about sigma * |x_L| |v| / sqrt(width) times a standard normal.

Tolerances, in units of KAPPA * sigma. KAPPA = 1: the model is an upper bound (a rounding error is
uniform in ulps, so its relative rms is between u/sqrt(12) and u/sqrt(3)); honest CPU runs measure
0.05-0.55 of the rms tolerance, at worst 0.75 over 1,000 small jobs (benchmarks/verify_cost.py).
Raise it only with measured data from a device whose honest error is larger (e.g. a Winograd
convolution):
- every sampled value within ROW_LAMBDA = 8 (a Gaussian tail of 2e-15 per value), and
- the root mean square over all N sampled values within rms_tau(N): the level an honest rms
  (chi-square with N degrees of freedom, scaled by the model) exceeds with probability at most
  FALSE_REJECTION = 1e-12 by the Chernoff bound P(chi2_N / N >= x) <= (x e^(1-x))^(N/2): 1.8
  for N = 48 values, 1.4 for 192, 4.2 for 4 (a job too small to average over).
A value further off than GROSS_ERROR (25% of its scale) was not computed at all.

What a cheaper format costs in the same units: rounding the GEMM inputs to a format with unit
roundoff u_c adds relative noise about sqrt(2/3) * u_c per layer (both operands rounded);
int8 with per-row/column scales adds about (max/rms) / (127 * sqrt(3)) per operand, 1-2% for
these inputs. Measured separations are in benchmarks/verify_cost.py.
"""

from __future__ import annotations

import math

from workers.kernels.floatgen import MANTISSA_BITS

# Unit roundoff (round to nearest) of each format: 2^-p, p = significand bits with the hidden one
# (fp32 24, tf32 and fp16 11, bf16 8).
UNIT_ROUNDOFF = {"fp32": 2.0**-24, "tf32": 2.0**-11, "bf16": 2.0**-8, "fp16": 2.0**-11}
ACCUMULATOR_ROUNDOFF = 2.0**-24  # fp32 accumulation, for every floating-point precision
FLOAT_PRECISIONS = tuple(UNIT_ROUNDOFF)

KAPPA = 1.0
ROW_LAMBDA = 8.0
FALSE_REJECTION = 1e-12
GROSS_ERROR = 0.25


def layer_sigma(precision: str, reduction_length: int) -> float:
    """rms relative error one honest layer adds (agent's rounding + both sides' accumulation)."""
    u = UNIT_ROUNDOFF[precision]
    return math.sqrt(u * u / 3 + 2 * ACCUMULATOR_ROUNDOFF**2 * reduction_length / 6)


def chain_sigma(precision: str, reduction_length: int, layers: int) -> float:
    """KAPPA * sqrt(layers) * layer_sigma: the unit in which tolerances are stated."""
    return KAPPA * math.sqrt(layers) * layer_sigma(precision, reduction_length)


def value_tolerance(precision: str, reduction_length: int, layers: int) -> float:
    return ROW_LAMBDA * chain_sigma(precision, reduction_length, layers)


def rms_tau(values: int) -> float:
    """sqrt(x) for the x > 1 with (N / 2) (x - 1 - ln x) = ln(1 / FALSE_REJECTION) (bisection)."""
    if values < 1:
        raise ValueError("values must be positive")
    need = math.log(1 / FALSE_REJECTION)
    lo, hi = 1.0, 1e4
    for _ in range(100):
        mid = (lo + hi) / 2
        if values / 2 * (mid - 1 - math.log(mid)) < need:
            lo = mid
        else:
            hi = mid
    return math.sqrt(hi)


def rms_tolerance(precision: str, reduction_length: int, layers: int, values: int) -> float:
    return rms_tau(values) * chain_sigma(precision, reduction_length, layers)


def guess_probability(precision: str, reduction_length: int, layers: int, width: int) -> float:
    """Chance that a value not computed (any guess) lands within the per-value tolerance on all
    `width` sketch values of a unit: the true value, on the scale it is normalised by, is close
    to a standard normal (density at most 1/sqrt(2 pi)), so each guess hits a window of
    2 * tolerance with probability at most 2 * tolerance / sqrt(2 pi)."""
    one = min(
        1.0, 2 * value_tolerance(precision, reduction_length, layers) / math.sqrt(2 * math.pi)
    )
    return one**width


__all__ = [
    "ACCUMULATOR_ROUNDOFF",
    "FLOAT_PRECISIONS",
    "GROSS_ERROR",
    "KAPPA",
    "MANTISSA_BITS",
    "FALSE_REJECTION",
    "ROW_LAMBDA",
    "UNIT_ROUNDOFF",
    "chain_sigma",
    "guess_probability",
    "layer_sigma",
    "rms_tau",
    "rms_tolerance",
    "value_tolerance",
]

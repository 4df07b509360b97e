"""A small training run for a lease: a two-layer network learns a noisy nonlinear function by
full-batch gradient descent (numpy only). It prints the loss as it falls and saves a checkpoint
to out/model.npz, which `python -m workers.renter run … --result out` brings back.

    python -m workers.renter run ORDER --dir examples/train --result out -- python3 train.py
"""

import os
import time
from pathlib import Path

import numpy as np

EPOCHS = int(os.environ.get("EPOCHS", "300"))
HIDDEN = int(os.environ.get("HIDDEN", "64"))
LEARNING_RATE = float(os.environ.get("LEARNING_RATE", "0.1"))
SEED = int(os.environ.get("SEED", "0"))


def data(rng: np.random.Generator, n: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-3, 3, size=(n, 2))
    y = np.sin(x[:, :1]) * np.cos(x[:, 1:]) + 0.05 * rng.standard_normal((n, 1))
    return x, y


def main() -> None:
    rng = np.random.default_rng(SEED)
    x, y = data(rng)
    w1 = rng.standard_normal((2, HIDDEN)) * 0.5
    b1 = np.zeros(HIDDEN)
    w2 = rng.standard_normal((HIDDEN, 1)) * 0.1
    b2 = np.zeros(1)
    started = time.perf_counter()
    first = last = None
    for epoch in range(1, EPOCHS + 1):
        hidden = np.tanh(x @ w1 + b1)
        prediction = hidden @ w2 + b2
        error = prediction - y
        loss = float(np.mean(error**2))
        first = loss if first is None else first
        last = loss
        # Backpropagation of the mean squared error.
        grad_out = 2 * error / len(x)
        grad_w2 = hidden.T @ grad_out
        grad_b2 = grad_out.sum(axis=0)
        grad_hidden = (grad_out @ w2.T) * (1 - hidden**2)
        grad_w1 = x.T @ grad_hidden
        grad_b1 = grad_hidden.sum(axis=0)
        for param, grad in ((w1, grad_w1), (b1, grad_b1), (w2, grad_w2), (b2, grad_b2)):
            param -= LEARNING_RATE * grad
        if epoch == 1 or epoch % max(1, EPOCHS // 20) == 0 or epoch == EPOCHS:
            print(f"epoch {epoch:>5}  loss {loss:.5f}", flush=True)
    out = Path("out")
    out.mkdir(exist_ok=True)
    np.savez(out / "model.npz", w1=w1, b1=b1, w2=w2, b2=b2, loss=last)
    print(
        f"loss {first:.5f} -> {last:.5f} in {time.perf_counter() - started:.2f}s; "
        f"checkpoint saved to {out / 'model.npz'}",
        flush=True,
    )


if __name__ == "__main__":
    main()

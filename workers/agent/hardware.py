"""Hardware detection from every source present, cross-checked.

Sources: NVML (pynvml), torch.cuda, `nvidia-smi --query-gpu`; CPU from /proc/cpuinfo,
os.cpu_count and /proc/meminfo. Each source can be missing or wrong (a container without the
driver's NVML library, a torch built without CUDA), so they are compared and disagreements shown.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from typing import Any

from workers.kernels import available_backends


def _nvml() -> list[dict[str, Any]] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            gpus = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                name = pynvml.nvmlDeviceGetName(handle)
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total
                gpus.append(
                    {
                        "model": name.decode() if isinstance(name, bytes) else str(name),
                        "memory_gb": round(memory / 2**30),
                    }
                )
            return gpus
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


def _torch_cuda() -> list[dict[str, Any]] | None:
    try:
        import torch
    except ImportError:
        return None
    try:
        if not torch.cuda.is_available():
            return []
        return [
            {
                "model": torch.cuda.get_device_name(i),
                "memory_gb": round(torch.cuda.get_device_properties(i).total_memory / 2**30),
            }
            for i in range(torch.cuda.device_count())
        ]
    except Exception:
        return None


def _nvidia_smi() -> list[dict[str, Any]] | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.strip().splitlines():
        name, _, memory = line.rpartition(",")
        try:
            gpus.append({"model": name.strip(), "memory_gb": round(int(memory) / 1024)})
        except ValueError:
            continue
    return gpus


def _cpu() -> dict[str, Any]:
    vendor = model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "vendor_id" and not vendor:
                    vendor = value
                elif key == "model name" and not model:
                    model = value
    except OSError:
        pass
    return {
        "vendor": vendor[:50],
        "model": (model or platform.processor() or platform.machine() or "CPU")[:100],
        "cores": os.cpu_count() or 0,
    }


def _ram_gib() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _backends() -> list[str]:
    # The API knows "torch" (CPU) and "torch-cuda"; the kernels package says "torch-cpu".
    names = []
    for name in available_backends():
        name = "torch" if name == "torch-cpu" else name
        if name not in names:
            names.append(name)
    return names


def detect() -> dict[str, Any]:
    """{"hardware": what registration sends, "sources": each source's view, "disagreements"}."""
    sources = {"nvml": _nvml(), "torch": _torch_cuda(), "nvidia-smi": _nvidia_smi()}
    present = {name: gpus for name, gpus in sources.items() if gpus is not None}
    disagreements = []
    views = {name: sorted(g["model"] for g in gpus) for name, gpus in present.items()}
    if len({tuple(v) for v in views.values()}) > 1:
        disagreements.append(
            "sources disagree on the GPUs: "
            + "; ".join(
                f"{name}: {len(v)}x {', '.join(sorted(set(v))) or 'none'}"
                for name, v in views.items()
            )
        )
    chosen_source, chosen = next(((name, gpus) for name, gpus in present.items() if gpus), ("", []))
    accelerators = [
        {
            "kind": "gpu",
            "vendor": "NVIDIA",
            "model": gpu["model"][:100],
            "memory_gb": gpu["memory_gb"],
            "source": chosen_source,
        }
        for gpu in chosen
    ]
    if len({a["model"] for a in accelerators}) > 1:
        # The API takes one model per machine; register the first model's devices.
        first = accelerators[0]["model"]
        disagreements.append("mixed GPU models; registering only the " + first)
        accelerators = [a for a in accelerators if a["model"] == first]
    backends = _backends()
    if accelerators and not {"torch-cuda", "cupy"} & set(backends):
        disagreements.append("GPUs are present but no CUDA backend (torch/cupy) works here")
    hardware = {
        "accelerators": accelerators,
        "cpu": _cpu(),
        "ram_gib": _ram_gib(),
        "backends": backends,
    }
    return {"hardware": hardware, "sources": sources, "disagreements": disagreements}

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


# --- one device per job -----------------------------------------------------------------------


def _machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path) as fh:
                value = fh.read().strip()
            if value:
                return value[:64]
        except OSError:
            continue
    return platform.node()[:64] or "unknown"


def _safe_id(value: str) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:._-")
    return "".join(c if c in allowed else "-" for c in value)[:128]


def _cuda_identity(index: int) -> str:
    """The CUDA device's UUID as torch reports it, else its PCI bus id through NVML (in PCI bus
    order, which is what CUDA_DEVICE_ORDER=PCI_BUS_ID gives the index)."""
    import torch

    props = torch.cuda.get_device_properties(index)
    uuid = getattr(props, "uuid", None)
    if uuid:
        text = str(uuid)
        return text if text.startswith("GPU-") else f"GPU-{text}"
    bus = getattr(props, "pci_bus_id", None)
    if bus is not None:
        domain = getattr(props, "pci_domain_id", 0)
        device = getattr(props, "pci_device_id", 0)
        return f"pci-{domain:04x}:{bus:02x}:{device:02x}"
    return f"cuda-{index}-{props.name}"


def device_identity(index: int, backend: str) -> str:
    """What the agent reports as the identity of the device that ran a job: the GPU's UUID or
    PCI bus id on CUDA backends, the host's machine id on a CPU (one device)."""
    if backend in ("torch-cuda", "torch"):
        try:
            import torch

            if torch.cuda.is_available():
                return _safe_id(_cuda_identity(index))
        except Exception:
            pass
    if backend == "cupy":
        try:
            import cupy

            return _safe_id("pci-" + cupy.cuda.Device(index).pci_bus_id)
        except Exception:
            pass
    return _safe_id(f"cpu-{_machine_id()}")


def device_pin(index: int, backend: str):
    """A context in which the backend's kernels run on device `index` (CUDA's current device);
    on a CPU there is one device and nothing to pin. An index the host does not have raises:
    a claimed device that is not there cannot answer its job."""
    import contextlib

    if backend in ("torch-cuda", "torch"):
        import torch

        if torch.cuda.is_available():
            if index >= torch.cuda.device_count():
                raise RuntimeError(f"no CUDA device {index} here")
            return torch.cuda.device(index)
    if backend == "cupy":
        import cupy

        return cupy.cuda.Device(index)
    return contextlib.nullcontext()

"""What the numbers were measured on: device, library versions, git state, time, machine load."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from importlib import metadata

import torch

__all__ = ["describe", "device_name", "load_average"]

# Distribution names whose versions go into every record.
_PACKAGES = ("fastnmf", "torch", "triton", "numpy", "scipy", "scikit-learn", "torchnmf", "nmf-torch", "gensim")


def _versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# The instruction-set extensions that change what a CPU run measures (bf16 GEMMs need avx512_bf16 or AMX:
# without them torch's bfloat16 products are far slower than fp32). VM hosts of one machine kind differ.
_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in _CPU_FLAGS if flag in present]
    except OSError:
        pass
    return []


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{_cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _git(*args: str) -> str | None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def describe(device: torch.device) -> dict:
    """The fields every JSON line carries (the measured limits are added by the caller)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "schema": "fastnmf-bench/1",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_sha": _git("rev-parse", "HEAD"),
        # Uncommitted changes to tracked files: the numbers may not belong to git_sha alone.
        "git_dirty_files": status.splitlines() if status else [],
        "device": device_name(device),
        "device_type": device.type,
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "torch_threads": torch.get_num_threads(),
        "versions": _versions(),
        "load_average_at_start": load_average(),
    }

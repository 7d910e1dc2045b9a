"""Process-wide settings of the host: how the C allocator treats the memory PyTorch frees on the CPU.

A training step or a sampler call allocates and frees the same large activations over and over. By
default glibc's malloc serves blocks above a (growing) threshold with fresh mmap calls and gives
freed memory back to the kernel, so every step touches those pages anew: the kernel zeroes each one
on its first write (a minor page fault) and the step spends part of its time there. `keep_freed_memory()`
tells malloc to serve every block from its heap and never to return the heap's top to the kernel:
after the first step the same memory is reused without faults. The cost is that the process keeps
its peak footprint until it exits, which is what a training or sampling run reaches every step anyway.
Nothing is changed on import; the `kinema` command calls it at start (KINEMA_MALLOC=system opts out).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import platform
import re
import resource
from pathlib import Path
from typing import Optional

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1  # bytes free at the heap top before malloc gives them back
M_MMAP_MAX = -4  # how many blocks may be served by mmap at once (0: none, all from the heap)
_INT_MAX = 2**31 - 1


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse (no mmap per large block, no trimming); False where it cannot."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False  # musl, macOS, Windows: their allocators have no such knobs
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, _INT_MAX))


def minor_page_faults() -> int:
    """Minor page faults of this process so far (pages the kernel mapped in on first touch)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def available_memory(device: str = "cpu") -> Optional[int]:
    """Bytes a new allocation can take on `device` now (Linux MemAvailable within any cgroup limit; CUDA free
    memory); None where it cannot be told."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        free = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    try:  # a container's own limit (cgroup v2)
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            free = min(free, int(limit) - used)
    except (OSError, ValueError):
        pass
    return free


def loader_context(num_workers: int) -> Optional[str]:
    """DataLoader workers' start method: "forkserver" where the platform has it, else its default (None).

    A worker forked from a process whose other threads (video decoders, OpenMP pools) hold a lock at that
    moment can wait on that lock forever; workers started from the fork server's clean process cannot.
    """
    if num_workers > 0 and "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return None


def cpu_bf16_flags() -> str:
    """This CPU's bf16 matrix features as /proc/cpuinfo lists them ("amx_bf16 avx512_bf16", ...); "" if none or
    unknown (no /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return " ".join(sorted(set(re.findall(r"\b(amx_bf16|avx512_bf16)\b", text))))


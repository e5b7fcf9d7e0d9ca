"""CPU memory policies of mask2former.utils.memory (glibc only): "cache" reuses freed large blocks
without page faults, "release" hands them back to the OS at once, "system" leaves glibc alone."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mask2former.utils.memory import CPU_MEMORY_ENV, configure_cpu_memory

_PROBE = textwrap.dedent("""
    import resource
    import numpy as np
    from mask2former.utils.memory import configure_cpu_memory
    mode = configure_cpu_memory()
    def resident_mib():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    def one_pass():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        a = np.ones(64 * 2**20 // 8)  # 64 MiB, freed right away: a model's temporaries
        del a
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    one_pass()  # the first pass always touches fresh memory
    start = resident_mib()
    a = np.ones(256 * 2**20 // 8)  # 256 MiB in 1 MiB pieces, as many tensors would be
    pieces = [a[i * 2**17:(i + 1) * 2**17].copy() for i in range(256)]
    del a, pieces
    print(mode, one_pass(), round(resident_mib() - start))
""")


def _run_probe(env_value):
    env = {CPU_MEMORY_ENV: env_value, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env,
                         cwd=str(Path(__file__).resolve().parents[2]), check=True)
    mode, faults, kept_mib = out.stdout.split()
    return mode, int(faults), int(kept_mib)


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")


@linux_only
def test_cache_reuses_memory_without_page_faults():
    mode, faults, _ = _run_probe("1")
    if mode != "cache":
        pytest.skip("not glibc")
    mode_off, faults_off, _ = _run_probe("0")
    assert mode_off == "system"
    # default glibc: the block is mmap-ed and faulted in again on every pass (in 4 KiB pages,
    # or 2 MiB ones with transparent huge pages: at least 32 faults either way) ...
    assert faults_off >= 32, faults_off
    # ... while with the cache the freed block is simply reused
    assert faults <= 4, faults


@linux_only
def test_release_returns_freed_memory_to_the_os():
    mode, faults, kept_mib = _run_probe("release")
    if mode != "release":
        pytest.skip("not glibc")
    assert faults >= 32, faults  # each large allocation is fresh memory
    assert kept_mib < 64, kept_mib  # the freed 512 MiB (copy + pieces) is no longer resident
    cache_mode, _, cache_kept_mib = _run_probe("cache")
    assert cache_mode == "cache" and cache_kept_mib > 200, cache_kept_mib  # kept for reuse


def test_unknown_policy_names_the_variable(monkeypatch):
    monkeypatch.setenv(CPU_MEMORY_ENV, "lean")
    with pytest.raises(ValueError, match=f"'lean'.*{CPU_MEMORY_ENV}"):
        configure_cpu_memory()
    with pytest.raises(ValueError, match="'fast'.*argument"):
        configure_cpu_memory("fast")

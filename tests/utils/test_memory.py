"""keep_freed_cpu_memory: freed large blocks are reused without new page faults (glibc only)."""
import subprocess
import sys
import textwrap

import pytest

_PROBE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from mask2former.utils.memory import keep_freed_cpu_memory
    applied = keep_freed_cpu_memory()
    def faults_of_one_pass():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        a = np.ones(64 * 2**20 // 8)  # 64 MiB, freed right away: a model's temporaries
        del a
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    faults_of_one_pass()  # the first pass always touches fresh memory
    print(applied, faults_of_one_pass())
""")


def _run_probe(env_value):
    env = {"MASK2FORMER_CPU_MEMORY_CACHE": env_value, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]), check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_second_pass_reuses_memory_without_page_faults():
    applied, faults = _run_probe("1")
    if not applied:
        pytest.skip("not glibc")
    applied_off, faults_off = _run_probe("0")
    assert not applied_off
    # default glibc: the block is mmap-ed and faulted in again on every pass (in 4 KiB pages,
    # or 2 MiB ones with transparent huge pages: at least 32 faults either way) ...
    assert faults_off >= 32, faults_off
    # ... while with the cache the freed block is simply reused
    assert faults <= 4, faults

"""Crafted hostile inputs for the hardening tests (no tests here), built at test time with
real ffmpeg, and the peak-memory measurements those tests make.

- `zeroed_flac`: an hour of silence as FLAC whose STREAMINFO total-samples field is zeroed,
  so ffprobe reports no duration (about 0.5 MB on disk, 330 MB as 48 kHz samples).
- `peak_rss_growth_mb`: how far a running process's peak RSS rose above its RSS during a
  call (the kernel's peak is reset first, through /proc/PID/clear_refs).
- `child_peak_rss_mb`: the peak RSS of one command run to its end (os.wait4's rusage).
"""
from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from pathlib import Path


@functools.lru_cache(maxsize=None)
def zeroed_flac(seconds: int = 3600) -> Path:
    """An hour of 48 kHz silence as FLAC, its length erased from STREAMINFO."""
    folder = Path(tempfile.mkdtemp(prefix="hostile-"))
    plain = folder / "plain.flac"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t",
                    str(seconds), "-c:a", "flac", str(plain)], check=True)
    data = bytearray(plain.read_bytes())
    # "fLaC", a 4-byte block header, then STREAMINFO: total samples are the low 36 bits of
    # bytes 18..25 (after the 20-bit rate, 3-bit channels and 5-bit sample size).
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0
    data[21] &= 0xF0
    data[22:26] = b"\0\0\0\0"
    hidden = folder / "silence-hour.flac"
    hidden.write_bytes(bytes(data))
    plain.unlink()
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                            str(hidden)], capture_output=True, text=True, check=True)
    assert probe.stdout.strip() in ("", "N/A"), probe.stdout  # the length is really hidden
    return hidden


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_rss_growth_mb(pid: int, call) -> tuple[float, object]:
    """(MB the peak RSS of `pid` rose above its RSS before `call()`, what `call()` returned)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = _status_kb(pid, "VmRSS")
    result = call()
    return (_status_kb(pid, "VmHWM") - before) / 1024, result


def child_peak_rss_mb(cmd: list[str], **kwargs) -> tuple[float, int, str]:
    """(peak RSS in MB, exit status, output) of `cmd` run to its end."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return usage.ru_maxrss / 1024, proc.returncode, out.read().decode(errors="replace")

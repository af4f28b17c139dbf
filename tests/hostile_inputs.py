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


def zip_bytes(members: list[tuple[str, bytes | tuple[int, int]]], lie: dict[str, int] | None = None) -> bytes:
    """A zip file built by hand, so that a member can inflate to gigabytes without the test
    compressing gigabytes: a member is (name, bytes) or (name, (size, fill byte)), the latter
    written as one deflate block repeated (a full flush resets the compressor, so each
    block is the same). `lie`: member name -> the size its headers claim instead."""
    import struct
    import zlib

    local, central = bytearray(), bytearray()
    for name, content in members:
        if isinstance(content, bytes):
            packer = zlib.compressobj(9, zlib.DEFLATED, -15)
            data, size, crc = packer.compress(content) + packer.flush(), len(content), zlib.crc32(content)
        else:
            size, fill = content
            chunk = bytes([fill]) * 2**20
            packer = zlib.compressobj(9, zlib.DEFLATED, -15)
            block = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
            assert packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH) == block
            blocks, crc = size // len(chunk), 0
            for _ in range(blocks):
                crc = zlib.crc32(chunk, crc)
            data = block * blocks + packer.flush()
        claimed = (lie or {}).get(name, size)
        raw = name.encode()
        offset = len(local)
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), claimed, len(raw), 0)
        local += raw + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), claimed,
                               len(raw), 0, 0, 0, 0, 0, offset) + raw
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(local), 0)
    return bytes(local + central + end)


def disk_peak_growth_mb(folder: Path, call) -> tuple[float, object]:
    """(the most MB `folder` grew by while `call()` ran, sampled every 20 ms, its result)."""
    import threading

    def used() -> int:
        return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())

    base, peak, done = used(), [0], threading.Event()

    def watch():
        while not done.is_set():
            try:
                peak[0] = max(peak[0], used() - base)
            except OSError:
                pass
            done.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = call()
    finally:
        done.set()
        watcher.join()
    return peak[0] / 2**20, result

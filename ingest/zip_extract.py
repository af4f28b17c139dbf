"""Extracting a voice archive with caps that fit what a voice can be, checked while the
bytes stream out of the zip (never after): a 3 MB zip that inflates to gigabytes is
refused before it costs more than one member's cap of disk, and no member is ever held in
memory whole.

Caps per member, by name: ``manifest.json`` and ``library.json`` 1 MB, text files (the
transcript) 64 KB, anything else (the reference and the original upload) the ingest limit
of 50 MB. Per voice at most `VOICE_MAX_MEMBERS` members and the sum of those caps.
Unsafe names (absolute, with '..', a backslash or NUL) and symbolic links are refused.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable

from ingest.folders import MAX_AUDIO_BYTES, MAX_MANIFEST_BYTES, MAX_TRANSCRIPT_BYTES

MAX_INDEX_BYTES = 1 << 20
VOICE_MAX_MEMBERS = 16  # the voice's files plus what zipping tools add (__MACOSX/...)
VOICE_MAX_BYTES = 2 * MAX_AUDIO_BYTES + MAX_MANIFEST_BYTES + MAX_TRANSCRIPT_BYTES
CHUNK = 1 << 20


def member_cap(name: str) -> int:
    """The most bytes the member `name` may unpack to."""
    base = PurePosixPath(name).name.lower()
    if base in ("manifest.json", "library.json"):
        return max(MAX_MANIFEST_BYTES, MAX_INDEX_BYTES)
    if base.endswith((".txt", ".json")):
        return MAX_TRANSCRIPT_BYTES
    return MAX_AUDIO_BYTES


def check_member_name(member: zipfile.ZipInfo, label: str, error: type[Exception]) -> None:
    name = member.filename
    is_link = (member.external_attr >> 16) & 0o170000 == 0o120000
    if name.startswith("/") or ".." in PurePosixPath(name).parts or "\\" in name or "\x00" in name or is_link:
        raise error(f"{label}: unsafe entry {name!r}")


def extract_capped(zf: zipfile.ZipFile, stage: Path, label: str, *, voices: int, error: type[Exception],
                   what: str, keep: Callable[[str], bool] = lambda name: True) -> None:
    """Extract the members of `zf` that `keep` accepts into `stage`, for an archive of
    `voices` voices; raise `error` (naming `label`) if it cannot be `what` (see module
    docstring). Declared sizes are checked first, real sizes while writing."""
    members = [m for m in zf.infolist() if not m.is_dir()]
    for member in members:
        check_member_name(member, label, error)
    members = [m for m in members if keep(m.filename)]
    total_cap = voices * VOICE_MAX_BYTES + MAX_INDEX_BYTES
    too_big = next((m for m in members if m.file_size > member_cap(m.filename)), None)
    if too_big is not None:
        raise error(f"{label}: {too_big.filename} unpacks to {too_big.file_size / 2**20:.1f} MB, more than "
                    f"{what} holds (at most {member_cap(too_big.filename) // 1024} KB)")
    if len(members) > voices * VOICE_MAX_MEMBERS + 1 or sum(m.file_size for m in members) > total_cap:
        raise error(f"{label} is too large to be {what}")
    written = 0
    for member in members:
        target = stage / member.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        cap, size = member_cap(member.filename), 0
        try:
            with zf.open(member) as src, open(target, "wb") as out:
                while chunk := src.read(CHUNK):
                    size += len(chunk)
                    written += len(chunk)
                    if size > cap or written > total_cap:
                        raise error(f"{label}: {member.filename} unpacks to more than {what} holds")
                    out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
            # e.g. a header that lied about the size: zipfile stops there and the CRC fails
            raise error(f"{label}: {member.filename} is damaged ({str(exc)[:120]})") from None


def open_zip(archive: Path, error: type[Exception], hint: str) -> zipfile.ZipFile:
    """`zipfile.ZipFile(archive)`, or `error` saying it is not a zip (`hint`: what to do)."""
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise error(f"{archive.name} is not a zip file ({exc}){hint}") from None


def read_member(zf: zipfile.ZipFile, name: str, label: str, error: type[Exception]) -> bytes:
    """One small member's bytes (capped like `extract_capped`)."""
    member = zf.getinfo(name)
    check_member_name(member, label, error)
    if member.file_size > member_cap(name):
        raise error(f"{label}: {name} is too large")
    with zf.open(member) as src:
        data = src.read(member_cap(name) + 1)
    if len(data) > member_cap(name):
        raise error(f"{label}: {name} is too large")
    return data


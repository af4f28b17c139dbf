"""Where the library lives on disk, and names that are safe to use there.

Layout of a data directory (everything below it belongs to the library):

    DATA/voices.sqlite3          the database (WAL: plus -wal and -shm files)
    DATA/voices/<id>/reference.wav   processed clip: 24 kHz mono 16-bit PCM
    DATA/voices/<id>/original.<ext>  the upload as received
    DATA/tmp/                    work space of ingests in flight (swept when stale)

The database row is the truth; files are named by voice id, and ids are slugs that can
never leave ``DATA/voices`` (no separators, no dots, no reserved device names).
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from voices_db.errors import InvalidNameError

DATA_DIR_ENV = "VOICE_DATA_DIR"
DEFAULT_DATA_DIR = "data"
DB_FILENAME = "voices.sqlite3"

MAX_ID_LEN = 48
MAX_NAME_LEN = 100
ID_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,46}[a-z0-9])?$")
# Names Windows refuses as file names, plus our own folder names, so an id is always a
# plain folder on every file system the library may be copied to.
RESERVED_IDS = frozenset(
    {"con", "prn", "aux", "nul", "clock", "tmp", "voices"}
    | {f"com{i}" for i in range(10)}
    | {f"lpt{i}" for i in range(10)}
)


def resolve_data_dir(cli_value: str | os.PathLike | None = None, environ=None) -> Path:
    """The data directory: ``--data-dir`` if given, else ``$VOICE_DATA_DIR``, else ``./data``.

    The app and the ingest CLI both call this, so they always agree. The path is made
    absolute (relative to the current directory) but not created.
    """
    environ = os.environ if environ is None else environ
    value = cli_value if cli_value not in (None, "") else environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(value).expanduser().resolve()


def clean_name(name: str) -> str:
    """Validate a display name: trimmed, 1-100 characters, no control characters or NUL."""
    if not isinstance(name, str):
        raise InvalidNameError("the voice name must be text")
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise InvalidNameError("the voice name is empty")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidNameError("the voice name contains control characters (such as NUL or a line break)")
    if len(name) > MAX_NAME_LEN:
        raise InvalidNameError(f"the voice name is longer than {MAX_NAME_LEN} characters")
    return name


def slugify(name: str) -> str:
    """A path-safe id stem from a display name: ``"Ada Lovelace!"`` -> ``"ada-lovelace"``.

    Accents are folded to ASCII; everything else that is not a letter or digit becomes a
    hyphen. Names with no ASCII letters or digits fall back to ``"voice"``; reserved names
    get a ``-voice`` suffix. Uniqueness (``-2``, ``-3``...) is the store's job.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    slug = slug[: MAX_ID_LEN - 4].strip("-") or "voice"  # leave room for a "-NNN" suffix
    if slug in RESERVED_IDS:
        slug = f"{slug}-voice"
    return slug


def validate_voice_id(voice_id: str) -> str:
    """Return ``voice_id`` if it is a safe slug, else raise ``InvalidNameError``."""
    if not isinstance(voice_id, str) or not ID_PATTERN.match(voice_id) or voice_id in RESERVED_IDS:
        raise InvalidNameError(
            f"invalid voice id {voice_id!r}: use 1-{MAX_ID_LEN} lowercase letters, digits, "
            "'-' or '_', starting and ending with a letter or digit (not a reserved name)"
        )
    return voice_id


@dataclass(frozen=True)
class DataLayout:
    """Paths inside one data directory."""

    root: Path

    @property
    def db_path(self) -> Path:
        return self.root / DB_FILENAME

    @property
    def voices_dir(self) -> Path:
        return self.root / "voices"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    def voice_dir(self, voice_id: str) -> Path:
        """The folder of one voice; refuses any id that is not a safe slug."""
        path = self.voices_dir / validate_voice_id(voice_id)
        # Belt and braces: the slug rule already forbids separators and dots.
        if path.resolve().parent != self.voices_dir.resolve():
            raise InvalidNameError(f"voice id {voice_id!r} escapes the data directory")
        return path

    def resolve(self, relative: str) -> Path:
        """Absolute path of a file recorded in the database (relative to the root)."""
        path = (self.root / relative).resolve()
        if self.root.resolve() not in path.parents:
            raise InvalidNameError(f"stored path {relative!r} escapes the data directory")
        return path

    def ensure(self) -> None:
        """Create the directory tree (idempotent)."""
        for folder in (self.root, self.voices_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)

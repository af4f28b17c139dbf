"""Errors of the voice library. Every message is meant to be shown to a person as is."""


class LibraryError(Exception):
    """Base class of every voice-library error."""


class InvalidNameError(LibraryError, ValueError):
    """A voice name or id that is empty, too long, or unsafe as a path."""


class VoiceNotFoundError(LibraryError, KeyError):
    """No voice with the requested id."""

    def __init__(self, voice_id: str):
        super().__init__(f"no voice with id {voice_id!r}")
        self.voice_id = voice_id

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return self.args[0]


class DuplicateVoiceError(LibraryError):
    """A voice with this id already exists (imports that must not overwrite)."""


class ConflictError(LibraryError):
    """The voice was changed by someone else since it was read (optimistic check failed)."""


class DatabaseTooNewError(LibraryError):
    """The database was written by a newer version of the studio than this one."""


class CorruptLibraryError(LibraryError):
    """A stored file no longer matches its database row, or an archive is malformed."""


class InvalidArchiveError(CorruptLibraryError):
    """A voice folder, manifest or archive given to the studio is malformed or too large:
    the caller's input is at fault (an HTTP 4xx), not the stored library."""

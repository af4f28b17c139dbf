"""Why an ingest was refused. Each error has a stable ``code`` (for the API) and a message
a person can act on (for the UI and the CLI)."""

from voices_db.errors import LibraryError


class IngestError(LibraryError):
    """Base class: the clip was refused, and nothing was stored."""

    code = "ingest_failed"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotAudioError(IngestError):
    code = "not_audio"


class FileTooLargeError(IngestError):
    code = "too_large"


class TooLongError(IngestError):
    code = "too_long"


class EmptyAudioError(IngestError):
    code = "empty"


class SilentAudioError(IngestError):
    code = "silence"


class NoSpeechError(IngestError):
    code = "no_speech"


class TooLittleSpeechError(IngestError):
    code = "too_short"


class TranscriptNeededError(IngestError):
    """Whisper cannot give a trustworthy transcript (e.g. only the English model is at
    hand and the clip is in another language): the user must type it."""

    code = "transcript_needed"

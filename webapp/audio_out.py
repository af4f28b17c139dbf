"""Audio leaving the server: PCM encoding and resampling for streams, WAV headers, and
ffmpeg encoders (mp3, flac, opus, aac) that turn a PCM stream into a file as it arrives.

Resampling is stateful (`soxr.ResampleStream`): chunks resampled one by one join without
seams, exactly like resampling the whole utterance at once.
"""
from __future__ import annotations

import asyncio
import struct

import numpy as np
import soxr

MODEL_RATE = 24000
ENCODINGS = ("pcm16", "pcm32f")
MIN_RATE, MAX_RATE = 8000, 192000


def to_float32(pcm) -> np.ndarray:
    """A chunk's samples (numpy array or torch tensor, any float/int16 dtype) -> float32 [N]."""
    if hasattr(pcm, "detach"):
        pcm = pcm.detach().to("cpu").float().numpy()
    pcm = np.asarray(pcm)
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    return np.ascontiguousarray(pcm.reshape(-1), dtype=np.float32)


def float_to_pcm16_bytes(wav: np.ndarray) -> bytes:
    """float32 in [-1, 1] -> little-endian int16 bytes (rounded, clipped)."""
    return np.clip(np.round(wav * 32767.0), -32768, 32767).astype("<i2").tobytes()


class PcmEncoder:
    """Turns 24 kHz float chunks into the bytes a client asked for (rate and encoding).

    One encoder per utterance: `encode(chunk)` for each chunk, then `flush()` for the
    resampler's tail. `samples_out` counts samples at the output rate.
    """

    def __init__(self, sample_rate: int = MODEL_RATE, encoding: str = "pcm16", source_rate: int = MODEL_RATE):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        self.sample_rate, self.encoding = int(sample_rate), encoding
        self._stream = (soxr.ResampleStream(source_rate, self.sample_rate, 1, dtype="float32", quality="HQ")
                        if self.sample_rate != source_rate else None)
        self.samples_out = 0

    def encode(self, pcm) -> bytes:
        wav = to_float32(pcm)
        if self._stream is not None:
            wav = self._stream.resample_chunk(wav)
        return self._pack(wav)

    def flush(self) -> bytes:
        if self._stream is None:
            return b""
        return self._pack(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))

    def _pack(self, wav: np.ndarray) -> bytes:
        self.samples_out += len(wav)
        if self.encoding == "pcm32f":
            return np.ascontiguousarray(wav, dtype="<f4").tobytes()
        return float_to_pcm16_bytes(wav)


def wav_header(sample_rate: int, num_samples: int | None = None, bits: int = 16) -> bytes:
    """A RIFF/WAVE header for mono PCM; `num_samples=None` marks a stream of unknown length
    (sizes set to the maximum, which ffmpeg, browsers and most players accept)."""
    block = bits // 8
    data = 0xFFFFFFFF - 36 if num_samples is None else num_samples * block
    riff = 0xFFFFFFFF if num_samples is None else 36 + data
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * block, block, bits) +
            b"data" + struct.pack("<I", data))


# response_format -> (ffmpeg output args, media type)
FFMPEG_FORMATS = {
    "mp3": (["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"], "audio/mpeg"),
    "flac": (["-c:a", "flac", "-f", "flac"], "audio/flac"),
    "opus": (["-c:a", "libopus", "-b:a", "64k", "-page_duration", "100000", "-f", "ogg"], "audio/ogg"),
    "aac": (["-c:a", "aac", "-b:a", "128k", "-f", "adts"], "audio/aac"),
}


class FfmpegStream:
    """An ffmpeg process encoding s16le mono PCM from stdin to a container on stdout.

    Use `write(bytes)` as PCM arrives, `close_input()` at the end, and iterate `read()`
    for the encoded bytes; `kill()` on abort.
    """

    def __init__(self, fmt: str, sample_rate: int = MODEL_RATE):
        self.fmt, self.sample_rate = fmt, sample_rate
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> "FfmpegStream":
        args, _ = FFMPEG_FORMATS[self.fmt]
        self.proc = await asyncio.create_subprocess_exec(
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "s16le", "-ar", str(self.sample_rate),
            "-ac", "1", "-i", "pipe:0", *args, "pipe:1",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return self

    async def write(self, data: bytes) -> None:
        if data:
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()

    async def close_input(self) -> None:
        if not self.proc.stdin.is_closing():
            self.proc.stdin.close()

    async def read(self, size: int = 16384) -> bytes:
        return await self.proc.stdout.read(size)

    async def finish(self) -> tuple[int, str]:
        """Wait for ffmpeg to exit; (return code, its error output)."""
        err = await self.proc.stderr.read()
        return await self.proc.wait(), err.decode(errors="replace").strip()

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass

"""BatchEngine: synthesis requests as rows of one batched step.

A request (`engine.streaming.RequestPlan`) becomes an `Utterance` that holds one slot for its
whole life: its segments are generated one after the other in that slot (a fresh talker run
and a fresh codec stream each, as `engine.streaming` describes), its frames are decoded in
chunks (the first after `first_chunk_frames`, then every `chunk_frames`), and its chunks
queue up for the consumer. `tick()` advances every utterance by one frame: one prefill chunk
for a joining row, one `decode_step` for all live rows, one codec call per chunk size.

The worker runs one engine with all its slots; `engine.streaming.stream_steps` runs a
private one-slot engine, so a request alone goes through exactly the same code.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
import torch

from engine.batch.codec import CodecRows
from engine.batch.generator import EOS, LIMIT, BatchGenerator, PrefixCache
from engine.errors import InvalidParameterError
from engine.metrics import RequestMetrics, StopReason
from engine.text_split import length_guard_frames

_STOP = {EOS: StopReason.EOS}


def segment_seed(seed: int, index: int) -> int:
    """Segment k samples with seed + k (segment 0 is exactly `generate_codes` with the seed)."""
    return (seed + index) % 2**63


class Utterance:
    """One request's progress (owned by its engine; the consumer reads `chunks`)."""

    def __init__(self, plan, sampling, slot: int, cancel: threading.Event, metrics: RequestMetrics,
                 sample_rate: int):
        self.plan, self.sampling, self.slot = plan, sampling, slot
        self.cancel, self.metrics, self.sample_rate = cancel, metrics, sample_rate
        self.seed = sampling.resolve_seed()
        self.segment = -1  # index of the segment being generated
        self.row = None  # its generator row
        self.limit = 0
        self.at_limit = StopReason.MAX_TOKENS
        self.pending: list[torch.Tensor] = []
        self.need = plan.first_chunk_frames
        self.chunks: deque = deque()  # AudioChunks ready for the consumer
        self.error: BaseException | None = None
        self.done = False
        self.frames_out = self.samples_out = 0
        ref = getattr(plan.voice, "ref_codes", None) if getattr(plan.voice, "mode", None) == "icl" else None
        self.ref_codes = ref

    def emit(self, pcm: np.ndarray, frames: int, pause: bool = False) -> None:
        from engine.streaming import AudioChunk

        self.chunks.append(AudioChunk(pcm=pcm, sample_rate=self.sample_rate, frame_index=self.frames_out,
                                      num_frames=frames, segment_index=max(self.segment, 0),
                                      start_s=self.samples_out / self.sample_rate,
                                      elapsed_s=time.perf_counter() - self.metrics.submitted_at, is_pause=pause))
        self.metrics.mark_audio(frames, pcm.shape[0] / self.sample_rate)
        self.frames_out += frames
        self.samples_out += pcm.shape[0]


class BatchEngine:
    """slots: most requests at once; capacity: talker positions per slot (prompt + frames).
    private: a single-request engine that grows its pool to fit (`stream_steps`)."""

    def __init__(self, model, *, slots: int, capacity: int, private: bool = False):
        self.model, self.private = model, private
        self.eos_id = model.config.talker.codec_eos_id
        self.gen = BatchGenerator(model.talker, model.predictor, self.eos_id, slots=slots, capacity=capacity,
                                  prefix_cache=PrefixCache(0 if private else 16))
        self.codec = CodecRows(model.codec_decoder, slots, primed_entries=1 if private else 16)
        self.sample_rate = int(getattr(model.codec_config, "output_sample_rate", 24000))
        self.utterances: list[Utterance | None] = [None] * slots

    @property
    def slots(self) -> int:
        return self.gen.slots

    @property
    def free_slots(self) -> int:
        return sum(u is None for u in self.utterances)

    def start(self, plan, cancel: threading.Event, metrics: RequestMetrics) -> Utterance:
        """Take the lowest free slot for `plan`; raises InvalidParameterError if none is free."""
        slot = next((i for i, u in enumerate(self.utterances) if u is None), None)
        if slot is None:
            raise InvalidParameterError("no free synthesis slot")
        metrics.text_chars, metrics.segments = len(plan.text), len(plan.segments)
        if metrics.started_at is None:
            metrics.mark_started()
        sampling = plan.sampling or self.model.default_sampling()
        utt = Utterance(plan, sampling, slot, cancel, metrics, self.sample_rate)
        if sampling.do_sample or sampling.subtalker_do_sample:
            metrics.seed = utt.seed  # reported, so that a sampled run can be repeated
        self.utterances[slot] = utt
        return utt

    def release(self, utt: Utterance) -> None:
        """Drop the utterance now (the consumer went away or cancelled); frees its slot."""
        if not utt.done:
            self._finish(utt, StopReason.CANCELLED)

    # ---- one frame for everyone ---------------------------------------------------------
    def tick(self) -> list[Utterance]:
        """Advance every utterance by one frame. Returns the utterances that have new chunks
        or ended (done: finished, cancelled, or failed with `error`)."""
        touched = []
        for utt in self._live():
            if utt.cancel.is_set():
                self._finish(utt, StopReason.CANCELLED)
                touched.append(utt)
            elif utt.row is None:
                self._next_segment(utt)  # may finish it (last segment done) or fail it
                if utt.done:
                    touched.append(utt)
        rows = self.gen.step()
        due: dict[int, list[torch.Tensor]] = {}
        for row in rows:
            utt = self.utterances[row.slot]
            if utt is None or utt.row is not row:
                continue
            utt.pending.extend(row.codes)
            row.codes.clear()
            if utt.pending and (len(utt.pending) >= utt.need or row.done):
                due[utt.slot] = utt.pending
        if due:
            for slot, pcm in self.codec.decode(due).items():
                utt = self.utterances[slot]
                utt.emit(pcm, len(utt.pending))
                utt.pending, utt.need = [], utt.plan.chunk_frames
                touched.append(utt)
        for row in rows:
            utt = self.utterances[row.slot]
            if utt is not None and utt.row is row and row.done:
                reason = _STOP.get(row.stop, utt.at_limit if row.stop == LIMIT else StopReason.CANCELLED)
                utt.metrics.mark_segment(reason)
                utt.row = None
                if utt.segment == len(utt.plan.segments) - 1:
                    self._finish(utt, None)
                touched.append(utt)
        return list(dict.fromkeys(touched))

    def _live(self) -> list[Utterance]:
        return [u for u in self.utterances if u is not None and not u.done]

    def _next_segment(self, utt: Utterance) -> None:
        plan = utt.plan
        index = utt.segment + 1
        if index >= len(plan.segments):
            self._finish(utt, None)
            return
        utt.segment = index
        try:
            if index and plan.segment_pause_s > 0:
                utt.emit(np.zeros(int(round(plan.segment_pause_s * self.sample_rate)), dtype=np.float32), 0, pause=True)
            text = plan.segments[index]
            guard = length_guard_frames(text) if plan.length_guard else None
            cap = utt.sampling.max_new_tokens
            utt.limit = cap if guard is None else min(guard, cap)
            utt.at_limit = StopReason.LENGTH_GUARD if guard is not None and guard < cap else StopReason.MAX_TOKENS
            prompt = self.model.build_prompt(text, plan.voice, plan.language)
            if self.private:
                self.gen.reserve(max(prompt.embeds.shape[1] + utt.limit, prompt.trailing.shape[1] + 1))
            params = utt.sampling.replace(max_new_tokens=utt.limit)
            utt.row = self.gen.add(prompt, params, utt.limit, seed=segment_seed(utt.seed, index), slot=utt.slot)
            self.codec.start(utt.slot, utt.ref_codes)
            utt.pending, utt.need = [], plan.first_chunk_frames
        except Exception as e:  # noqa: BLE001 - a bad request fails alone
            utt.error = e
            self._finish(utt, StopReason.ERROR)

    def _finish(self, utt: Utterance, reason: StopReason | None) -> None:
        if utt.row is not None and reason is StopReason.CANCELLED:
            utt.metrics.mark_segment(reason)  # the segment in progress ends here
        if utt.row is not None:
            self.gen.release(utt.row)
            utt.row = None
        utt.done = True
        utt.metrics.finish(StopReason.CANCELLED if utt.cancel.is_set() and reason is None else reason)
        # the slot is freed by release() once the consumer has taken the chunks (the worker
        # or stream_steps calls it right away: chunks live on the utterance, not the slot)
        if self.utterances[utt.slot] is utt:
            self.utterances[utt.slot] = None

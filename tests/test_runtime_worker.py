"""The device worker serving the tiny checkpoint: 8 concurrent sessions with correct audio and
fair progress, cancellation within one frame from another thread, a failing request that
fails alone, asyncio consumers."""
import asyncio

import numpy as np
import pytest
import torch

from engine.errors import InvalidParameterError
from engine.metrics import StopReason
from engine.sampling import SamplingParams
from engine.streaming import stream
from engine.voice_prompt import VoicePrompt
from engine.worker import EngineWorker
from runtime_helpers import tiny_model, voice

TEXTS = ["Hello there.", "Good morning to you!", "今天天气很好。", "こんにちは、元気ですか？",
         "How are you today?", "Bonjour, ça va ?", "Guten Tag!", "The quick brown fox."]


def solo(model, text, **kwargs):
    return np.concatenate([c.pcm for c in stream(model, text, **kwargs)])


def test_eight_sessions_complete_with_correct_audio_and_fair_progress():
    model = tiny_model("a")
    prompts = [voice("a", "icl"), voice("a", "xvector")]
    requests = [dict(voice=prompts[i % 2], language="auto", chunk_frames=1,
                     sampling=SamplingParams(seed=100 + i, min_new_tokens=10, max_new_tokens=10))
                for i in range(8)]
    worker = EngineWorker(model, device="cpu", max_active=8)
    handles = [worker.session(f"s{i}").speak(text, **kw) for i, (text, kw) in enumerate(zip(TEXTS, requests))]
    assert [h.position for h in handles] == list(range(1, 9))
    with worker:
        results = [list(h) for h in handles]
    for text, kw, h, chunks in zip(TEXTS, requests, handles, results):
        assert h.state == "done" and h.metrics.stop_reason is StopReason.MAX_TOKENS
        np.testing.assert_allclose(np.concatenate([c.pcm for c in chunks]), solo(model, text, **kw), atol=1e-5,
                                   rtol=0)
        assert len(chunks) == 10
    # round-robin, one frame per session per round: every session's k-th chunk is ready
    # before any session's (k+1)-th
    for a in results:
        for b in results:
            for k in range(9):
                assert a[k].elapsed_s <= b[k + 1].elapsed_s


def test_cancel_from_another_thread_stops_within_one_frame():
    model = tiny_model("a")
    steps = []  # one talker forward per decoded frame (and one per prefill chunk): observation only
    hook = model.talker.codec_head.register_forward_hook(lambda *args: steps.append(1))
    try:
        with EngineWorker(model, device="cpu") as worker:
            handle = worker.session().speak("This sentence is long enough to keep going for a while.",
                                            sampling=SamplingParams(seed=4, min_new_tokens=400, max_new_tokens=400),
                                            chunk_frames=1, split=False)
            received = 0
            for _ in handle:
                received += 1
                if received == 5:  # this (consumer) thread cancels while the worker thread generates
                    handle.cancel()
                    at_cancel = len(steps)
            assert len(steps) <= at_cancel + 1  # at most the frame that was in flight
            assert handle.state == "cancelled" and handle.metrics.stop_reason is StopReason.CANCELLED
            # the worker is free again
            ok = worker.session().speak("Hello there.", sampling=SamplingParams(seed=1, max_new_tokens=3))
            assert sum(c.num_frames for c in ok) == 3
    finally:
        hook.remove()


def test_a_request_that_raises_inside_the_worker_fails_alone():
    model = tiny_model("a")
    good = voice("a", "xvector")
    wrong_width = VoicePrompt(xvector=torch.zeros(7), ref_codes=None, ref_text=None, mode="xvector",
                              model_id=model.model_id)
    kw = dict(sampling=SamplingParams(seed=8, min_new_tokens=6, max_new_tokens=6), chunk_frames=2)
    with EngineWorker(model, device="cpu", max_active=3) as worker:
        ok1 = worker.session().speak("First request.", voice=good, **kw)
        bad = worker.session().speak("Broken request.", voice=wrong_width, **kw)
        ok2 = worker.session().speak("Third request.", voice=good, **kw)
        with pytest.raises(InvalidParameterError, match="xvector"):
            list(bad)
        assert bad.state == "failed" and bad.metrics.stop_reason is StopReason.ERROR
        for h, text in ((ok1, "First request."), (ok2, "Third request.")):
            np.testing.assert_allclose(np.concatenate([c.pcm for c in h]), solo(model, text, voice=good, **kw),
                                       atol=1e-5, rtol=0)
        assert worker.state == "ready"


def test_asyncio_sessions():
    model = tiny_model("a")
    kw = dict(sampling=SamplingParams(seed=3, min_new_tokens=4, max_new_tokens=4))

    async def speak(session, text):
        return [c async for c in session.speak(text, **kw)]

    async def main(worker):
        return await asyncio.gather(*(speak(worker.session(), t) for t in TEXTS[:3]))

    with EngineWorker(model, device="cpu", max_active=3) as worker:
        results = asyncio.run(main(worker))
    for text, chunks in zip(TEXTS, results):
        np.testing.assert_allclose(np.concatenate([c.pcm for c in chunks]), solo(model, text, **kw), atol=1e-5,
                                   rtol=0)

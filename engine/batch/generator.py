"""BatchGenerator: rows join and leave a running batch; one step advances them all.

Host side of the batched decode (the device side is `step.decode_step`):
- `add` takes a slot (the lowest free one, so live rows stay packed at the front and the
  batch bucket stays small), writes the row's sampling settings and text rows into the pool,
  and queues its prefill.
- `step` runs about one chunk's worth of prefill (oldest joining rows first; everything
  when no row is live), so a long prompt never stalls the live rows for more than about one
  frame, then one decode step for every live row, and reads the step's codes back: the one
  host sync per frame.
- A row leaves on EOS, at its frame limit, or when released (cancel); its slot is reused.

Prefill chunks are a function of the prompt alone (`_chunks`): the same request is computed
the same way alone or in any batch. With an ICL voice, the prompt rows that do not depend on
the text to speak (role, codec tags, x-vector, the reference transcript zipped with the
reference frames; `TalkerPrompt.shared_prefix`) are one chunk, whose keys and values are
kept (`PrefixCache`) so that the voice's next request starts after them.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import torch

from engine.batch.graphs import StepRunner
from engine.batch.pool import DecodePool
from engine.errors import InvalidParameterError
from engine.prompt import TalkerPrompt
from engine.sampling import SamplingParams

EOS, LIMIT, RELEASED = "eos", "limit", "released"


def batch_buckets(slots: int) -> list[int]:
    """Batch sizes a step is built for: powers of two below `slots`, and `slots`."""
    sizes, b = [], 1
    while b < slots:
        sizes.append(b)
        b *= 2
    return sizes + [slots]


def default_granule(device) -> int:
    """Length bucket step (attention reads [0, L) with L a multiple of it): small on CPU,
    where attention over masked keys costs time; larger on CUDA, where each L is a graph."""
    return 256 if torch.device(device).type == "cuda" else 32


def default_prefill_chunk(device) -> int:
    """Prompt rows per prefill chunk: about one frame's time of the batch on this device."""
    return 512 if torch.device(device).type == "cuda" else 32


@dataclass(eq=False)
class Row:
    """One request's place in the batch (a generation of one text segment)."""

    slot: int
    prompt: TalkerPrompt
    limit: int  # most frames
    seed: int
    chunks: deque  # prefill chunks (start, end) still to run
    prefix_key: bytes | None = None
    pos: int = 0  # host copy of pool.pos[slot]
    frames: int = 0
    live: bool = False  # prefilled: decoding
    stop: str | None = None  # EOS | LIMIT | RELEASED once ended
    codes: list = field(default_factory=list)  # frames not yet taken by the consumer

    @property
    def done(self) -> bool:
        return self.stop is not None


class PrefixCache:
    """Talker keys/values of shared prompt prefixes (an ICL voice's reference), least
    recently used evicted first. Entries are [n_layers] of [1, H_kv, P, D]."""

    def __init__(self, entries: int = 16):
        self.entries = entries
        self._items: OrderedDict[bytes, tuple[list, list]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: bytes):
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        return item

    def put(self, key: bytes, k: list, v: list) -> None:
        self._items[key] = (k, v)
        self._items.move_to_end(key)
        while len(self._items) > self.entries:
            self._items.popitem(last=False)


def _chunks(n_prompt: int, prefix: int, size: int) -> deque:
    """Prefill chunks: [0, prefix) when there is a shared prefix, then `size`-row chunks."""
    bounds = [0, prefix] if prefix else [0]
    while bounds[-1] < n_prompt:
        bounds.append(min(bounds[-1] + size, n_prompt))
    return deque(zip(bounds[:-1], bounds[1:]))


def _round_up(n: int, granule: int) -> int:
    return -(-n // granule) * granule


class BatchGenerator:
    """slots rows of at most `capacity` positions each (a row's frame limit is cut to what its
    slot holds; `grow` enlarges a private single-request pool, a worker's is sized once)."""

    def __init__(self, talker, predictor, eos_id: int, *, slots: int, capacity: int, granule: int | None = None,
                 prefill_chunk: int | None = None, use_graphs: bool = True,
                 prefix_cache: PrefixCache | None = None):
        self.pool = DecodePool(talker, predictor, slots=slots, capacity=capacity, eos_id=eos_id)
        device = self.pool.device
        self.granule = granule or default_granule(device)
        self.prefill_chunk = prefill_chunk or default_prefill_chunk(device)
        self.buckets = batch_buckets(slots)
        self.runner = StepRunner(self.pool, use_graphs=use_graphs)
        self.prefixes = prefix_cache if prefix_cache is not None else PrefixCache()
        self.rows: list[Row | None] = [None] * slots
        self._joining: deque[Row] = deque()

    @property
    def slots(self) -> int:
        return self.pool.slots

    @property
    def free_slots(self) -> int:
        return sum(r is None for r in self.rows)

    @property
    def live_rows(self) -> int:
        return sum(r is not None for r in self.rows)

    def reserve(self, capacity: int) -> None:
        """At least `capacity` positions per row (a private pool; see the class)."""
        if capacity > self.pool.capacity:
            self.pool.grow(capacity)
            self.runner.reset()

    def grow(self, row: Row, frames: int) -> None:
        """Make room for `row` to reach `frames` frames (a private pool; see the class)."""
        self.reserve(max(row.prompt.embeds.shape[1] + frames, 2 * self.pool.capacity))
        row.limit = frames

    # ---- joining ------------------------------------------------------------------------
    def add(self, prompt: TalkerPrompt, params: SamplingParams, limit: int, seed: int | None = None,
            slot: int | None = None) -> Row:
        """Queue a generation of at most `limit` frames in `slot` (default: the lowest free
        one); raises InvalidParameterError when the slot is taken or the prompt leaves no room
        (the caller admits only what fits)."""
        if slot is None:
            slot = next((i for i, r in enumerate(self.rows) if r is None), None)
        if slot is None or self.rows[slot] is not None:
            raise InvalidParameterError("no free decode slot")
        pool = self.pool
        n_prompt, n_text = prompt.embeds.shape[1], prompt.trailing.shape[1]
        room = pool.capacity - n_prompt
        if room < 1 or n_text + 1 > pool.capacity:
            raise InvalidParameterError(f"the prompt ({n_prompt} rows) does not fit the decode context of "
                                        f"{pool.capacity} positions; use a shorter text or reference")
        seed = params.resolve_seed() if seed is None else seed
        prefix = prompt.shared_prefix
        row = Row(slot=slot, prompt=prompt, limit=min(limit, room), seed=seed,
                  chunks=_chunks(n_prompt, prefix, self.prefill_chunk))
        pool.sampling.set_row(slot, params, seed)
        pool.trailing[slot, :n_text] = prompt.trailing[0]
        pool.trailing[slot, n_text] = prompt.pad[0, 0]
        pool.n_trailing[slot] = n_text
        pool.seen[slot] = False
        pool.steps[slot] = 0
        pool.active[slot] = False
        if prefix:
            row.prefix_key = hashlib.sha256(prompt.embeds[0, :prefix].float().cpu().numpy().tobytes()).digest()
            cached = self.prefixes.get(row.prefix_key)
            if cached is not None:  # the voice's reference is already in a cache: start after it
                for dst, src in zip(pool.k + pool.v, cached[0] + cached[1]):
                    dst[slot:slot + 1, :, :prefix] = src
                row.chunks.popleft()
                row.pos = prefix
        pool.pos[slot] = row.pos
        self.rows[slot] = row
        self._joining.append(row)
        return row

    def release(self, row: Row) -> None:
        """Free the row's slot now (cancel or done); its frames not yet taken are dropped."""
        if self.rows[row.slot] is row:
            self.rows[row.slot] = None
            self.pool.active[row.slot] = False
            self.pool.pos[row.slot] = 0
        if row in self._joining:
            self._joining.remove(row)
        if row.stop is None:
            row.stop = RELEASED

    def prefill(self, row: Row) -> torch.Tensor:
        """Run all of a joining row's prefill now; returns its codebook-0 logits [V] (float32)."""
        while row.chunks:
            self._prefill_chunk(row)
        return self.pool.logits[row.slot]

    @torch.inference_mode()
    def _prefill_chunk(self, row: Row) -> None:
        pool, (start, end) = self.pool, row.chunks.popleft()
        x = row.prompt.embeds[:, start:end]
        length = min(_round_up(end, self.granule), pool.capacity)
        write = pool.positions[start:end]
        mask = (pool.positions[:length][None, :] <= write[:, None])[None, None]  # [1, 1, T, length]
        k, v = pool.row_views(row.slot, length)
        h = pool.talker.decoder(x, pool.cos[start:end], pool.sin[start:end], k, v, write[None], mask)
        row.pos = end
        pool.pos[row.slot] = end  # other rows' steps write this row's cache here: the next chunk's first slot
        if row.prefix_key is not None and start == 0:
            P = end
            self.prefixes.put(row.prefix_key, [c[row.slot:row.slot + 1, :, :P].clone() for c in pool.k],
                              [c[row.slot:row.slot + 1, :, :P].clone() for c in pool.v])
        if not row.chunks:
            last = h[:, -1]
            pool.hidden[row.slot] = last[0]
            pool.logits[row.slot] = pool.talker.codec_head(last)[0].float()
            pool.active[row.slot] = True
            row.live = True
            self._joining.remove(row)

    def _prefill(self) -> None:
        """Prefill joining rows: with no row live, all of them (nobody waits); else about one
        chunk's worth of prompt rows, oldest first, so live rows lose about a frame."""
        idle = not any(r is not None and r.live for r in self.rows)
        budget = self.prefill_chunk
        while self._joining and (idle or budget > 0):
            row = self._joining[0]
            start, end = row.chunks[0]
            budget -= end - start
            self._prefill_chunk(row)

    # ---- stepping -----------------------------------------------------------------------
    def step(self) -> list[Row]:
        """One prefill chunk (if a row is joining), then one frame for every live row.
        Returns the rows that got a frame (appended to row.codes) or ended (row.stop)."""
        self._prefill()
        live = [r for r in self.rows if r is not None and r.live]
        if not live:
            return []
        top = max(r.slot for r in live) + 1
        B = next(b for b in self.buckets if b >= top)
        in_bucket = [r for r in self.rows[:B] if r is not None]
        L = min(_round_up(max(r.pos for r in in_bucket) + 1, self.granule), self.pool.capacity)
        self.runner(B, L)
        codes = self.pool.codes[:B].to("cpu", copy=True)  # the one host sync of the step
        eos = self.pool.eos_id
        for row in live:
            frame = codes[row.slot]
            row.pos += 1
            if int(frame[0]) == eos:
                row.stop = EOS
            else:
                row.frames += 1
                row.codes.append(frame)
                if row.frames >= row.limit:
                    row.stop = LIMIT
            if row.stop is not None:
                self.release(row)
        return live

"""The batched decode engine: every live stream of a worker advances in one forward pass.

    pool.py       DecodePool: the preallocated per-slot state (KV caches, positions, sampling rows)
    step.py       decode_step: one frame for every row of a batch bucket, static shapes, no host sync
    graphs.py     StepRunner: runs decode_step eagerly, or replays a CUDA graph per bucket
    generator.py  BatchGenerator: admission, chunked prefill, prefix cache, one step for all rows
    codec.py      CodecRows: the streaming codec decoder state of every slot, decoded in one call
    engine.py     BatchEngine: requests (segments, chunks, pauses, metrics) on top of the above
"""

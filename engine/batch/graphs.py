"""StepRunner: runs `decode_step` for a (batch, length) bucket, eagerly or as a CUDA graph.

On CUDA a batch-1 eager step is launch-bound (about 100 module calls and thousands of kernel
launches per frame); each bucket's step reads and writes only the pool's preallocated
buffers, so it can be captured once and replayed every frame with no input copies. Graphs
share one memory pool. If capture fails (an op that cannot be captured, a driver without
graph support), the runner logs why and stays eager. On CPU it always runs eagerly.
"""
from __future__ import annotations

import logging
import os

import torch

from engine.batch.pool import DecodePool
from engine.batch.step import decode_step

log = logging.getLogger(__name__)


class StepRunner:
    def __init__(self, pool: DecodePool, use_graphs: bool = True):
        self.pool = pool
        self.use_graphs = (use_graphs and pool.device.type == "cuda"
                           and os.environ.get("TTS_CUDA_GRAPHS", "1") not in ("0", "false", "off"))
        self.graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}
        self.fallback_reason: str | None = None
        self._mempool = None

    def reset(self) -> None:
        """Forget captured graphs (the pool's buffers were reallocated)."""
        self.graphs.clear()

    @torch.inference_mode()
    def __call__(self, B: int, L: int) -> None:
        if not self.use_graphs:
            decode_step(self.pool, B, L)
            return
        graph = self.graphs.get((B, L))
        if graph is None:
            graph = self._capture(B, L)
            if graph is None:
                decode_step(self.pool, B, L)
                return
        graph.replay()

    def _capture(self, B: int, L: int):
        pool = self.pool
        # Warm-up and capture must not move any row on: run them with no row active (writes
        # then land only where the next real step writes again), then restore.
        active = pool.active.clone()
        try:
            pool.active.zero_()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                decode_step(pool, B, L)  # warm-up: lazy kernel initialisation outside the graph
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            if self._mempool is None:
                self._mempool = torch.cuda.graph_pool_handle()
            with torch.cuda.graph(graph, pool=self._mempool):
                decode_step(pool, B, L)
        except Exception as e:  # noqa: BLE001 - any capture failure falls back to eager
            self.use_graphs = False
            self.fallback_reason = f"{type(e).__name__}: {e}"
            log.warning("CUDA graph capture of the decode step failed (B=%d, L=%d); running eagerly: %s",
                        B, L, self.fallback_reason)
            self.graphs.clear()
            return None
        finally:
            pool.active.copy_(active)
        self.graphs[(B, L)] = graph
        return graph

"""One decode step for every row of a batch bucket: static shapes, no host sync.

`decode_step(pool, B, L)` reads and writes the DecodePool's buffers only: for rows [0, B) it
samples codebook 0 from the logits the previous step (or the prefill) left, predicts
codebooks 1..15 with the code predictor, feeds the frame (plus the row's next text row) to
the talker at each row's own position, and leaves the new logits for the next step. L is a
length bucket: attention reads cache positions [0, L) under a per-row mask. B and L are the
only Python values in the step, and they are fixed per bucket, so one bucket's step is one
graph (torch.compile / CUDA graph) that is the same every frame.

Rows that are not `active` (free slots, or a request still prefilling) run along and their
results are discarded: every commit is a `torch.where` on `active`. Their cache writes land
at their own `pos`, a position that is written again before it is read.
"""
from __future__ import annotations

import torch

from engine.batch.pool import DecodePool
from engine.sampling import choose, codebook0_logits, noise

_COUNTER_STRIDE = 16  # noise counter = frame * 16 + codebook: every draw of a row is distinct


def decode_step(pool: DecodePool, B: int, L: int) -> None:
    """Advance rows [0, B): pool.codes[:B] gets this frame's codes (codebook 0 == EOS: the
    row ended); active rows' pos, steps, seen, hidden and logits move one frame on."""
    talker, predictor = pool.talker, pool.predictor
    rows = pool.sampling.view(B)
    active, pos, steps = pool.active[:B], pool.pos[:B], pool.steps[:B]
    counter = steps * _COUNTER_STRIDE
    vocab = pool.logits.shape[1]

    # codebook 0 from the talker's logits
    processed = codebook0_logits(pool.logits[:B], pool.seen[:B], steps, rows, pool.suppress, pool.eos)
    code0 = choose(processed, rows.do_sample, rows.temperature, rows.top_k, rows.top_p,
                   noise(rows.seed_lo, rows.seed_hi, counter, vocab))

    # codebooks 1..15: a two-token prefill [hidden, embed(code0)], then one token per codebook
    codes = [code0]
    embed = talker.embed_codec(code0)  # [B, C]
    embeds = [embed]
    x = predictor.project(torch.stack([pool.hidden[:B], embed], dim=1))  # [B, 2, Cp]
    h = predictor.decoder(x, pool.p_cos[:2], pool.p_sin[:2], [k[:B] for k in pool.pk], [v[:B] for v in pool.pv],
                          pool.p_positions[:2].expand(B, 2), None)[:, -1]
    for i in range(1, pool.groups):
        logits = predictor.heads[i - 1](h).float()
        code = choose(logits, rows.sub_do_sample, rows.sub_temperature, rows.sub_top_k, rows.sub_top_p,
                      noise(rows.seed_lo, rows.seed_hi, counter + i, logits.shape[1]))
        codes.append(code)
        embed = predictor.embeddings[i - 1](code)
        embeds.append(embed)
        if i == pool.groups - 1:
            break
        p = i + 1  # the position of this codebook's token in the predictor's sequence
        mask = (pool.p_positions <= p).expand(B, 1, 1, pool.groups)
        h = predictor.decoder(predictor.project(embed)[:, None], pool.p_cos[p:p + 1], pool.p_sin[p:p + 1],
                              [k[:B] for k in pool.pk], [v[:B] for v in pool.pv],
                              pool.p_positions[p:p + 1].expand(B, 1), mask)[:, -1]
    pool.codes[:B] = torch.stack(codes, dim=1)  # [B, 16]
    frame_embed = torch.stack(embeds, dim=1).sum(dim=1)  # [B, C]: the sum of the 16 code embeddings

    # the talker reads the frame plus the row's next text row (tts_pad once they run out)
    text_index = torch.minimum(steps, pool.n_trailing[:B])
    text = pool.trailing[:B].gather(1, text_index[:, None, None].expand(B, 1, pool.trailing.shape[2]))  # [B, 1, C]
    x = frame_embed[:, None] + text
    write = pos.clamp(max=L - 1)[:, None]  # [B, 1]; only inactive rows can be past L (never read)
    mask = (pool.positions[:L][None, :] <= write)[:, None, None, :]  # [B, 1, 1, L]
    hs = talker.decoder(x, pool.cos[write], pool.sin[write], [k[:B, :, :L] for k in pool.k],
                        [v[:B, :, :L] for v in pool.v], write, mask)[:, -1]
    logits = talker.codec_head(hs).float()

    # commit the active rows only
    keep = active[:, None]
    pool.hidden[:B] = torch.where(keep, hs, pool.hidden[:B])
    pool.logits[:B] = torch.where(keep, logits, pool.logits[:B])
    pool.seen[:B] |= keep & (torch.arange(vocab, device=code0.device)[None, :] == code0[:, None])
    pool.pos[:B] = torch.where(active, pos + 1, pos)
    pool.steps[:B] = torch.where(active, steps + 1, steps)

"""The talker's prefill embeddings, built as the official `generate` builds them.

Layout (each row is the sum of a text-side and a codec-side embedding, C = talker width):

  <|im_start|> assistant \\n            text only (role prefix, 3 rows)
  tts_pad ... tts_pad, tts_bos        + codec tags: [nothink, think_bos, think_eos] for "auto",
                                        [think, think_bos, <language>, think_eos] otherwise,
                                        then the x-vector (if any), then codec_pad
  then, x-vector / no voice:
    streaming text (default):         first text token + codec_bos; the rest of the text and
                                      tts_eos are "trailing": added to the talker input one per
                                      generated frame, tts_pad after they run out
    non_streaming_mode:               all text + tts_eos (each + codec_pad), then tts_pad + codec_bos
  ICL (reference transcript + reference codes):
    text side = reference ids + text ids + tts_eos; codec side = codec_bos + the reference
    frames (each the sum of its 16 codebook embeddings);
    streaming: the two zipped position by position; leftover text becomes trailing, missing
      text is tts_pad; non_streaming_mode: all text (+ codec_pad), then all codec (+ tts_pad).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.code_predictor import CodePredictor
from engine.config import TTSConfig
from engine.errors import InvalidParameterError
from engine.talker import Talker
from engine.text_tokenizer import REF_TAIL_LEN, ROLE_LEN, TEXT_TAIL_LEN


@dataclass
class TalkerPrompt:
    """What generation needs: prefill rows [1, T, C], trailing text rows [1, N, C] (fed one per
    frame) and the tts_pad row [1, 1, C] fed once they run out.

    shared_prefix: how many leading rows do not depend on the text to speak (ICL: role, codec
    tags, x-vector and the reference transcript zipped with the reference frames), so that
    their keys and values can be reused by the voice's next request; 0 without ICL.
    """

    embeds: torch.Tensor
    trailing: torch.Tensor
    pad: torch.Tensor
    shared_prefix: int = 0


class PromptBuilder:
    """Builds `TalkerPrompt`s from token ids, a voice and a language for one loaded model."""

    def __init__(self, config: TTSConfig, talker: Talker, predictor: CodePredictor):
        self.cfg, self.talker, self.predictor = config, talker, predictor

    def _ids(self, ids) -> torch.Tensor:
        return torch.as_tensor(ids, dtype=torch.long, device=self.talker.codec_embedding.weight.device)[None]  # [1, T]

    def _codec(self, ids) -> torch.Tensor:
        return self.talker.embed_codec(self._ids(ids))  # [1, T, C]

    def _text(self, ids) -> torch.Tensor:
        return self.talker.embed_text(self._ids(ids))  # [1, T, C]

    def codec_frames(self, codes: torch.Tensor) -> torch.Tensor:
        """Reference frames [T, 16] -> [1, T, C]: the sum of the 16 codebook embeddings per frame."""
        codes = codes.to(self.talker.codec_embedding.weight.device, torch.long)
        parts = torch.cat([self.talker.embed_codec(codes[:, :1]), self.predictor.embed_codes(codes[:, 1:])], dim=1)
        return parts.sum(dim=1)[None]  # [T, 16, C] -> [1, T, C]

    def build(self, text_ids: list[int], language_id: int | None, xvector: torch.Tensor | None = None,
              ref_ids: list[int] | None = None, ref_codes: torch.Tensor | None = None,
              non_streaming_mode: bool = False) -> TalkerPrompt:
        """text_ids: the assistant-template ids of the text; ref_ids: the reference-template ids
        (ICL only, with ref_codes [T, 16]); language_id: a codec language id or None for auto."""
        t, c = self.cfg.talker, self.cfg
        if len(text_ids) < ROLE_LEN + TEXT_TAIL_LEN + 1:
            raise InvalidParameterError("the text to speak is empty")
        bos, eos, pad = self._text([c.tts_bos_token_id, c.tts_eos_token_id, c.tts_pad_token_id]).split(1, dim=1)
        tags = ([t.codec_nothink_id, t.codec_think_bos_id, t.codec_think_eos_id] if language_id is None else
                [t.codec_think_id, t.codec_think_bos_id, language_id, t.codec_think_eos_id])
        codec = [self._codec(tags)]
        if xvector is not None:
            codec.append(xvector.to(pad)[None, None])  # the x-vector is one codec-side row
        codec.append(self._codec([t.codec_pad_id, t.codec_bos_id]))
        codec = torch.cat(codec, dim=1)  # [1, L, C]; its last row (codec_bos) is placed below
        n = codec.shape[1]
        head = torch.cat([pad.expand(-1, n - 2, -1), bos], dim=1) + codec[:, :-1]
        rows = [self._text(text_ids[:ROLE_LEN]), head]
        body = text_ids[ROLE_LEN:-TEXT_TAIL_LEN]
        shared = 0
        if ref_codes is not None:
            ref_body = ref_ids[ROLE_LEN:-REF_TAIL_LEN]
            icl, trailing = self._icl(body, ref_body, ref_codes, eos, pad, non_streaming_mode)
            rows.append(icl)
            # row i of the ICL part is reference text i + reference codec row i while i < len(ref_body)
            shared = ROLE_LEN + head.shape[1] + min(len(ref_body), icl.shape[1])
        elif non_streaming_mode:
            text = torch.cat([self._text(body), eos], dim=1)
            rows += [text + self._codec([t.codec_pad_id] * text.shape[1]), pad + codec[:, -1:]]
            trailing = pad
        else:
            rows.append(self._text(body[:1]) + codec[:, -1:])
            trailing = torch.cat([self._text(body[1:]), eos], dim=1)
        return TalkerPrompt(embeds=torch.cat(rows, dim=1), trailing=trailing, pad=pad, shared_prefix=shared)

    def _icl(self, body: list[int], ref_body: list[int], ref_codes: torch.Tensor, eos, pad, non_streaming: bool):
        t = self.cfg.talker
        text = torch.cat([self._text(ref_body + body), eos], dim=1)  # [1, T1, C]
        codec = torch.cat([self._codec([t.codec_bos_id]), self.codec_frames(ref_codes)], dim=1)  # [1, T2, C]
        n_text, n_codec = text.shape[1], codec.shape[1]
        if non_streaming:
            text = text + self._codec([t.codec_pad_id] * n_text)
            return torch.cat([text, codec + pad], dim=1), pad
        if n_text > n_codec:
            return text[:, :n_codec] + codec, text[:, n_codec:]
        return torch.cat([text, pad.expand(-1, n_codec - n_text, -1)], dim=1) + codec, pad

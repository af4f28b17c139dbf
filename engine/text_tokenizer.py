"""The Qwen2 byte-level BPE text tokenizer, built with the `tokenizers` library from the
checkpoint's vocab.json + merges.txt + tokenizer_config.json.

Built exactly as transformers converts the released files (which carry no tokenizer.json):
NFC normalization, Qwen2's split regex, byte-level mapping without a prefix space, BPE with no
unknown token, and the added tokens of tokenizer_config.json (special tokens such as
<|im_start|> are matched anywhere in the text). The chat templates are those the official
wrapper builds for Qwen3-TTS.
"""
from __future__ import annotations

from pathlib import Path

from engine.errors import CheckpointError
from engine.checkpoint import read_json, require_file

# transformers' Qwen2Converter split pattern
QWEN2_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
               r"""\s*[\r\n]+|\s+(?!\S)|\s+""")

# The official prompt builder slices ids by position: 3 leading ids (<|im_start|> assistant \n),
# 5 trailing ids for the text template, 2 for the reference template.
ROLE_LEN, TEXT_TAIL_LEN, REF_TAIL_LEN = 3, 5, 2


def assistant_text(text: str) -> str:
    """The template of the text to speak."""
    return f"<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n"


def reference_text(text: str) -> str:
    """The template of a reference transcript (ICL voice prompts)."""
    return f"<|im_start|>assistant\n{text}<|im_end|>\n"


class TextTokenizer:
    """Text -> Qwen2 token ids, identical to the official processor."""

    def __init__(self, tokenizer):
        self._tok = tokenizer

    @classmethod
    def from_dir(cls, folder: Path) -> "TextTokenizer":
        """Build from vocab.json, merges.txt and tokenizer_config.json in `folder`."""
        from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
        from tokenizers.models import BPE

        folder = Path(folder)
        vocab = read_json(folder, "vocab.json")
        merges = _read_merges(require_file(folder, "merges.txt"))
        config = read_json(folder, "tokenizer_config.json")
        added = sorted(((int(i), t) for i, t in (config.get("added_tokens_decoder") or {}).items()),
                       key=lambda item: item[0])
        for index, token in added:  # added tokens keep their configured ids, gaps or not
            vocab.setdefault(token["content"], index)
        try:
            model = BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None, continuing_subword_prefix="",
                        end_of_word_suffix="", fuse_unk=False, byte_fallback=False)
        except Exception as e:  # tokenizers raises its own exception types
            raise CheckpointError(f"cannot build the BPE tokenizer from {folder}: {e}") from e
        tok = Tokenizer(model)
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=bool(config.get("add_prefix_space", False)), use_regex=False),
        ])
        tok.decoder = decoders.ByteLevel()
        specials = [_added(t) for _, t in added if t.get("special", False)]
        others = [_added(t) for _, t in added if not t.get("special", False)]
        tok.add_special_tokens(specials)
        tok.add_tokens(others)
        for index, token in added:
            if tok.token_to_id(token["content"]) != index:
                raise CheckpointError(f"{folder}/tokenizer_config.json: added token {token['content']!r} "
                                      f"has id {index} but the vocabulary says {tok.token_to_id(token['content'])}")
        return cls(tok)

    def encode(self, text: str) -> list[int]:
        """Ids of `text` as is (special tokens in it are recognised, none are added)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False)

    def assistant_ids(self, text: str) -> list[int]:
        """Ids of the text to speak in its chat template."""
        return self.encode(assistant_text(text))

    def reference_ids(self, text: str) -> list[int]:
        """Ids of a reference transcript in its template."""
        return self.encode(reference_text(text))

    def token_id(self, token: str) -> int:
        index = self._tok.token_to_id(token)
        if index is None:
            raise CheckpointError(f"the tokenizer has no token {token!r}")
        return index

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)


def _added(t: dict):
    from tokenizers import AddedToken

    return AddedToken(t["content"], single_word=t.get("single_word", False), lstrip=t.get("lstrip", False),
                      rstrip=t.get("rstrip", False), normalized=t.get("normalized", not t.get("special", False)),
                      special=t.get("special", False))


def _read_merges(path: Path) -> list[tuple[str, str]]:
    merges = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise CheckpointError(f"{path}:{number}: a merge must be two tokens separated by a space: {line!r}")
        merges.append((parts[0], parts[1]))
    return merges

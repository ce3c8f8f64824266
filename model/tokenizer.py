"""Byte-level UTF-8 tokenizer: any text a user types is 1..4 tokens per character and
nothing needs downloading. Special tokens mark the parts of a decoder sequence:
`<q>` question … `<a>` answer … `</a>` end of answer."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<q>", "<a>", "</a>")
FORMAT = "streamer-byte-tokenizer"
VERSION = 1


class Tokenizer:
    """Bytes 0..255 are tokens 0..255; special tokens follow."""

    def __init__(self) -> None:
        self.special = {name: 256 + i for i, name in enumerate(SPECIAL_TOKENS)}
        self.pad_id = self.special["<pad>"]
        self.question_id = self.special["<q>"]
        self.answer_id = self.special["<a>"]
        self.end_id = self.special["</a>"]
        self.vocab_size = 256 + len(SPECIAL_TOKENS)

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"the tokenizer encodes text (str), got {type(text).__name__}")
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the byte tokens; special tokens are dropped, broken UTF-8 becomes U+FFFD."""
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def stream_decode(self, ids: Iterable[int]) -> Iterator[str]:
        """Decode token by token, yielding text as soon as whole characters are complete."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for i in ids:
            if 0 <= i < 256:
                piece = decoder.decode(bytes([i]))
                if piece:
                    yield piece
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    def question_ids(self, question: str) -> list[int]:
        """`<q>` + question bytes: the decoder's prompt before `<a>`."""
        return [self.question_id, *self.encode(question.strip())]

    def answer_ids(self, answer: str) -> list[int]:
        """Answer bytes + `</a>`: the decoder's targets."""
        return [*self.encode(answer.strip()), self.end_id]

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "byte_tokens": 256, "special_tokens": self.special}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @staticmethod
    def load(path: str | Path) -> "Tokenizer":
        """Read `tokenizer.json`, refusing one this code would decode differently."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read tokenizer file {path}: {err}") from None
        tok = Tokenizer()
        if data != tok.to_dict():
            raise ValueError(
                f"tokenizer file {path} does not describe the byte-level tokenizer this version uses "
                f"(expected {tok.to_dict()}); the checkpoint was written by incompatible code"
            )
        return tok

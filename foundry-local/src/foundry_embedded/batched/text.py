"""Token ids to text as they come: each token's new text once it is whole, and `stop` strings cut the answer.

Decoding one token alone breaks words and multi-byte characters (byte-level BPE), so the new text is the decoded
tail minus the decoded tail without the new token, from a window that moves on whenever text goes out (linear work
per token). Text that might be the start of a stop string is held back until it is not.
"""

from __future__ import annotations

from tokenizers import Tokenizer


class TextStream:
    def __init__(self, tokenizer: Tokenizer, stop: list[str]) -> None:
        self.tokenizer, self.stop = tokenizer, [s for s in stop if s]
        self.ids: list[int] = []
        self._prefix = self._read = 0  # the window: ids[_prefix:_read] is text already accounted for
        self.text = ""  # all the text decoded so far
        self._sent = 0  # how much of it went out
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token: int) -> str:
        """The text that can go out after `token` ("" when it waits for more); `stopped` once a stop string came."""
        self.ids.append(token)
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):  # U+FFFD: a character still incomplete
            self.text += after[len(before) :]
            self._prefix, self._read = self._read, len(self.ids)
        return self._release(final=False)

    def flush(self) -> str:
        """What was held back, at the end of the answer."""
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        if self.stopped:
            return ""
        end = len(self.text)
        found = [i for i in (self.text.find(s, max(0, self._sent - len(s))) for s in self.stop) if i >= 0]
        if found:
            end, self.stopped = min(found), True
        elif not final and self.stop:
            end -= self._held(end)
        out, self._sent = self.text[self._sent : end], max(self._sent, end)
        return out

    def _held(self, end: int) -> int:
        """How many trailing characters may begin a stop string."""
        for size in range(min(max(map(len, self.stop)) - 1, end - self._sent), 0, -1):
            tail = self.text[end - size : end]
            if any(s.startswith(tail) for s in self.stop):
                return size
        return 0

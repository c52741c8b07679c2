"""The worker's cache of context values, for values by reference.

A worker registered with ``value_cache_bytes`` > 0 keeps the values it
produced (once ACCEPTED) and received (inline in an ``Assign``, or in a
``values`` answer) under their names: run, writer attempt, key. The server
then sends some input keys of later attempts of the same run as references
instead of values. The cache is bounded by the bytes of the values' JSON
text and evicts the least recently used; a miss is fetched from the server.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["DEFAULT_VALUE_CACHE_BYTES", "ValueCache", "ValueKey"]

DEFAULT_VALUE_CACHE_BYTES = 64 * 1024 * 1024
"""The default bound of a worker's value cache: 64 MiB."""

ValueKey = tuple[str, str, str]
"""A value's name: ``(run_id, writer_attempt_id, key)``; the writer is empty
for a value of the run's input."""


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


class ValueCache:
    """An LRU map of value names to JSON texts, bounded by total bytes.

    >>> cache = ValueCache(16)
    >>> cache.put(("run", "a1", "k"), '"hello"')
    >>> cache.get(("run", "a1", "k"))
    '"hello"'
    >>> cache.put(("run", "a2", "big"), '"far too long"')  # over the bound: not kept
    >>> cache.get(("run", "a2", "big")) is None
    True
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        """The bound, in bytes of JSON text and value names."""
        self._values: OrderedDict[ValueKey, str] = OrderedDict()
        self._sizes: dict[ValueKey, int] = {}
        self._by_run: dict[str, set[ValueKey]] = {}
        self.size_bytes = 0
        """Bytes held now."""

    def __len__(self) -> int:
        return len(self._values)

    def put(self, name: ValueKey, text: str) -> None:
        """Keep a value, evicting the least recently used ones as needed.
        A value larger than the whole cache is not kept."""
        # The text and the whole name count: the server counts only the
        # text, so the worker never holds more than the server assumes.
        size = _utf8_length(text) + sum(_utf8_length(part) for part in name)
        self.discard(name)
        if size > self.capacity_bytes:
            return
        while self.size_bytes + size > self.capacity_bytes and self._values:
            oldest = next(iter(self._values))
            self.discard(oldest)
        self._values[name] = text
        self._sizes[name] = size
        self._by_run.setdefault(name[0], set()).add(name)
        self.size_bytes += size

    def get(self, name: ValueKey) -> str | None:
        """The value's text, or ``None``; marks it recently used."""
        text = self._values.get(name)
        if text is not None:
            self._values.move_to_end(name)
        return text

    def discard(self, name: ValueKey) -> None:
        """Drop one value if held."""
        if self._values.pop(name, None) is None:
            return
        self.size_bytes -= self._sizes.pop(name)
        names = self._by_run.get(name[0])
        if names is not None:
            names.discard(name)
            if not names:
                del self._by_run[name[0]]

    def forget_run(self, run_id: str) -> None:
        """Drop every value of a run (the server sent ``forget_run``)."""
        for name in list(self._by_run.get(run_id, ())):
            self.discard(name)

    def clear(self) -> None:
        """Drop everything (on reconnect: the new stream references nothing
        of the old one)."""
        self._values.clear()
        self._sizes.clear()
        self._by_run.clear()
        self.size_bytes = 0

"""A least-recently-used cache of text to rendered text, bounded by the characters it holds.

functools.lru_cache bounds entries, not bytes: a thousand cached paragraphs of 8 MB quoted emails
kept web workers hundreds of MB larger. Here a key longer than `max_key` is rendered and not kept,
and the oldest entries go once the keys and values together pass `max_chars`.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

Value = TypeVar("Value", bound=str)


class BoundedCache(Generic[Value]):
    """Cached results of one function of a string, at most `max_chars` characters in all."""

    def __init__(self, function: Callable[[str], Value], max_chars: int, max_key: int) -> None:
        self._function = function
        self._entries: OrderedDict[str, Value] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.max_chars = max_chars
        self.max_key = max_key
        functools.update_wrapper(self, function)

    def __call__(self, key: str) -> Value:
        """The function's result for key, from the cache when it is there."""
        if len(key) > self.max_key:
            return self._function(key)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        value = self._function(key)
        with self._lock:
            if key not in self._entries:
                self._entries[key] = value
                self._size += len(key) + len(value)
            while self._size > self.max_chars and self._entries:
                old_key, old_value = self._entries.popitem(last=False)
                self._size -= len(old_key) + len(old_value)
        return value

    @property
    def size(self) -> int:
        """Characters held: every cached key and value."""
        return self._size

    def cache_clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self._size = 0


def bounded_cache(
    max_chars: int, max_key: int
) -> Callable[[Callable[[str], Value]], BoundedCache[Value]]:
    """Decorate a function of one string with a BoundedCache."""

    def decorate(function: Callable[[str], Value]) -> BoundedCache[Value]:
        return BoundedCache(function, max_chars, max_key)

    return decorate

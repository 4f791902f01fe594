"""The trained models, loaded one way: on first use, once per process, under a lock (``shared``).

As immich's machine-learning service does it: nothing is loaded at import or when a search engine is made,
a model is loaded by the first request that needs it while others wait for it, and every process keeps one
copy. A model that cannot be had raises ``ModelUnavailableError`` saying what to do; a part that can do
without one (region search without its trained window scorer, a search without the detector) catches it.
"""

from __future__ import annotations

import sys
import threading
from typing import Callable, Generic, Hashable, TypeVar

from engine.errors import SearchError

T = TypeVar("T")


class ModelUnavailableError(SearchError):
    """A model's file or weights are not on this machine, or do not fit this catalogue."""

    http_status = 503


class Lazy(Generic[T]):
    """A value made by ``load`` on the first ``get``, once, while other callers wait; a failed load is tried
    again by the next caller."""

    def __init__(self, load: Callable[[], T]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._value: T | None = None
        self._loaded = False

    def get(self) -> T:
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._value = self._load()
                    self._loaded = True
        return self._value


_SHARED: dict[Hashable, Lazy] = {}
_SHARED_LOCK = threading.Lock()


def shared(key: Hashable, load: Callable[[], T]) -> T:
    """The process's one instance of the model ``key``, loaded by ``load`` on first use."""
    with _SHARED_LOCK:
        lazy = _SHARED.setdefault(key, Lazy(load))
    return lazy.get()


def child_exit_code(make: Callable[[], None]) -> int:
    """How a child process that makes a model's file ends: 0 once ``make`` is done, 1 with the reason on stderr
    when the model cannot be had (``engine.networks`` reports the last line of it)."""
    try:
        make()
    except ModelUnavailableError as error:
        print(error, file=sys.stderr)
        return 1
    return 0

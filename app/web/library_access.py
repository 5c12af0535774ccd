"""The face library as the web app reaches it: opened on first use, kept while it answers.

In a running pipeline that is the gallery's owner (identify) over its control channel; tests hand in their own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from app.settings import Settings


def _open(settings: Settings) -> Any:
    from app.library import open_library

    return open_library(settings)


class LibraryAccess:
    def __init__(self, settings: Settings, library: Any = None, opener: Callable[[Settings], Any] | None = None):
        self.settings = settings
        self._library = library
        self._opener = opener or _open
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._library is None:
                self._library = self._opener(self.settings)
            return self._library

    def close(self) -> None:
        with self._lock:
            lib, self._library = self._library, None
        close = getattr(lib, "close", None)
        if close is not None:
            close()

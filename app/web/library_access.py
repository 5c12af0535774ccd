"""The face library as the web app reaches it: opened on first use, kept while it answers.

In a running pipeline that is the gallery's owner (identify) over its control channel (``running_library``);
tests hand in their own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from app.settings import Settings


def running_library(settings: Settings, wait: float = 5.0) -> Any:
    """The running pipeline's library over its control socket, never a local one: the web app lives in the
    display process, and opening the gallery here (e.g. a request while identify is still starting) would lock
    the owner out of it. Nothing answering within ``wait`` s is GalleryUnavailable (503), and is retried on the
    next request."""
    import time

    from app.control.client import ControlClient, NoOwner
    from app.library import GalleryUnavailable, socket_path
    from app.library.client import RemoteLibrary

    path = socket_path(settings)
    client = ControlClient(path)
    deadline = time.monotonic() + wait
    while True:
        try:
            client.call("ping")
            return RemoteLibrary(settings, client)
        except NoOwner:
            if time.monotonic() >= deadline:
                raise GalleryUnavailable("the pipeline's gallery owner (identify) does not answer yet: it may still "
                                         "be starting; try again in a few seconds") from None
            time.sleep(0.2)


class LibraryAccess:
    def __init__(self, settings: Settings, library: Any = None, opener: Callable[[Settings], Any] | None = None):
        self.settings = settings
        self._library = library
        self._opener = opener or running_library
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

"""What the page (``app.py``) and the HTTP API (``http_api.py``) share in one process: the app's settings,
the catalogue's store opened in the background, one search slot, memory handed back when idle, and this
instance's own folders for uploads and the pictures it draws.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from engine.catalogue import BUNDLED_CATALOGUE
from engine.errors import SearchError, ServiceUnavailableError
from engine.feed_indexing import index_feed
from engine.indexing import open_current
from engine.networks import CORES, use_threads
from engine.search import SearchEngine

ROOT = Path(__file__).resolve().parent
# Old names of environment variables that still work, each with a note saying the new one.
RENAMED_VARIABLES = {"FURNITURE_GALLERY": "FURNITURE_CATALOGUE"}
log = logging.getLogger("service")

# Requests that may wait for the search slot; more are told the service is busy.
MAX_WAITING = 16
# Searches that run at once when several wait, on an equal share of the cores (SearchSlot).
LANES = 2
# Seconds a request waits for the slot before it is told the service is busy.
SLOT_TIMEOUT_S = 30.0
BUSY_MESSAGE = "The search service is busy; try again in a few seconds."
# Seconds without a search after which freed memory goes back to the system.
IDLE_TRIM_S = 2.0
# Where instances keep their folders, one sub-folder per process id.
INSTANCES = Path(tempfile.gettempdir()) / "furniture-search"


@dataclass(frozen=True)
class AppSettings:
    """Everything the app takes from its environment, read in one place (``from_environment``)."""

    catalogue: Path = BUNDLED_CATALOGUE  # FURNITURE_CATALOGUE
    feed: str = ""  # FURNITURE_FEED: a product feed (file or URL) to index from instead of the catalogue folder
    notice: str = ""  # FURNITURE_NOTICE: a line the page shows under its title (e.g. "prices are made up")
    store: Path = ROOT / "index_store" / "default"  # FURNITURE_STORE
    host: str = "127.0.0.1"  # GRADIO_SERVER_NAME (0.0.0.0: every interface)
    port: int = 7860  # GRADIO_SERVER_PORT
    upload_lifetime_s: int = 3600  # FURNITURE_UPLOAD_LIFETIME_S: uploads are deleted this long after arriving
    lanes: int = LANES  # FURNITURE_SEARCH_LANES: searches run at once when several wait (SearchSlot); 1: one at a time

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> AppSettings:
        values = dict(environ)
        for old, new in RENAMED_VARIABLES.items():
            if old in values:
                log.warning("%s is now called %s; %s will keep working for a while", old, new, old)
                values.setdefault(new, values[old])
        default = cls()
        return cls(
            catalogue=Path(values.get("FURNITURE_CATALOGUE", default.catalogue)).resolve(),
            feed=values.get("FURNITURE_FEED", default.feed),
            notice=values.get("FURNITURE_NOTICE", default.notice),
            store=Path(values.get("FURNITURE_STORE", default.store)).resolve(),
            host=values.get("GRADIO_SERVER_NAME", default.host),
            port=int(values.get("GRADIO_SERVER_PORT", default.port)),
            upload_lifetime_s=int(values.get("FURNITURE_UPLOAD_LIFETIME_S", default.upload_lifetime_s)),
            lanes=max(1, int(values.get("FURNITURE_SEARCH_LANES", default.lanes))),
        )


@dataclass
class CatalogueIndex:
    """The app's store of its catalogue, opened in the background on start: built, synced or repaired first
    when it is missing, stale or damaged (``prepare``). Until then ``engine`` is None and ``status`` says why."""

    settings: AppSettings
    engine: SearchEngine | None = None
    done: int = 0
    total: int = 0
    error: str = ""

    def prepare(self) -> None:
        def progress(done: int, total: int) -> None:
            self.done, self.total = done, total

        try:
            if self.settings.feed:
                engine = self._synced_with_feed(progress)
            else:
                stored = open_current(self.settings.catalogue, self.settings.store, progress=progress)
                engine = SearchEngine.from_store(stored, catalogue=self.settings.catalogue)
            engine.load_models()  # before the page says it is ready: no shopper waits for a first load
            self.engine = engine
        except SearchError as error:
            self.error = f"The catalogue index could not be built: {error}"
        except Exception as error:  # a bug: say so on the page instead of "Loading…" for ever
            log.exception("building the catalogue index failed")
            self.error = f"The catalogue index could not be built ({type(error).__name__}: {error}); see the app's log."

    def _synced_with_feed(self, progress) -> SearchEngine:
        """The store synced with the feed (prices and stock change), or as it is when the feed cannot be read now:
        a shop's page keeps answering while its feed server is down."""
        try:
            index_feed(self.settings.feed, self.settings.store, progress=progress)
        except SearchError as error:
            engine = SearchEngine.open(self.settings.store)  # none yet: its error says so
            log.warning("the feed could not be indexed (%s); searching the store as last indexed", error)
            return engine
        return SearchEngine.open(self.settings.store)

    def start(self) -> None:
        threading.Thread(target=self.prepare, name="index-builder", daemon=True).start()

    def status(self) -> str:
        if self.error:
            return f"⚠️ {self.error}"
        if self.engine is None:
            if self.total:
                return f"⏳ Indexing the catalogue on first start: {self.done}/{self.total} images…"
            return "⏳ Loading the catalogue index…"
        products = len({image.product_id for image in self.engine.stored.images})
        return f"Catalogue: {products} products in {len(self.engine.categories)} categories."


class SearchSlot:
    """The process's searches (page and API), up to ``lanes`` at once, so that both cores stay busy under load.

    A search that finds no other running or waiting has every core to itself (the least wait for one shopper).
    Others start at once while fewer than ``lanes`` run, each on its share of the cores, the search already
    running keeping its threads: a network gains only 1.2-1.3x from a second thread and Gradio's work around a
    search is one thread's, so a newcomer waiting for it left a core idle. On 2 cores, 30 page clients got
    1.2x the searches per second, 30 HTTP API clients 1.3-1.5x (benchmarks/README.md, "Session 16").
    At most ``max_waiting`` callers wait; the others, and those that waited ``timeout_s``, get
    ``ServiceUnavailableError``.
    """

    def __init__(self, max_waiting: int = MAX_WAITING, timeout_s: float = SLOT_TIMEOUT_S, cores: int = CORES,
                 lanes: int = LANES):
        self._changed = threading.Condition()
        self._waiting = 0
        self._running = 0
        self.max_waiting = max_waiting
        self.timeout_s = timeout_s
        self.cores = cores
        self.lanes = lanes

    def _may_start(self) -> bool:
        return self._running < self.lanes

    def __enter__(self) -> SearchSlot:
        with self._changed:
            if self._waiting >= self.max_waiting:
                raise ServiceUnavailableError(BUSY_MESSAGE)
            self._waiting += 1
            try:
                if not self._changed.wait_for(self._may_start, timeout=self.timeout_s):
                    raise ServiceUnavailableError(BUSY_MESSAGE)
                alone = self._running == 0 and self._waiting == 1
                self._running += 1
                threads = self.cores if alone else max(1, self.cores // self.lanes)
            finally:
                self._waiting -= 1
        use_threads(threads)
        return self

    def __exit__(self, *exc_info) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify_all()


# glibc gives each thread that allocates its own heap ("arena") and keeps what is freed there for later.
# Gradio and FastAPI run handlers on pools of threads, so each search could leave its working memory in
# another arena. Two arenas, and the freed memory handed back once the process is idle, keep the app near
# its size at rest; handing it back after every search costs each search tens of ms of page faults.
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6") if sys.platform.startswith("linux") else None
_M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h


def limit_heap_growth() -> None:
    """Cap glibc's heaps at two; call before the server starts its threads."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_ARENA_MAX, 2)


class IdleTrim:
    """Counts the searches running; once none has run for ``IDLE_TRIM_S``, hands freed memory back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._finished = 0  # searches finished so far: a timer trims only if none finished after it was set

    def started(self) -> None:
        with self._lock:
            self._running += 1

    def finished(self) -> None:
        with self._lock:
            self._running -= 1
            self._finished += 1
            finished = self._finished
        timer = threading.Timer(IDLE_TRIM_S, self._trim_if_idle, args=(finished,))
        timer.daemon = True
        timer.start()

    def _trim_if_idle(self, finished: int) -> None:
        with self._lock:
            idle = self._running == 0 and self._finished == finished
        if idle and _LIBC is not None:
            _LIBC.malloc_trim(0)


@dataclass
class Searches:
    """The process's search slot and idle trim, taken together by every search of the page and the API."""

    slot: SearchSlot
    trim: IdleTrim

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Wait for the slot (or be told the service is busy), search, and let memory go back once idle."""
        self.trim.started()
        try:
            with self.slot:
                yield
        finally:
            self.trim.finished()


def new_searches(lanes: int = LANES) -> Searches:
    return Searches(SearchSlot(lanes=lanes), IdleTrim())


@dataclass(frozen=True)
class InstanceFolders:
    """This process's folders: ``uploads`` (Gradio's upload cache) and ``pictures`` (the pictures drawn for
    the page). Nothing of another instance's is seen or served."""

    root: Path

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def pictures(self) -> Path:
        return self.root / "pictures"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def instance_folders(base: Path = INSTANCES) -> InstanceFolders:
    """Fresh, empty folders for this process; those of instances that are gone (stopped, or killed before
    they could clean up) are removed first, whatever they hold."""
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    for folder in base.iterdir():
        if folder.name.isdigit() and (int(folder.name) == os.getpid() or not _alive(int(folder.name))):
            shutil.rmtree(folder, ignore_errors=True)
    folders = InstanceFolders(base / str(os.getpid()))
    for folder in (folders.uploads, folders.pictures):
        folder.mkdir(parents=True, mode=0o700)
    return folders

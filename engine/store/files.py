"""A store version's data files on disk: written durably, and proved intact by their checksums.

Every data file of a version (vectors, classifier, vector indexes) has its SHA-256 recorded in the
version's ``meta.json`` when it is written, and is checked against it whenever the version is loaded.
Hashing a million-image store takes seconds, so a file once verified is remembered in the version's
``verified.json`` by its size, change times and inode: a file that was replaced, rewritten or
swapped with another has another inode or change time, and is hashed again.

Each row of the vectors also has a short digest of its own bytes, recorded with its item, so that
``index`` can reuse exactly the rows of a damaged file that are still what was written.

This module imports neither torch nor usearch: reading and checking a store costs no model.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

CACHE_NAME = "verified.json"
_CHUNK = 1 << 20


def file_checksum(path: Path) -> str:
    """The SHA-256 of a file, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def row_digest(vector: np.ndarray) -> str:
    """A short digest of one stored vector's float32 bytes, tying the row to its item."""
    return hashlib.blake2b(np.ascontiguousarray(vector, dtype="<f4").tobytes(), digest_size=8).hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's data and metadata to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_durably(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a new file with ``write(handle)`` and flush it to the disk before returning."""
    with open(path, "xb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new file whole, and it survives a crash."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    write_durably(temporary, lambda handle: handle.write(text.encode("utf-8")))
    os.replace(temporary, path)
    fsync_path(path.parent)


def _identity(info: os.stat_result) -> list[int]:
    """What tells one file apart from a replacement: a change to the contents or a swap changes one of these."""
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def _read_cache(folder: Path) -> dict:
    try:
        cache = json.loads((folder / CACHE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def damaged_files(folder: Path, checksums: dict[str, str]) -> list[str]:
    """The names of ``folder``'s files (``name -> SHA-256``) that are missing, not regular files, or whose
    contents differ from their checksum; the verified ones are remembered for the next load."""
    cache = _read_cache(folder)
    damaged, verified = [], {}
    for name, expected in checksums.items():
        path = folder / name
        try:
            info = os.lstat(path)
            if not path.is_file() or path.is_symlink():
                damaged.append(name)
                continue
            identity = _identity(info)
            if cache.get(name) != [*identity, expected] and file_checksum(path) != expected:
                damaged.append(name)
                continue
        except OSError:
            damaged.append(name)
            continue
        verified[name] = [*identity, expected]
    if verified != cache:
        try:  # a cache only: a read-only store is verified again on each load
            atomic_write_text(folder / CACHE_NAME, json.dumps(verified))
        except OSError:
            pass
    return damaged

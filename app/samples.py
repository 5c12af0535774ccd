"""Sample people and clip for the quickstart, fetched like the models: official URL or a mirror, sha256-checked.

The manifest (``samples.json``, package data) maps each file's path in the samples folder to its pinned
upstream URL, size and sha256, so a fresh clone needs nothing beside it to enrol people and run a clip.
"""

from __future__ import annotations

import json
import os
import sys
from functools import lru_cache
from pathlib import Path, PurePosixPath

from app.errors import FacestreamError
from engines.errors import EngineError
from engines.fetch import fetch_file, matches

MANIFEST_PATH = Path(__file__).with_name("samples.json")
MIRROR_ENV = "FACESTREAM_SAMPLES_MIRROR"
DEFAULT_DIR = "samples"
#: what the quickstart enrols and runs on, inside the samples folder
PEOPLE = "people"
CLIP = "video/short_hamilton_clip.mp4"


class SampleFileError(EngineError):
    """A sample file could not be fetched, or its copy is wrong."""


@lru_cache(maxsize=1)
def manifest() -> dict[str, dict]:
    entries = json.loads(MANIFEST_PATH.read_text())
    for rel in entries:
        # a path that climbs out of the samples folder would write elsewhere on the user's disk
        if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
            raise FacestreamError(f"samples manifest entry {rel!r} leaves the samples folder: report this")
    return entries


def state(dest: str | Path, rel: str) -> str:
    """``present`` (and sha256-checked), ``corrupt`` or ``missing``."""
    path = Path(dest) / rel
    if not path.is_file():
        return "missing"
    return "present" if matches(path, manifest()[rel]) else "corrupt"


def ensure_samples(dest: str | Path = DEFAULT_DIR, mirror: str | Path | None = None, quiet: bool = False) -> Path:
    """Make every sample file present and verified under ``dest``; good copies are kept.

    ``mirror`` (else ``FACESTREAM_SAMPLES_MIRROR``) is a folder with the same layout to copy from instead of
    downloading. Each file lands atomically after its sha256 check, so an interrupted run loses nothing."""
    dest = Path(dest)
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    if mirror and not Path(mirror).is_dir():
        raise SampleFileError(f"samples mirror {mirror} is not a folder: fix {MIRROR_ENV} or unset it to download")
    from tqdm import tqdm

    entries = manifest()
    fetched = 0
    # one bar over all the bytes (files are small; a bar per file would be 18 lines of noise)
    with tqdm(total=sum(e["size"] for e in entries.values()), unit="B", unit_scale=True, desc="samples",
              disable=quiet, file=sys.stderr) as bar:
        for rel, entry in entries.items():
            fetched += fetch_file(dest / rel, entry, label=rel, kind="sample file", mirror=mirror,
                                  mirror_env=MIRROR_ENV, error=SampleFileError, quiet=True)
            bar.update(entry["size"])
    if not quiet:
        source = f"copied from {mirror}" if mirror else "downloaded"
        print(f"samples: {len(entries)} files ready in {dest} ({fetched} {source}, all sha256-checked)",
              file=sys.stderr)
    return dest

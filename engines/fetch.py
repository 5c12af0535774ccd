"""Model files: the manifest of official URLs + sha256, download or mirror copy, verification.

Every file lands atomically (temp file + rename), so an interrupted fetch never leaves a
half-written model that a later run would trust. ``fetch_file`` is the one copy of that logic;
other file sets (the sample media) call it with their own manifest, mirror setting and error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from engines.errors import EngineError, ModelFileError

MANIFEST_PATH = Path(__file__).with_name("manifest.json")
MIRROR_ENV = "FACESTREAM_MODEL_MIRROR"
#: files produced by this repo from a fetched one: derived name -> (source name, exporter)
DERIVED = {"retinaface_mnet025.onnx": "retinaface_mnet025.pth"}
INSIGHTFACE_LICENSE = "insightface models: non-commercial research only"
#: model files a user brings (not downloadable here), with the licence of the pack model_zoo names for them
USER_SUPPLIED = {"w600k_r50.onnx": INSIGHTFACE_LICENSE, "glintr100.onnx": INSIGHTFACE_LICENSE}


@lru_cache(maxsize=1)
def manifest() -> dict[str, dict]:
    return json.loads(MANIFEST_PATH.read_text())


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of a file's bytes, read in chunks: the one copy (model files, engines, enrolled photos)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_verified: dict[tuple[str, int, float], bool] = {}


def matches(path: Path, entry: dict) -> bool:
    """True when ``path`` has the entry's size and sha256 (cached per path, size and mtime: a big file
    is hashed once per process, yet a file changed on disk is hashed again)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime)
    if _verified.get(key):
        return True
    ok = st.st_size == entry["size"] and sha256_file(path) == entry["sha256"]
    if ok:
        _verified[key] = True
    return ok


def verify(path: Path, name: str | None = None) -> None:
    """Raise ModelFileError unless ``path`` has the manifest's size and sha256 (cached per mtime)."""
    name = name or path.name
    entry = manifest()[name]
    fix = f"run `facestream models fetch` (or set {MIRROR_ENV}=DIR holding the file)"
    if not path.is_file():
        raise ModelFileError(f"model file {name} is missing in {path.parent}: {fix}")
    if not matches(path, entry):
        raise ModelFileError(
            f"model file {path} is corrupt (size or sha256 differs from the manifest): delete it and {fix}"
        )


def require(checkpoint_dir: str | Path, name: str) -> Path:
    """Path of a model file in ``checkpoint_dir``, verified; derived files checked for presence only."""
    path = Path(checkpoint_dir) / name
    if name in DERIVED:
        if not path.is_file():
            raise ModelFileError(
                f"model file {name} is missing in {path.parent}: run `facestream models export` "
                f"(it is made from {DERIVED[name]}; `facestream models fetch` first if that is missing too)"
            )
        return path
    if name not in manifest():
        if not path.is_file():
            raise ModelFileError(
                f"model file {name} is missing in {path.parent}: it is not one we can download, "
                "put your own copy there"
            )
        return path
    verify(path, name)
    return path


def _atomic_target(dest: Path):
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the file from other users of a shared checkout
    os.close(fd)
    return Path(tmp)


def _download(url: str, out: Path, quiet: bool) -> None:
    from tqdm import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": "facestream"})
    with urllib.request.urlopen(req, timeout=60) as resp, open(out, "wb") as f:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                  disable=quiet, file=sys.stderr) as bar:
            while block := resp.read(1 << 16):
                f.write(block)
                bar.update(len(block))


def _download_member(url: str, member: str, out: Path, quiet: bool, error: type[EngineError]) -> None:
    """Download the zip at ``url`` beside ``out`` and extract the one member ending in ``member``."""
    archive = _atomic_target(out.with_suffix(".zip"))
    try:
        _download(url, archive, quiet)
        with zipfile.ZipFile(archive) as zf:
            found = next((m for m in zf.namelist() if m.endswith(member)), None)
            if found is None:
                raise error(f"{url} has no {member}: report this")
            with zf.open(found) as src_f, open(out, "wb") as out_f:
                shutil.copyfileobj(src_f, out_f)
    finally:
        archive.unlink(missing_ok=True)


def fetch_file(
    dest: Path,
    entry: dict,
    *,
    label: str,
    kind: str = "model file",
    mirror: str | Path | None = None,
    mirror_env: str = MIRROR_ENV,
    error: type[EngineError] = ModelFileError,
    quiet: bool = False,
) -> bool:
    """Make ``dest`` present with the entry's size and sha256; True when it had to be fetched.

    A good copy is kept. Otherwise the file comes from ``mirror/label`` when ``mirror`` is given, else from
    ``entry["url"]`` (its ``member`` when the URL is a zip). It lands atomically (temp file + rename) and only
    after its sha256 is checked, so a cut download or a wrong mirror leaves nothing a later run would trust.
    ``label`` is the file's path in the mirror; messages name it as ``kind label``; ``error`` is the one-line
    error type raised.
    """
    if dest.is_file() and matches(dest, entry):
        return False
    tmp = _atomic_target(dest)
    try:
        if mirror:
            src = Path(mirror) / label
            if not src.is_file():
                raise error(f"{kind} {label} is not in the mirror {mirror}: fix {mirror_env} or unset it to download")
            shutil.copyfile(src, tmp)
        elif entry.get("member"):
            _download_member(entry["url"], entry["member"], tmp, quiet, error)
        else:
            _download(entry["url"], tmp, quiet)
        if not matches(tmp, entry):
            raise error(
                f"{kind} {label} from {src if mirror else entry['url']} fails its sha256 check: "
                "the source is wrong or the download was cut; try again"
            )
        os.replace(tmp, dest)
    except (OSError, zipfile.BadZipFile) as exc:
        raise error(f"could not fetch {kind} {label} ({exc}): check the network or set {mirror_env}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return True


def fetch(name: str, checkpoint_dir: str | Path, mirror: str | Path | None = None, quiet: bool = False) -> Path:
    """Make ``checkpoint_dir/name`` present and verified: keep a good copy, else copy from the mirror
    (``FACESTREAM_MODEL_MIRROR`` when ``mirror`` is None), else download from the official URL."""
    entry = manifest()[name]
    dest = Path(checkpoint_dir) / name
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    if fetch_file(dest, entry, label=name, mirror=mirror, quiet=quiet) and not quiet:
        print(f"{name}: ok ({entry['size']:,} bytes, sha256 checked)", file=sys.stderr)
    return dest


def export_retinaface(checkpoint_dir: str | Path, force: bool = False, quiet: bool = False) -> Path:
    """Write retinaface_mnet025.onnx (dynamic batch and size) from the verified .pth."""
    checkpoint_dir = Path(checkpoint_dir)
    out = checkpoint_dir / "retinaface_mnet025.onnx"
    if out.is_file() and not force:
        return out
    pth = require(checkpoint_dir, "retinaface_mnet025.pth")
    try:
        from engines.detectors.retinaface_net import export_onnx
    except ImportError as exc:
        raise ModelFileError(
            f"exporting RetinaFace to ONNX needs PyTorch ({exc}): pip install 'facestream[torch]'"
        ) from exc
    export_onnx(pth, out)
    if not quiet:
        print(f"{out.name}: exported from {pth.name}", file=sys.stderr)
    return out


def ensure_models(
    checkpoint_dir: str | Path,
    mirror: str | Path | None = None,
    export: bool = True,
    quiet: bool = False,
    names: Iterable[str] | None = None,
) -> Path:
    """Fetch every manifest file (or ``names``) and export the derived ONNX files."""
    checkpoint_dir = Path(checkpoint_dir)
    for name in names or manifest():
        fetch(name, checkpoint_dir, mirror=mirror, quiet=quiet)
    if export:
        export_retinaface(checkpoint_dir, quiet=quiet)
    return checkpoint_dir

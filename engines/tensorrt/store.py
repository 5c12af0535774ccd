"""Optional shared engine store on S3 or MinIO: look up before building, upload after.

``ENGINE_STORE=s3://bucket/prefix`` turns it on; ``ENGINE_STORE_ENDPOINT`` (or boto3's own
``AWS_ENDPOINT_URL``) points it at MinIO or another S3-compatible server; credentials come from
boto3's usual chain and are never printed. Engine names already carry model, precision,
architecture and TensorRT version, so one bucket serves a whole fleet: the first machine of a
kind builds, the others download. Downloads land atomically and the cache re-checks the JSON and
the engine's sha256 before anything is used. boto3 is imported only when a store is configured.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from engines.errors import EngineError

STORE_ENV = "ENGINE_STORE"
ENDPOINT_ENV = "ENGINE_STORE_ENDPOINT"


def _meta_name(engine_name: str) -> str:
    return str(Path(engine_name).with_suffix(".json"))


class EngineStore:
    """Engines and their JSON under ``s3://bucket/prefix/``."""

    def __init__(self, url: str, endpoint_url: str | None = None, client=None) -> None:
        if not url.startswith("s3://") or len(url) <= 5:
            raise EngineError(f"{STORE_ENV}={url!r} is not an s3://bucket/prefix address")
        bucket, _, prefix = url[5:].partition("/")
        self.url = url.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self._client = client

    @classmethod
    def from_env(cls, env: dict | None = None) -> EngineStore | None:
        env = os.environ if env is None else env
        url = env.get(STORE_ENV, "").strip()
        if not url:
            return None
        return cls(url, endpoint_url=env.get(ENDPOINT_ENV) or None)

    def __str__(self) -> str:
        return self.url

    @property
    def client(self):
        if self._client is None:
            try:
                import boto3
            except ImportError as exc:
                raise EngineError(f"{STORE_ENV} is set but boto3 is not installed ({exc}): pip install 'facestream[s3]'"
                                  ) from exc
            self._client = boto3.client("s3", endpoint_url=self.endpoint_url)
        return self._client

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _error(self, what: str, exc: Exception) -> EngineError:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return EngineError(f"engine store {self.url}: {what} failed ({text})")

    def _missing(self, exc: Exception) -> bool:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def fetch(self, name: str, dest_dir: str | Path) -> bool:
        """Download ``name`` and its JSON into ``dest_dir``; False when the store has no such engine.

        The engine is renamed into place before its JSON, so a reader never sees a JSON whose
        engine is not all there.
        """
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        tmps = []
        try:
            for item in (_meta_name(name), name):
                fd, tmp = tempfile.mkstemp(prefix=f".{item}.", suffix=".part", dir=dest_dir)
                os.close(fd)
                tmps.append(tmp)
                try:
                    self.client.download_file(self.bucket, self.key(item), tmp)
                except Exception as exc:  # botocore's ClientError, connection errors
                    if self._missing(exc):
                        return False
                    raise self._error(f"download of {item}", exc) from exc
            meta_tmp, engine_tmp = tmps
            for tmp in tmps:
                os.chmod(tmp, 0o644)
            os.replace(engine_tmp, dest_dir / name)
            os.replace(meta_tmp, dest_dir / _meta_name(name))
            return True
        finally:
            for tmp in tmps:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def put(self, engine_path: str | Path) -> None:
        """Upload an engine, then its JSON (the JSON last: its presence means the engine is complete)."""
        engine_path = Path(engine_path)
        meta = engine_path.with_suffix(".json")
        if not meta.is_file():
            raise EngineError(f"engine {engine_path.name} has no JSON beside it: not uploaded")
        for path in (engine_path, meta):
            try:
                self.client.upload_file(str(path), self.bucket, self.key(path.name))
            except Exception as exc:
                raise self._error(f"upload of {path.name}", exc) from exc

    def names(self) -> list[str]:
        """Engine file names in the store (for `build-engines --list` and tests)."""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else "")
            keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
        except Exception as exc:
            raise self._error("listing", exc) from exc
        return sorted(Path(k).name for k in keys if k.endswith(".engine"))

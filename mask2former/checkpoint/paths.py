"""Where a checkpoint named by a path or URL lives on disk.

* a local file: itself;
* ``detectron2://X``: ``https://dl.fbaipublicfiles.com/detectron2/X`` (detectron2's model zoo);
* ``http(s)://host/a/b/file``: cached at ``<cache dir>/a/b/file`` (the query string is not part
  of the name), downloaded once when missing.

The cache dir is ``$MASK2FORMER_CACHE`` if set, else ``$FVCORE_CACHE``, else
``~/.torch/iopath_cache`` -- the layout detectron2 / iopath use, so files already downloaded
by detectron2 are reused. Set ``MASK2FORMER_OFFLINE=1`` to never try the network. Without a
network, put the file at the path the error message names.
"""
from __future__ import annotations

import logging
import os
import posixpath
import shutil
import tempfile
import urllib.request
from typing import Optional
from urllib.parse import urlparse

__all__ = ["D2_MODEL_ZOO_PREFIX", "get_cache_dir", "to_url", "url_to_cache_path", "resolve_checkpoint_path"]

logger = logging.getLogger(__name__)

D2_MODEL_ZOO_PREFIX = "https://dl.fbaipublicfiles.com/detectron2/"
_DOWNLOAD_TIMEOUT_S = 60


def get_cache_dir() -> str:
    """``$MASK2FORMER_CACHE``, else ``$FVCORE_CACHE``, else ``~/.torch/iopath_cache``."""
    cache = os.environ.get("MASK2FORMER_CACHE") or os.environ.get("FVCORE_CACHE") or "~/.torch/iopath_cache"
    return os.path.expanduser(cache)


def to_url(path: str) -> Optional[str]:
    """The http(s) URL that ``path`` names (``detectron2://`` expanded), or None for local paths."""
    if path.startswith("detectron2://"):
        return D2_MODEL_ZOO_PREFIX + path[len("detectron2://") :]
    if path.startswith(("http://", "https://")):
        return path
    return None


def url_to_cache_path(url: str, cache_dir: Optional[str] = None) -> str:
    """Local cache location of ``url``: ``<cache dir>/<url path>`` (query string dropped).

    The URL path is normalised as a URL client would (``a/./b`` -> ``a/b``, ``a/../b`` -> ``b``,
    ``..`` above the root dropped; backslashes and NUL are refused), so the result can never
    leave the cache dir: ``https://host/../../etc/passwd`` is cached as ``<cache>/etc/passwd``.

    Raises:
        ValueError: the URL names no file, or its path holds a backslash or NUL byte.
    """
    parsed = urlparse(url)
    if "\\" in parsed.path or "\x00" in parsed.path:
        raise ValueError(f"URL {url!r}: backslashes and NUL bytes are not allowed in a checkpoint URL")
    relative = posixpath.normpath("/" + parsed.path).lstrip("/")
    if not relative or relative == "." or parsed.path.endswith("/"):
        raise ValueError(f"URL {url!r} does not name a file")
    root = os.path.abspath(cache_dir or get_cache_dir())
    local = os.path.abspath(os.path.join(root, *relative.split("/")))
    if os.path.commonpath([root, local]) != root or local == root:  # defence in depth
        raise ValueError(f"URL {url!r} would be cached outside the cache dir {root!r}")
    return local


def _offline() -> bool:
    return os.environ.get("MASK2FORMER_OFFLINE", "").lower() not in ("", "0", "false", "no")


def _download(url: str, destination: str) -> None:
    """Download ``url`` to ``destination`` atomically (temp file in the same dir + rename)."""
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(destination), prefix=".download-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            shutil.copyfileobj(response, out)
        os.replace(tmp, destination)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def resolve_checkpoint_path(path: str) -> str:
    """Local file for a checkpoint path or URL, downloading into the cache when needed.

    Raises:
        FileNotFoundError: a local path that does not exist, or a URL that is neither cached
            nor downloadable; the message names the URL to fetch and where to put it.
    """
    if path.startswith("hf://"):  # Hugging Face hub: its own cache (see hf_checkpoint.resolve_hf_uri)
        from .hf_checkpoint import resolve_hf_uri

        return resolve_hf_uri(path)
    url = to_url(path)
    if url is None:
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")):
            return path  # a Hugging Face save_pretrained folder
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Checkpoint file {path!r} does not exist")
        return path
    local = url_to_cache_path(url)
    if os.path.isfile(local):
        return local
    fix = (
        f"Download {url} and save it as {local} (cache dir from $MASK2FORMER_CACHE, else "
        "$FVCORE_CACHE, else ~/.torch/iopath_cache)."
    )
    if _offline():
        raise FileNotFoundError(f"Checkpoint {path!r} is not cached and MASK2FORMER_OFFLINE is set. {fix}")
    logger.info(f"Downloading {url} to {local} ...")
    try:
        _download(url, local)
    except Exception as err:  # no network, HTTP error, unwritable cache...
        raise FileNotFoundError(
            f"Checkpoint {path!r} is not cached and could not be downloaded ({type(err).__name__}: {err}). {fix}"
        ) from err
    return local

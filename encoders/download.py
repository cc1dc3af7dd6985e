"""Checkpoints named by URL: downloaded once into a cache, verified, then read like any local file.

The conventions are torch.hub's (`download_url_to_file`, `load_state_dict_from_url`), so a file
fetched here is where a reader of torch.hub would look for it and checked the way they expect:

- the cache is $FM_CACHE/weights, else $XDG_CACHE_HOME/fm3d/weights, else ~/.cache/fm3d/weights;
- the file keeps the name the URL gives it. Unlike torch.hub it sits in a folder named after the
  URL, because several publishers give every file the same name (AnatCL's five folds are all
  `weights.pth`) and torch.hub would silently hand back whichever fold came first;
- a `#sha256=<64 hex digits>` fragment (pip's spelling), or the SHA-256 the caller knows from the
  published table, is checked; so is a hash prefix in the file name (`name-<hex>.ext`), which is
  what torch.hub's `check_hash=True` verifies;
- the download goes to a temporary file in the same folder and is renamed (os.replace) only once it
  is complete and verified, so the final name never holds a partial or corrupt file;
- a file already in the cache is used without touching the network (and re-verified when a hash
  is known, so a cache filled under another expectation cannot slip through).

Errors (no network, an HTTP error, a short read, a checksum mismatch) are `DownloadError`, an
`fm.core.errors.InputFileError` that names the URL and the reason and says how to proceed by hand;
urllib's own exceptions never reach the user. Standard library and tqdm only.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from fm.core.cache import cache_folder
from fm.core.checksums import content_hash
from fm.core.errors import InputError, InputFileError
from fm.core.version import __version__

URL_SCHEMES = ("https://", "http://")
#: Hosts plain http:// may come from: a server on this machine (a local mirror, the tests); anything
#: else could be altered on the way unseen, with no checksum to catch it.
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
#: torch.hub's check_hash reads a hash prefix after a '-' of the file name, before the suffix. Here it
#: needs 8+ hex digits and a letter among them: digits alone read as a date or a version, not a hash.
_NAME_HASH = re.compile(r"-(?=[0-9]*[a-f])([a-f0-9]{8,64})\.")
_SHA256 = re.compile(r"[a-f0-9]{64}")
_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60
_BY_HAND = "download it by hand (a browser, curl -L) and pass the file's path instead"


class DownloadError(InputFileError):
    """A checkpoint URL could not be turned into a verified local file. `path` is the URL."""

    def __init__(self, url: str, problem: str):
        super().__init__(url, problem)
        self.url = url


class ChecksumMismatchError(DownloadError):
    """The bytes downloaded (or found in the cache) are not the ones the checksum names."""

    def __init__(self, url: str, expected: str, actual: str, where: str):
        super().__init__(url, f"SHA-256 mismatch: expected {expected}, got {actual} ({where})")
        self.expected, self.actual = expected, actual


def is_url(source: str | os.PathLike) -> bool:
    return str(source).startswith(URL_SCHEMES)


def weights_cache() -> Path:
    """The folder downloaded checkpoints live in: `weights` in fm.core.cache's folder."""
    return cache_folder() / "weights"


def split_checksum(url: str) -> tuple[str, str | None]:
    """(the URL without its fragment, the SHA-256 the fragment names or None)."""
    plain, _, fragment = url.partition("#")
    if not fragment:
        return plain, None
    key, _, value = fragment.partition("=")
    value = value.lower()
    if key != "sha256" or not _SHA256.fullmatch(value):
        raise InputError(f"{url}: the part after '#' must be sha256=<64 hex digits>, got #{fragment}")
    return plain, value


def cached_file(url: str) -> Path:
    """Where the file of `url` (fragment ignored) is kept: <cache>/<URL digest>/<name from the URL>."""
    plain, _ = split_checksum(url)
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(plain).path)).name or "download"
    return weights_cache() / hashlib.sha256(plain.encode()).hexdigest()[:16] / name


def download_weights(url: str, sha256: str | None = None, *, progress: bool = True) -> Path:
    """The local path of the checkpoint at `url`, downloading it the first time.

    Args:
        url: https:// address of the file (http:// from this machine only), optionally ending in #sha256=<hex>.
        sha256: the file's SHA-256 when the caller knows it (e.g. from the published table);
            must agree with the fragment if both are given.
        progress: show a tqdm bar while downloading (only on a terminal).

    Returns:
        The cached file, complete and verified against every checksum known.

    Raises:
        DownloadError: the server cannot be reached, answers with an HTTP error, or stops early.
        ChecksumMismatchError: the bytes are not the ones a checksum names (nothing is kept).
    """
    if not is_url(url):
        raise InputError(f"{url}: not an http(s) URL")
    if url.startswith("http://") and urllib.parse.urlparse(url).hostname not in _LOOPBACK:
        raise InputError(f"{url}: use https:// (plain http is accepted from this machine only: {', '.join(_LOOPBACK)})")
    plain, from_fragment = split_checksum(url)
    if sha256 is not None:
        sha256 = sha256.lower()
        if from_fragment is not None and from_fragment != sha256:
            raise InputError(f"{url}: the #sha256 fragment disagrees with the published SHA-256 {sha256}")
    expected = from_fragment or sha256
    target = cached_file(plain)
    if target.is_file():
        if expected is not None or _name_hash(target.name) is not None:
            where = f"cached file {target}; delete it to download again"
            _verify(plain, content_hash(target), expected, target.name, where=where)
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as err:
        raise InputFileError(target.parent, f"cannot write the weights cache ({_reason(err)}); set FM_CACHE") from None
    try:
        with os.fdopen(handle, "wb") as out:
            actual = _fetch(plain, out, progress)
        _verify(plain, actual, expected, target.name, where="downloaded file removed")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def _fetch(url: str, out, progress: bool) -> str:
    """Stream `url` into `out`; the SHA-256 of what arrived. Every failure becomes a DownloadError."""
    digest, received, total = hashlib.sha256(), 0, None
    try:
        request = urllib.request.Request(url, headers={"User-Agent": f"fm3d/{__version__}"})
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=Path(urllib.parse.urlparse(url).path).name,
                disable=None if progress else True,
            ) as bar:
                while block := response.read(_CHUNK_BYTES):
                    out.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as err:
        raise DownloadError(url, f"the server answered HTTP {err.code} {err.reason}; {_BY_HAND}") from None
    except urllib.error.URLError as err:
        raise DownloadError(url, f"cannot reach the server ({_reason(err.reason)}); {_BY_HAND}") from None
    except ValueError as err:  # what urllib raises for a malformed address
        raise DownloadError(url, f"is not a valid URL ({_reason(err)})") from None
    except (http.client.HTTPException, OSError) as err:  # IncompleteRead, reset connections, timeouts
        if not (isinstance(err, http.client.IncompleteRead) and total is not None):
            raise DownloadError(url, f"the download broke off ({_reason(err)}); {_BY_HAND}") from None
    if total is not None and received != total:
        raise DownloadError(url, f"the download broke off after {received} of {total} bytes; try again, or {_BY_HAND}")
    return digest.hexdigest()


def _verify(url: str, actual: str, expected: str | None, name: str, where: str) -> None:
    if expected is not None and actual != expected:
        raise ChecksumMismatchError(url, expected, actual, where)
    prefix = _name_hash(name)
    if prefix is not None and not actual.startswith(prefix):
        raise ChecksumMismatchError(url, f"{prefix}... (from the file name)", actual, where)


def _name_hash(name: str) -> str | None:
    match = _NAME_HASH.search(name)
    return match.group(1) if match else None


def _reason(err: object) -> str:
    text = str(err).strip()
    return text or type(err).__name__

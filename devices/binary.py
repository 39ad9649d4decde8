"""LiteRT's prebuilt `benchmark_model` for a phone's ABI: the one the user
gives (``--benchmark-binary`` or $ODML_BENCHMARK_BINARY), else a cached
copy, else fetched once from LiteRT's published binaries
(``https://storage.googleapis.com/litert/binaries/<version>/android_arm64/
benchmark_model``, the layout LiteRT's own CLI, litert-cli, downloads from).

The fetch goes over HTTPS to a temporary name in the cache folder
(``$ODML_HOME/bin/litert-<version>/<abi>/``); only a complete download
(as long as the server said) is renamed into place, with its sha256
written beside it. Every later use checks the copy against that sha256
and refuses one that no longer matches: this catches a copy changed after
the fetch, not a bad first download (trust on first use; LiteRT publishes
no checksums to pin). ``$ODML_LITERT_BINARIES_URL``
points the fetch at a mirror (the tests serve a stand-in on loopback)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from odml.errors import OdmlError

BINARY_ENV = "ODML_BENCHMARK_BINARY"
URL_ENV = "ODML_LITERT_BINARIES_URL"
LITERT_VERSION = "2.2.0"  # the LiteRT release whose published benchmark_model odml fetches
BASE_URL = "https://storage.googleapis.com/litert/binaries"
# Android ABI -> the folder LiteRT publishes its binaries under (it publishes 64-bit ARM only)
PUBLISHED = {"arm64-v8a": "android_arm64"}
TOOL = "benchmark_model"


class BinaryError(OdmlError):
    pass


def _executable(p: Path, what: str) -> Path:
    if not p.is_file():
        raise BinaryError(f"{p}: {what} not found")
    if not os.access(p, os.X_OK):
        raise BinaryError(f"{p}: {what} is not executable (chmod +x)")
    return p


def cache_path(abi: str) -> Path:
    from odml.files import data_home

    return data_home() / "bin" / f"litert-{LITERT_VERSION}" / abi / TOOL


def url_for(abi: str) -> str:
    if abi not in PUBLISHED:
        raise BinaryError(f"ABI {abi!r}: LiteRT publishes no benchmark_model for it (only "
                          f"{', '.join(PUBLISHED)}); build TFLite's benchmark_model for {abi} and give "
                          f"--benchmark-binary")
    base = os.environ.get(URL_ENV, BASE_URL).rstrip("/")
    return f"{base}/{LITERT_VERSION}/{PUBLISHED[abi]}/{TOOL}"


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached(abi: str) -> Path | None:
    """The cached copy for ``abi``, checked against the sha256 recorded when
    it was fetched; None when there is none."""
    p = cache_path(abi)
    if not p.exists():
        return None
    rec = p.with_name(TOOL + ".sha256")
    want = rec.read_text().split()[0] if rec.is_file() and rec.read_text().strip() else None
    if want is None:
        raise BinaryError(f"{p}: cached benchmark_model has no recorded sha256 ({rec.name}); delete {p.parent} "
                          "to fetch it again")
    got = _sha256(p)
    if got != want:
        raise BinaryError(f"{p}: cached benchmark_model's sha256 {got[:12]}... no longer matches the one recorded "
                          f"when it was fetched ({want[:12]}...); refusing it: delete {p.parent} to fetch it again")
    return _executable(p, "cached benchmark_model")


def fetch(abi: str, timeout_s: float = 120.0, say=None) -> Path:
    """Download LiteRT's benchmark_model for ``abi`` into the cache."""
    import urllib.error
    import urllib.request

    from urllib.parse import urlparse

    url = url_for(abi)
    u = urlparse(url)
    if u.scheme != "https" and not (u.scheme == "http" and u.hostname in ("127.0.0.1", "localhost", "::1")):
        raise BinaryError(f"${URL_ENV}: {url}: benchmark_model is fetched over https only (plain http on loopback "
                          "alone, for a local mirror)")
    dest = cache_path(abi)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BinaryError(f"{dest.parent}: cannot create the cache folder ({e.strerror}); set ODML_HOME to a "
                          "writable folder or give --benchmark-binary") from None
    tmp = dest.with_name(f".{TOOL}.{os.getpid()}.part")
    offline = (f"cannot fetch benchmark_model for {abi} from {url} ({{why}}); try again, or (offline) download it "
               f"on a connected machine and give --benchmark-binary (or set {BINARY_ENV})")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r, open(tmp, "wb") as f:
            expected = r.headers.get("Content-Length")
            n = 0
            while True:
                chunk = r.read(1 << 20)
                if not chunk:
                    break
                f.write(chunk)
                h.update(chunk)
                n += len(chunk)
        if expected is not None and n != int(expected):
            raise BinaryError(offline.format(why=f"download cut short: {n} of {expected} bytes"))
        if n == 0:
            raise BinaryError(offline.format(why="the server sent an empty file"))
    except urllib.error.HTTPError as e:
        tmp.unlink(missing_ok=True)
        raise BinaryError(offline.format(why=f"HTTP {e.code}")) from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, BinaryError):
            raise
        reason = getattr(e, "reason", None) or e
        raise BinaryError(offline.format(why=" ".join(str(reason).split())[:120])) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    digest = h.hexdigest()
    from odml.files import write_text_atomic

    try:
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        write_text_atomic(dest.with_name(TOOL + ".sha256"), f"{digest}  {TOOL}\n")
        os.replace(tmp, dest)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise BinaryError(f"{dest}: cannot keep the fetched benchmark_model ({e.strerror})") from None
    if say:
        say(f"fetched LiteRT {LITERT_VERSION}'s benchmark_model for {abi} from {url} into {dest} "
            f"(sha256 {digest[:12]}...)")
    return dest


def find_binary(binary: str | Path | None, abi: str | None = None, say=None) -> Path:
    """The benchmark_model to push: the one given, else the cached copy for
    ``abi``, else fetched. Without ``abi`` (the phone not asked yet) only a
    given binary is found."""
    value = binary or os.environ.get(BINARY_ENV)
    if value:
        return _executable(Path(value), "benchmark binary")
    if abi is None:
        raise BinaryError(f"no benchmark_model binary: give --benchmark-binary or set {BINARY_ENV}")
    url_for(abi)  # an ABI LiteRT publishes nothing for is refused before anything else
    return cached(abi) or fetch(abi, say=say)


def status(abi: str | None) -> str:
    """What `odml devices` says about the benchmark_model a phone of ``abi`` would get."""
    if os.environ.get(BINARY_ENV):
        return f"{os.environ[BINARY_ENV]} (${BINARY_ENV})"
    if not abi:
        return "unknown ABI: give --benchmark-binary"
    try:
        url = url_for(abi)
        have = cached(abi)
    except BinaryError as e:
        return str(e)
    return f"cached {have} (sha256 checked)" if have else f"fetched on first use from {url}"

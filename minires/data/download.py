"""Fetching, verifying and unpacking files without ever leaving a broken one.

Every file minires downloads goes to a temporary name in the destination folder first
(``minires.files``) and is renamed into place (``os.replace``, atomic on one filesystem)
only once it is complete and its hash matches the published one. Archives are
extracted into a temporary folder that is renamed as a whole. So an interrupted
download, a corrupt mirror or a full disk leaves either nothing or the previous good
state behind, never a half-written file that would fail later with a confusing error.

Files found on disk are verified too, not only after a download: ``verify_file``
hashes a file once and remembers the digest, keyed by the file's size and modification
time, in ``.minires-verified.json`` next to it (and in memory when that folder is
read-only). Later loads of the unchanged file cost one ``stat``; a changed file (new
size or mtime) is hashed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import PurePosixPath

from ..files import atomic_write, remove_stale_temporaries, temporary_path

_CHUNK = 1 << 20  # 1 MiB: large enough to be fast, small enough to never hold a file in memory
VERIFIED_FILE = ".minires-verified.json"
_MAX_VERIFIED_BYTES = 1 << 20  # a cache larger than this is ignored (and rewritten)
_verified_in_memory = {}  # (folder, name) -> record: for folders minires cannot write to


class DatasetError(RuntimeError):
    """A data set or weights file is missing, truncated, corrupt, or could not be downloaded.

    The message always names the file, what was expected (size, hash or record count) and
    where the files should be put, so the user can fix it by hand when offline.
    """


def _new_digest(algorithm: str):
    # MD5 because that is what the dataset authors publish; this is an integrity check,
    # not a security one (usedforsecurity=False keeps it working on FIPS systems).
    if algorithm == "md5":
        return hashlib.md5(usedforsecurity=False)
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown hash algorithm {algorithm!r}: expected 'md5' or 'sha256'")


def file_digest(path, algorithm: str = "md5") -> str:
    """The hex digest of a file (``'md5'`` or ``'sha256'``), read in chunks."""
    digest = _new_digest(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def md5sum(path) -> str:
    """The MD5 hex digest of a file, read in chunks."""
    return file_digest(path, "md5")


def _expected(md5: str | None, sha256: str | None) -> tuple:
    """(algorithm, expected hex digest or prefix) from the one hash given."""
    if (md5 is None) == (sha256 is None):
        raise ValueError("give exactly one of md5= and sha256= (a full digest or a prefix)")
    algorithm, value = ("md5", md5) if md5 is not None else ("sha256", sha256)
    value = value.lower()
    if len(value) < 8 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"{algorithm}={value!r} is not a hex digest (or a prefix of 8 or "
                         "more hex digits)")
    return algorithm, value


def _label(algorithm: str) -> str:
    return {"md5": "MD5", "sha256": "SHA-256"}[algorithm]


# --------------------------------------------------------------------------- verified files


def _read_cache(folder: str) -> dict:
    path = os.path.join(folder, VERIFIED_FILE)
    try:
        if os.path.getsize(path) > _MAX_VERIFIED_BYTES:
            return {}
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):
        return {}  # absent, unreadable or damaged: verify again and rewrite it
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}


def _write_cache(folder: str, files: dict) -> None:
    data = json.dumps({"about": "hashes minires computed, by file size and mtime; safe to "
                                "delete", "files": files}, indent=1, sort_keys=True)
    with contextlib.suppress(OSError):  # a read-only data folder: remember in memory only
        atomic_write(os.path.join(folder, VERIFIED_FILE),
                     lambda f: f.write(data.encode("utf-8")))


def verified_digest(path, algorithm: str = "md5") -> str:
    """The digest of ``path``, computed once per (size, mtime) of the file and remembered."""
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    stat = os.stat(path)
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    record = _verified_in_memory.get((folder, name))
    if not (isinstance(record, dict) and all(record.get(k) == v for k, v in key.items())
            and isinstance(record.get(algorithm), str)):
        cache = _read_cache(folder)
        record = cache.get(name)
        if not (isinstance(record, dict) and all(record.get(k) == v for k, v in key.items())
                and isinstance(record.get(algorithm), str)):
            previous = record if isinstance(record, dict) and all(
                record.get(k) == v for k, v in key.items()) else {}
            record = {**previous, **key, algorithm: file_digest(path, algorithm)}
            cache[name] = record
            _write_cache(folder, cache)
        _verified_in_memory[(folder, name)] = record
    return record[algorithm]


def verify_file(path, *, md5: str | None = None, sha256: str | None = None, what: str = "file",
                where: str = "") -> None:
    """Raise ``DatasetError`` unless ``path``'s MD5 (or SHA-256, or its prefix) matches.

    The digest is computed once and cached by the file's size and mtime (see the module
    docstring). The message names the file, both hashes and ``where`` the files belong.
    """
    algorithm, expected = _expected(md5, sha256)
    found = verified_digest(path, algorithm)
    if not found.startswith(expected):
        raise DatasetError(
            f"{what} {os.fspath(path)} has {_label(algorithm)} {found}; expected "
            f"{'one starting with ' if len(expected) < len(found) else 'the official '}"
            f"{expected}: the file is corrupt, truncated, or not the official one. Delete "
            f"it and fetch it again.{where}"
        )


def _remember(path: str, algorithm: str, digest: str) -> None:
    """Record a digest just computed while downloading ``path`` (saves hashing it again)."""
    folder, name = os.path.split(os.path.abspath(path))
    stat = os.stat(path)
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, algorithm: digest}
    cache = _read_cache(folder)
    cache[name] = record
    _write_cache(folder, cache)
    _verified_in_memory[(folder, name)] = record


# --------------------------------------------------------------------------- download


def download_url(url: str, path, md5: str | None = None, *, sha256: str | None = None,
                 where: str = "", timeout: float = 60.0, max_bytes: int | None = None) -> None:
    """Download ``url`` to ``path``; ``path`` appears only if complete with the given hash.

    ``md5`` or ``sha256`` (a full hex digest or a prefix of at least 8 digits, as
    torchvision publishes in its file names) is the hash the bytes must have. ``where``
    is appended to error messages: where to put the file by hand. ``max_bytes`` stops a
    server that sends more than it should. Raises ``DatasetError`` when offline, on an
    HTTP error, on a truncated transfer or on a hash mismatch.
    """
    algorithm, expected = _expected(md5, sha256)
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(folder)  # what killed downloads left behind
    # The temporary file lives in the destination folder so os.replace stays a rename on
    # one filesystem (atomic) rather than a copy across filesystems.
    tmp = temporary_path(path)
    try:
        digest = _new_digest(algorithm)
        received = 0
        with open(tmp, "xb") as out:
            # Looked up at call time (not imported by name) so tests can serve bytes from
            # memory by monkeypatching urllib.request.urlopen.
            with urllib.request.urlopen(url, timeout=timeout) as response:
                length = getattr(response, "headers", None)
                length = length.get("Content-Length") if length is not None else None
                for block in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(block)
                    out.write(block)
                    received += len(block)
                    if max_bytes is not None and received > max_bytes:
                        raise DatasetError(
                            f"downloading {url}: the server sent more than {max_bytes} bytes, "
                            f"far more than the file should have; stopped, nothing was "
                            f"written to {path}.{where}")
            if length is not None and length.isdigit() and received != int(length):
                raise DatasetError(
                    f"downloading {url} was cut short: {received} of {int(length)} bytes "
                    f"received. The download was deleted; nothing was written to {path}. "
                    f"Try again.{where}")
            out.flush()
            os.fsync(out.fileno())
        found = digest.hexdigest()
        if not found.startswith(expected):
            raise DatasetError(
                f"downloaded {url} but its {_label(algorithm)} is {found} ({received} bytes "
                f"received); expected {_label(algorithm)} "
                f"{'starting with ' if len(expected) < len(found) else ''}{expected}. The "
                f"download is corrupt or truncated and was deleted; nothing was written to "
                f"{path}. Try again later.{where}"
            )
        os.replace(tmp, path)
    except urllib.error.HTTPError as error:
        raise DatasetError(
            f"could not download {url}: the server answered HTTP {error.code} "
            f"({error.reason}). Nothing was written to {path}.{where}"
        ) from error
    except urllib.error.URLError as error:
        reason = getattr(error, "reason", error)
        raise DatasetError(
            f"could not download {url} ({reason}); are you offline? Nothing was written "
            f"to {path}.{where}"
        ) from error
    except (OSError, http.client.HTTPException) as error:
        # connection reset mid-stream, timeout, disk full, a malformed HTTP answer...
        raise DatasetError(
            f"downloading {url} to {path} failed ({error!r}); nothing was written.{where}"
        ) from error
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)
    _remember(path, algorithm, found)


def extract_tar_folder(archive, root, folder: str, verify=None, *, where: str = "") -> str:
    """Extract the regular files of ``folder/`` in a .tar.gz into ``root/folder`` atomically.

    Files are unpacked into a temporary folder inside ``root``; ``verify(temp_folder)`` may
    raise ``DatasetError`` (wrong size, wrong MD5); only a folder that passed is renamed to
    ``root/folder``. Only plain files directly inside ``folder/`` are written, each under
    its base name, so a hostile archive cannot write outside ``root`` (no links, no
    ``..``, no absolute paths). Returns the final folder path.
    """
    archive, root = os.fspath(archive), os.fspath(root)
    target = os.path.join(root, folder)
    if os.path.exists(target):
        raise DatasetError(
            f"cannot extract {archive}: {target} already exists but does not hold a complete "
            f"dataset. Remove or fix that folder and try again.{where}"
        )
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(dir=root, prefix=f".{folder}.extract-")
    try:
        inner = os.path.join(staging, folder)
        os.makedirs(inner)
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    parts = PurePosixPath(member.name).parts
                    if not (member.isfile() and len(parts) == 2 and parts[0] == folder):
                        continue
                    name = parts[1]
                    if name.startswith("."):
                        continue
                    source = tar.extractfile(member)
                    with source, open(os.path.join(inner, name), "wb") as out:
                        shutil.copyfileobj(source, out, _CHUNK)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
            raise DatasetError(
                f"could not extract {archive} ({error!r}); the archive is corrupt or "
                f"truncated. Delete it and download it again.{where}"
            ) from error
        if verify is not None:
            verify(inner)
        os.replace(inner, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target

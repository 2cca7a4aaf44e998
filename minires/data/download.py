"""Fetching and unpacking the official dataset archives without ever leaving a broken file.

Every file minires writes goes to a temporary name in the destination folder first and
is renamed into place (``os.replace``, atomic on one filesystem) only once it is complete
and its MD5 matches the published one. Archives are extracted into a temporary folder
that is renamed as a whole. So an interrupted download, a corrupt mirror or a full disk
leaves either nothing or the previous good state behind, never a half-written dataset
that would fail later with a confusing error.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import PurePosixPath

_CHUNK = 1 << 20  # 1 MiB: large enough to be fast, small enough to never hold a file in memory


class DatasetError(RuntimeError):
    """A dataset file is missing, truncated, corrupt, or could not be downloaded.

    The message always names the file, what was expected (size, MD5 or record count) and
    where the files should be put, so the user can fix it by hand when offline.
    """


def md5sum(path) -> str:
    """The MD5 hex digest of a file, read in chunks."""
    # MD5 because that is what the dataset authors publish; this is an integrity check,
    # not a security one (usedforsecurity=False keeps it working on FIPS systems).
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_url(url: str, path, md5: str, *, where: str = "", timeout: float = 60.0) -> None:
    """Download ``url`` to ``path``; ``path`` appears only if complete with the given MD5.

    ``where`` is appended to error messages: where to put the file by hand.
    Raises ``DatasetError`` when offline, on an HTTP error, or on an MD5 mismatch.
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    # The temporary file lives in the destination folder so os.replace stays a rename on
    # one filesystem (atomic) rather than a copy across filesystems.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".",
                               suffix=".part")
    try:
        digest = hashlib.md5(usedforsecurity=False)
        received = 0
        with os.fdopen(fd, "wb") as out:
            # Looked up at call time (not imported by name) so tests can serve bytes from
            # memory by monkeypatching urllib.request.urlopen.
            with urllib.request.urlopen(url, timeout=timeout) as response:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(block)
                    out.write(block)
                    received += len(block)
        if digest.hexdigest() != md5:
            raise DatasetError(
                f"downloaded {url} but its MD5 is {digest.hexdigest()} ({received} bytes "
                f"received); expected MD5 {md5}. The download is corrupt or truncated and "
                f"was deleted; nothing was written to {path}. Try again later.{where}"
            )
        os.replace(tmp, path)
    except urllib.error.URLError as error:  # also HTTPError
        reason = getattr(error, "reason", error)
        raise DatasetError(
            f"could not download {url} ({reason}); are you offline? Nothing was written "
            f"to {path}.{where}"
        ) from error
    except OSError as error:  # connection reset mid-stream, timeout, disk full...
        raise DatasetError(
            f"downloading {url} to {path} failed ({error!r}); nothing was written.{where}"
        ) from error
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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

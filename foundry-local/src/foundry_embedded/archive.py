"""FOUNDRY_MODEL_URL: a model folder fetched once, as a tar archive, from a web server into the data volume.

The archive is downloaded to a partial file, unpacked into a staging folder (regular files and folders only, inside
the staging folder: what a model folder holds, and nothing a hostile archive could use), then renamed into place in
one step, so a folder under the archive root is either complete or absent. One URL, one folder (named after a hash
of the URL): a restart with the same URL finds it and downloads nothing; a new URL replaces the old folder.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import tarfile
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit

CONFIG = "genai_config.json"  # what makes a folder an ONNX Runtime GenAI model folder
CHUNK_BYTES = 256 * 1024
# A server that sends nothing for this long has failed (a slow one that keeps sending is waited for).
STALL_SECONDS = 300
WHAT_TO_SERVE = (
    "Serve a .tar or .tar.gz of one model folder there (scripts/make-model builds a folder, "
    "`tar -czf NAME.tar.gz NAME` packs it), then restart the service"
)

Progress = Callable[[int, int | None], None]  # (bytes received, total bytes or None when the server does not say)


class ArchiveError(Exception):
    """The archive could not become a model folder. `state` is what /healthz says: "failed" when fetching or
    writing failed (try again later), "no_model" when what was fetched is not a model folder (fix the archive)."""

    def __init__(self, state: str, message: str) -> None:
        super().__init__(message)
        self.state = state
        self.message = message


class Cancelled(Exception):
    """The service is stopping."""


def shown(url: str) -> str:
    """The URL without any user:password in it, for messages and logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def folder_for(root: Path, url: str, name: str) -> Path:
    """Where the model folder of `url` lives once installed: ROOT/<hash of the URL>/<name>."""
    return root / hashlib.sha256(url.encode()).hexdigest()[:16] / name


def install(
    url: str, name: str, root: Path, progress: Progress, cancel: threading.Event, unpacking: Callable[[], None]
) -> Path:
    """Download, unpack and put in place the model folder of `url`; its path. Raises ArchiveError or Cancelled.

    `progress` is called as bytes arrive, `unpacking` once they all have."""
    target = folder_for(root, url, name)
    key = target.parent.name
    partial, staging = root / f".{key}.partial", root / f".{key}.staging"
    root.mkdir(parents=True, exist_ok=True)
    try:
        fetch(url, partial, progress, cancel)
        unpacking()
        shutil.rmtree(staging, ignore_errors=True)
        found = unpack(partial, staging, url)
        shutil.rmtree(target.parent, ignore_errors=True)
        target.parent.mkdir()
        found.rename(target)  # one step: the folder is complete or absent
    except OSError as exc:
        raise ArchiveError(
            "failed", f"Writing the model from FOUNDRY_MODEL_URL={shown(url)} into {root} failed: {exc}. Free disk "
            "space on the data volume, then restart the service.",
        ) from exc  # fmt: skip
    finally:
        partial.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    # One model per volume: what earlier URLs left is no longer served.
    for other in root.iterdir():
        if other != target.parent and not other.name.startswith("."):
            shutil.rmtree(other, ignore_errors=True)
    return target


def fetch(url: str, path: Path, progress: Progress, cancel: threading.Event) -> None:
    """GET `url` into `path`, reporting progress as bytes arrive; stops at the next chunk once `cancel` is set."""
    request = urllib.request.Request(url, headers={"User-Agent": "foundry-embedded"})  # noqa: S310 - http(s) only
    try:
        response = urllib.request.urlopen(request, timeout=STALL_SECONDS)  # noqa: S310 - as above
    except urllib.error.HTTPError as exc:
        raise ArchiveError(
            "failed", f"Downloading FOUNDRY_MODEL_URL={shown(url)} failed: the server answered HTTP {exc.code} "
            f"{exc.reason}. Check the URL (it must serve the archive itself), then restart the service.",
        ) from None  # fmt: skip
    except (OSError, ValueError) as exc:  # URLError, refused, no such host, TLS
        reason = getattr(exc, "reason", exc)
        raise ArchiveError(
            "failed", f"Downloading FOUNDRY_MODEL_URL={shown(url)} failed: the server could not be reached "
            f"({reason}). Check the URL and that this container reaches that server, then restart the service.",
        ) from None  # fmt: skip
    with response, path.open("wb") as out:
        length = response.headers.get("Content-Length", "")
        size = int(length) if length.isdigit() else None
        done = 0
        progress(done, size)
        while True:
            try:
                chunk = response.read1(CHUNK_BYTES)  # what has arrived, so that progress moves as bytes do
            except TimeoutError:
                raise ArchiveError(
                    "failed", f"Downloading FOUNDRY_MODEL_URL={shown(url)} stopped: the server sent nothing for "
                    f"{STALL_SECONDS} s after {done} bytes. Restart the service to try again.",
                ) from None  # fmt: skip
            except (OSError, http.client.HTTPException) as exc:
                raise ArchiveError(
                    "failed", f"Downloading FOUNDRY_MODEL_URL={shown(url)} stopped after {done} bytes: the connection "
                    f"broke ({type(exc).__name__}: {exc}). Restart the service to try again.",
                ) from None  # fmt: skip
            if cancel.is_set():
                raise Cancelled
            if not chunk:
                break
            out.write(chunk)
            done += len(chunk)
            progress(done, size)
    if size is not None and done < size:
        raise ArchiveError(
            "failed", f"Downloading FOUNDRY_MODEL_URL={shown(url)} stopped: the server closed the connection after "
            f"{done} of {size} bytes. Restart the service to try again.",
        )  # fmt: skip


def unpack(archive: Path, staging: Path, url: str) -> Path:
    """Unpack `archive` into `staging`; the model folder in it (its root or its one top folder)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            if (unsafe := next((m for m in members if not safe(m)), None)) is not None:
                raise ArchiveError(
                    "no_model", f"The archive at FOUNDRY_MODEL_URL={shown(url)} holds {unsafe.name!r}, which is not a "
                    f"plain file or folder inside the archive: refused. {WHAT_TO_SERVE}.",
                )  # fmt: skip
            staging.mkdir(parents=True)
            # The "data" filter where this Python has it (3.11.4+): the same rules again, and sane permissions.
            options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(staging, members=members, **options)  # noqa: S202 - every member checked above
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ArchiveError(
            "no_model", f"FOUNDRY_MODEL_URL={shown(url)} did not give a .tar or .tar.gz archive ({exc}). "
            f"{WHAT_TO_SERVE}.",
        ) from None  # fmt: skip
    if (staging / CONFIG).is_file():
        return staging
    folders = [p for p in staging.iterdir() if (p / CONFIG).is_file()]
    if len(folders) != 1:
        raise ArchiveError(
            "no_model", f"The archive at FOUNDRY_MODEL_URL={shown(url)} is not an ONNX Runtime GenAI model folder: no "
            f"{CONFIG} at its root or in one folder at its top. {WHAT_TO_SERVE}.",
        )  # fmt: skip
    return folders[0]


def safe(member: tarfile.TarInfo) -> bool:
    """A regular file or folder whose path stays inside the folder it is unpacked into."""
    path = PurePosixPath(member.name)
    return (member.isfile() or member.isdir()) and not path.is_absolute() and ".." not in path.parts

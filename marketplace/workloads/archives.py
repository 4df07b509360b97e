"""Checks a renter's input archive before anything is stored: the agent unpacks it into the
sandbox's work directory, so every entry must land inside that directory. The agent checks again
when it unpacks (workers/agent/workloads.py); this check makes a bad archive a 400 at submit
time rather than a failed workload later."""

import posixpath
import tarfile
import zlib
from typing import IO

from marketplace.core.errors import ApplicationError


def _bad(message: str, name: str) -> ApplicationError:
    return ApplicationError(message, code="workloads_bad_archive", extra={"entry": name[:200]})


def _inside(path: str) -> bool:
    normal = posixpath.normpath(path)
    return not (normal.startswith("/") or normal == ".." or normal.startswith("../"))


def archive_check(fileobj: IO[bytes], *, max_unpacked_bytes: int, max_members: int) -> int:
    """Reads a tar (optionally gzip/bz2/xz compressed) archive from `fileobj` and raises a 400
    for anything that could escape the work directory: absolute names, `..`, links pointing
    outside, device nodes and FIFOs; and for archives that unpack too large (a gzip bomb).
    Returns the unpacked size."""
    total = 0
    count = 0
    try:
        with tarfile.open(fileobj=fileobj, mode="r:*") as tar:
            for member in tar:
                count += 1
                if count > max_members:
                    raise _bad(f"The archive has more than {max_members} entries.", member.name)
                name = member.name
                if name.startswith("/") or not _inside(name):
                    raise _bad("An archive entry points outside the work directory.", name)
                if member.issym():
                    target = posixpath.join(posixpath.dirname(name), member.linkname)
                    if member.linkname.startswith("/") or not _inside(target):
                        raise _bad(
                            "A symlink in the archive points outside the work directory.", name
                        )
                elif member.islnk():
                    if member.linkname.startswith("/") or not _inside(member.linkname):
                        raise _bad(
                            "A hard link in the archive points outside the work directory.", name
                        )
                elif not (member.isfile() or member.isdir()):
                    raise _bad("The archive may hold only files, directories and links.", name)
                total += max(0, member.size)
                if total > max_unpacked_bytes:
                    raise ApplicationError(
                        f"The archive unpacks to more than {max_unpacked_bytes} bytes.",
                        code="workloads_archive_too_large",
                        status_code=413,
                        extra={"max_unpacked_bytes": max_unpacked_bytes},
                    )
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
        raise ApplicationError(
            f"The input archive is not a readable tar archive: {exc}",
            code="workloads_bad_archive",
        ) from None
    return total

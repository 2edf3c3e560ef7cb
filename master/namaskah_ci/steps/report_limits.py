"""What a job's reports may take on the master: `[limits] report_bytes` and `report_files` together.

`ReportBudget` is what is left of both while `PublishReports` uploads a job's
reports one by one. The upload writers are Buildbot's (`FileWriter`,
`DirectoryWriter`), bounded:

- `LimitedFileWriter` stores at most what is left (Buildbot's `maxsize`) and
  notes when the worker sent more (`overflow`): the file is then not kept,
  whatever the worker says of it. The worker is asked for one byte more than
  is left, so a file exactly as large as what is left is kept.
- `LimitedDirectoryWriter`: the worker sends a directory as a tar archive
  (at most what is left, plus `TAR_OVERHEAD` per entry for the archive's
  headers); before anything is unpacked, in a thread (not on the reactor,
  where Buildbot unpacks), the archive's entries are counted and their sizes
  added up (a sparse entry counts at its full size): over either limit,
  nothing is unpacked. Unpacking uses tarfile's `data` filter (no links out,
  no devices), as Buildbot does.

A report over a limit is refused in one line naming it and the setting:
"report X skipped: the job's reports exceed 256 MiB ([limits] report_bytes)".
"""

from __future__ import annotations

import dataclasses
import os
import tarfile
from typing import Literal

from buildbot.process import remotetransfer
from buildbot.util import unicode2bytes
from twisted.internet import defer, threads

TAR_OVERHEAD = 2048  # bytes per archive entry beyond its content: header, long-name header, padding
TAR_END = 20480  # the archive's end blocks, padded to tarfile's record size


def size_text(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit and not limit % (1 << 20) else f"{limit} bytes"


@dataclasses.dataclass
class ReportBudget:
    """What a job's reports may still take on the master (None: no limit)."""

    max_bytes: int = 0
    max_files: int = 0

    def __post_init__(self) -> None:
        self.bytes_left: int | None = self.max_bytes or None
        self.files_left: int | None = self.max_files or None

    def refusal(self, path: str, what: str) -> str:
        if what == "files":
            limit, key = f"{self.max_files} files", "report_files"
        else:
            limit, key = size_text(self.max_bytes), "report_bytes"
        return f"report {path} skipped: the job's reports exceed {limit} ([limits] {key})"

    def no_file_left(self) -> bool:
        return self.files_left is not None and self.files_left < 1

    def worker_maxsize(self, directory: bool) -> int | None:
        """What the worker may send: one byte more than is left (so it can say when a file is larger),
        for a directory's archive also its headers."""
        if self.bytes_left is None:
            return None
        if not directory:
            return self.bytes_left + 1
        entries = self.files_left if self.files_left is not None else 10000
        return self.bytes_left + TAR_OVERHEAD * (entries + 1) + TAR_END

    def spend(self, size: int, files: int) -> None:
        if self.bytes_left is not None:
            self.bytes_left -= size
        if self.files_left is not None:
            self.files_left -= files


class LimitedFileWriter(remotetransfer.FileWriter):
    """Buildbot's FileWriter storing at most `limit` bytes; `overflow`: the worker sent more."""

    def __init__(self, destfile: str, limit: int | None, mode: int | None) -> None:
        super().__init__(destfile, limit, mode)
        self.overflow = False
        self.received = 0

    def remote_write(self, data: str | bytes) -> None:
        data = unicode2bytes(data)
        self.received += len(data)
        if self.remaining is not None and len(data) > self.remaining:
            self.overflow = True
        super().remote_write(data)


class LimitedDirectoryWriter(remotetransfer.DirectoryWriter):
    """Buildbot's DirectoryWriter whose archive is checked against the budget, then unpacked in a
    thread (`unpacked`, None until then); `refused`: "bytes", "files", another reason, or ""."""

    def __init__(self, destroot: str, budget: ReportBudget, compress: str | None, mode: int | None) -> None:
        super().__init__(destroot, budget.worker_maxsize(directory=True), compress, mode)
        self.budget_bytes = budget.bytes_left
        self.budget_files = budget.files_left
        self.overflow = False
        self.refused = ""
        self.unpacked: defer.Deferred[None] | None = None
        self.stored = (0, 0)  # bytes, entries unpacked

    def remote_write(self, data: str | bytes) -> None:
        data = unicode2bytes(data)
        if self.remaining is not None and len(data) > self.remaining:
            self.overflow = True
        super().remote_write(data)

    def remote_unpack(self) -> None:
        self.remote_close()
        if self.overflow:
            self.refused = "bytes"
            return None
        self.unpacked = threads.deferToThread(self._unpack)  # type: ignore[no-untyped-call]  # unannotated in Twisted
        return None

    def _unpack(self) -> None:
        modes: dict[str | None, Literal["r:bz2", "r:gz"]] = {"bz2": "r:bz2", "gz": "r:gz"}
        mode: Literal["r", "r:bz2", "r:gz"] = modes.get(self.compress, "r")
        try:
            with tarfile.open(name=self.tarname, mode=mode) as archive:
                size = entries = 0
                for member in archive:  # headers only: the contents are skipped
                    entries += 1
                    size += member.size if member.isreg() else 0
                    if self.budget_files is not None and entries > self.budget_files:
                        self.refused = "files"
                        return
                    if self.budget_bytes is not None and size > self.budget_bytes:
                        self.refused = "bytes"
                        return
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(path=self.destroot, filter="data")
                else:  # pragma: no cover - Pythons before 3.11.4
                    archive.extractall(path=self.destroot)
                self.stored = (size, entries)
        except (tarfile.TarError, OSError, ValueError) as exc:
            self.refused = f"not unpacked: {exc}"
        finally:
            if os.path.exists(self.tarname):
                os.remove(self.tarname)

    def purge(self) -> None:
        """Buildbot purges a failed transfer at once: after the unpacking thread, if one runs."""
        if self.unpacked is not None and not self.unpacked.called:
            self.unpacked.addBoth(lambda result: (remotetransfer.DirectoryWriter.purge(self), result)[1])
        else:
            super().purge()

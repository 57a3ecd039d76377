"""The one place that turns a path a model asked for into a path on disk.

Public surface:
    SandboxError                  the single exception every refusal raises
    check_relative_path(path)     syntactic checks shared with config validation
    Sandbox(root)                 a directory the tools may touch, and nothing else
    Sandbox.within(repo_root, r)  REPO_ROOT/<r>, required to lie inside REPO_ROOT
    Sandbox.resolve / .file_for_reading / .directory / .file_for_writing
    Sandbox.read_text / .read_head / .write_text / .walk / .scan / .is_inside
    display_path(path)            a user path normalised for display
    Deadline                      a monotonic time budget shared by long operations

Every check is made on the *real* path (symlinks resolved, including the
parent of a file about to be created and the target of a dangling link), and
containment is tested on path segments, so a root of ``/a/ws`` never admits
``/a/ws2``. Files are opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked with
``fstat`` after opening, so a FIFO, device or socket is refused without ever
blocking and a file swapped for a link between the check and the open is not
followed. Writes go to a temporary file in the target's directory and are moved
into place with ``os.replace``, which replaces a directory entry and never
writes through a link.

Messages never contain absolute paths: they name the path the model gave.
"""

from __future__ import annotations

import codecs
import os
import stat
import tempfile
import time
import unicodedata
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_PATH_CHARS = 1024
MAX_SEGMENT_BYTES = 255
BINARY_SNIFF_BYTES = 8192
_READ_CHUNK = 64 * 1024


class SandboxError(Exception):
    """A path or operation was refused; the message is safe to show the model."""


class Deadline:
    """A time budget: `expired` turns true once `seconds` have passed."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    @property
    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self._end


def check_relative_path(path: object, *, what: str = "path") -> str:
    """Returns `path` if it is a safe relative path string, else raises.

    Refuses non-strings, empty and overlong paths, NUL bytes and other control
    characters, absolute paths and any ``..`` segment. Purely syntactic: it
    says nothing about what the path points at.
    """
    if not isinstance(path, str):
        raise SandboxError(f"The {what} must be a string.")
    if not path:
        raise SandboxError(f"The {what} is empty.")
    if len(path) > MAX_PATH_CHARS:
        raise SandboxError(f"The {what} is longer than {MAX_PATH_CHARS} characters.")
    if "\x00" in path:
        raise SandboxError(f"The {what} contains a NUL byte.")
    if any(unicodedata.category(ch) == "Cc" for ch in path):
        raise SandboxError(f"The {what} contains control characters.")
    if path.startswith(("/", "~")) or os.path.isabs(path):
        raise SandboxError(
            f"The {what} {path!r} is absolute; give a path relative to the root."
        )
    segments = path.split("/")
    if ".." in segments:
        raise SandboxError(f"The {what} {path!r} contains '..'.")
    try:
        too_long = any(len(s.encode("utf-8")) > MAX_SEGMENT_BYTES for s in segments)
    except UnicodeEncodeError:
        raise SandboxError(f"The {what} is not valid Unicode text.") from None
    if too_long:
        raise SandboxError(f"The {what} has a name longer than 255 bytes.")
    return path


def display_path(path: str) -> str:
    """The user's path without redundant separators and `.` segments."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return "/".join(parts) or "."


@dataclass(frozen=True)
class ReadResult:
    text: str
    truncated: bool
    next_offset: int | None
    """The line to continue from when `truncated`, else None."""


@dataclass(frozen=True)
class WalkEntry:
    relative: str
    """Path relative to the sandbox root, `/`-separated, as the model should use it."""
    real: Path
    is_dir: bool


class Sandbox:
    """A directory tree that tools may touch, and nothing outside it."""

    def __init__(self, root: Path | str) -> None:
        real = Path(os.path.realpath(root))
        if not real.is_dir():
            raise SandboxError("The tool's root directory does not exist.")
        self.root = real
        self._root_str = str(real)
        self._prefix = self._root_str.rstrip(os.sep) + os.sep

    @classmethod
    def within(cls, repo_root: Path | str, relative_root: str = ".") -> Sandbox:
        """The sandbox at `repo_root/relative_root`, refused unless inside `repo_root`."""
        check_relative_path(relative_root, what="root")
        outer = cls(repo_root)
        inner = Path(os.path.realpath(outer.root / relative_root))
        if not outer.is_inside(inner):
            raise SandboxError("The tool's root lies outside the repository root.")
        return cls(inner)

    # -- resolution -------------------------------------------------------

    def is_inside(self, real: Path | str) -> bool:
        """Whether an already-resolved path is the root or below it."""
        text = str(real)
        return text == self._root_str or text.startswith(self._prefix)

    def resolve(self, path: str) -> Path:
        """The real path of `path` (which may not exist), refused if outside the root."""
        check_relative_path(path)
        real = Path(os.path.realpath(self.root / path))
        if not self.is_inside(real):
            raise SandboxError(f"The path {path!r} leads outside the allowed root.")
        return real

    def file_for_reading(self, path: str) -> Path:
        """The real path of an existing regular file."""
        real = self.resolve(path)
        try:
            mode = os.stat(real).st_mode
        except FileNotFoundError:
            raise SandboxError(f"No such file: {path!r}.") from None
        except OSError as exc:
            raise SandboxError(f"Cannot access {path!r}: {exc.strerror}.") from None
        if stat.S_ISDIR(mode):
            raise SandboxError(f"{path!r} is a directory, not a file.")
        if not stat.S_ISREG(mode):
            raise SandboxError(f"{path!r} is not a regular file.")
        return real

    def directory(self, path: str) -> Path:
        """The real path of an existing directory."""
        real = self.resolve(path)
        if not real.exists():
            raise SandboxError(f"No such directory: {path!r}.")
        if not real.is_dir():
            raise SandboxError(f"{path!r} is not a directory.")
        return real

    def file_for_writing(self, path: str) -> Path:
        """The real path a write to `path` may replace or create.

        The parent directory is resolved and checked before the file, so a
        linked parent cannot smuggle a new file outside; an existing link (even
        a dangling one) must itself point inside the root.
        """
        check_relative_path(path)
        if path.endswith("/"):
            raise SandboxError(f"{path!r} names a directory, not a file.")
        candidate = self.root / path
        parent = Path(os.path.realpath(candidate.parent))
        if not self.is_inside(parent):
            raise SandboxError(f"The path {path!r} leads outside the allowed root.")
        if parent.exists() and not parent.is_dir():
            raise SandboxError(f"The parent of {path!r} is not a directory.")
        real = self.resolve(path)
        if real == self.root:
            raise SandboxError(f"{path!r} names the root directory, not a file.")
        try:
            mode = os.stat(real).st_mode
        except FileNotFoundError:
            return real
        if not stat.S_ISREG(mode):
            raise SandboxError(f"{path!r} exists and is not a regular file.")
        return real

    # -- operations -------------------------------------------------------

    def read_text(
        self,
        path: str,
        *,
        offset: int = 0,
        limit: int | None = None,
        max_bytes: int,
        deadline: Deadline,
    ) -> ReadResult:
        """Lines `offset` .. `offset + limit` of a UTF-8 text file, at most `max_bytes`."""
        real = self.file_for_reading(path)
        with self._open_regular(real, path) as fh:
            if b"\x00" in fh.read(BINARY_SNIFF_BYTES):
                raise SandboxError(f"{path!r} is a binary file.")
            fh.seek(0)
            line = 0
            while line < offset:
                if deadline.expired:
                    raise SandboxError(f"Timed out skipping to line {offset}.")
                chunk = fh.readline(_READ_CHUNK)
                if not chunk:
                    break
                if chunk.endswith(b"\n"):
                    line += 1
            data, taken, cut = bytearray(), 0, False
            while limit is None or taken < limit:
                budget = max_bytes - len(data)
                if budget <= 0:
                    cut = bool(fh.read(1))
                    break
                chunk = fh.readline(budget)
                if not chunk:
                    break
                data += chunk
                if chunk.endswith(b"\n"):
                    taken += 1
            else:
                cut = bool(fh.read(1))
        try:
            text = codecs.getincrementaldecoder("utf-8")().decode(bytes(data), not cut)
        except UnicodeDecodeError:
            raise SandboxError(f"{path!r} is not UTF-8 text.") from None
        return ReadResult(text, cut, offset + taken if cut else None)

    def read_head(self, real: Path, display: str, max_bytes: int) -> tuple[str, bool]:
        """Up to `max_bytes` of an already-resolved regular file as text.

        Raises SandboxError for binary or non-UTF-8 content.
        """
        with self._open_regular(real, display) as fh:
            data = fh.read(max_bytes + 1)
        cut = len(data) > max_bytes
        data = data[:max_bytes]
        if b"\x00" in data[:BINARY_SNIFF_BYTES]:
            raise SandboxError(f"{display!r} is a binary file.")
        try:
            text = codecs.getincrementaldecoder("utf-8")().decode(data, not cut)
        except UnicodeDecodeError:
            raise SandboxError(f"{display!r} is not UTF-8 text.") from None
        return text, cut

    def write_text(self, path: str, content: str) -> tuple[Path, int, bool]:
        """Atomically writes `content`; returns (real path, bytes written, created)."""
        real = self.file_for_writing(path)
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError:
            raise SandboxError("The content is not valid Unicode text.") from None
        real.parent.mkdir(parents=True, exist_ok=True)
        # mkdir may have walked through a link created since the check.
        if not self.is_inside(os.path.realpath(real.parent)):
            raise SandboxError(f"The path {path!r} leads outside the allowed root.")
        try:
            existing_mode = stat.S_IMODE(os.stat(real).st_mode)
        except FileNotFoundError:
            existing_mode = None
        fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=".agentry-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if existing_mode is not None:
                os.chmod(tmp, existing_mode)
            else:
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, real)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return real, len(data), existing_mode is None

    def walk(
        self,
        path: str,
        *,
        deadline: Deadline,
        exclude_dirs: frozenset[str] = frozenset(),
    ) -> Iterator[WalkEntry]:
        """Every regular file and directory under `path`, breadth-first, sorted.

        Links are resolved and skipped unless they stay inside the root; linked
        directories are reported but never descended (no escapes, no cycles).
        Stops silently when the deadline expires; callers check `deadline`.
        """
        start = self.directory(path)
        queue: deque[tuple[Path, str]] = deque([(start, display_path(path))])
        while queue:
            directory, rel_dir = queue.popleft()
            for entry in self.scan(directory, rel_dir, deadline=deadline):
                yield entry
                name = entry.relative.rsplit("/", 1)[-1]
                # A directory whose real path differs from where it was found
                # is a link: reported, never entered.
                is_linked = entry.real != directory / name
                if entry.is_dir and not is_linked and name not in exclude_dirs:
                    queue.append((entry.real, entry.relative))
                if deadline.expired:
                    return

    def scan(
        self, directory: Path, rel_dir: str, *, deadline: Deadline
    ) -> Iterator[WalkEntry]:
        """The entries of one real directory inside the root, sorted by name.

        Entries whose real path leaves the root, and anything that is neither a
        regular file nor a directory, are left out.
        """
        try:
            with os.scandir(directory) as it:
                names = sorted(e.name for e in it)
        except OSError:
            return
        for name in names:
            if deadline.expired:
                return
            if any(unicodedata.category(ch) == "Cc" for ch in name):
                continue
            entry_path = directory / name
            real = Path(os.path.realpath(entry_path))
            if not self.is_inside(real):
                continue
            try:
                mode = os.stat(real).st_mode
            except OSError:
                continue
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                continue
            relative = name if rel_dir == "." else f"{rel_dir}/{name}"
            yield WalkEntry(relative, real, stat.S_ISDIR(mode))

    # -- internals --------------------------------------------------------

    @staticmethod
    def _open_regular(real: Path, display: str):
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(real, flags)
        except OSError as exc:
            raise SandboxError(f"Cannot open {display!r}: {exc.strerror}.") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise SandboxError(f"{display!r} is not a regular file.")
            # Regular files ignore O_NONBLOCK; reads stay ordinary blocking reads.
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

"""The one place that turns a path a model asked for into an open file or directory.

Public surface:
    SandboxError                  the single exception every refusal raises
    check_relative_path(path)     syntactic checks shared with config validation
    display_path(path)            a user path normalised for display
    Deadline                      a monotonic time budget shared by long operations
    Sandbox(root, hidden=, quota_bytes=)  a directory tree tools may touch, nothing else
    Sandbox.within(tree, r, ...)  tree/<r>, required to lie inside tree
    Sandbox.read_text / .write_text / .entries / .walk / .files / .read_head
    Sandbox.resolve(path)         where a path leads (for messages; nothing opens by it)
    ReadResult, WalkEntry         what reads and walks return

Paths are never opened by their text. Every operation opens the root once and
walks down from it one component at a time with ``os.open(name,
dir_fd=parent, flags=O_NOFOLLOW | O_DIRECTORY)``, so what was checked is what is
used: a parent directory swapped for a link after it was looked at makes the
open fail instead of being followed out of the root. Links are read with
``readlink`` and followed by the same walk, from the directory that holds them
(or from the root, for an absolute target inside it); a target that climbs
above the root or names a place outside it is refused. Containment is
therefore a property of the walk, not of a string comparison.

Files are opened with ``O_NOFOLLOW | O_NONBLOCK`` under their parent's
descriptor and checked with ``fstat``, so a FIFO, device or socket is refused
without ever blocking. Writes go to a temporary file in the target's directory
and are moved into place with ``os.replace`` on the same directory descriptor,
which replaces a directory entry and never writes through a link. A write is
refused when any directory it would touch or create, or the file itself, is
named ``.git`` (in any letter case), because git runs hooks and follows
configuration found there. Directories in `hidden` (another scope kept inside
this tree) are treated as lying outside. With `quota_bytes`, a write that would
take the regular files of the whole tree past the quota is refused; the
measurement and the write hold an exclusive ``flock`` on the tree, so
concurrent writers (threads or processes) cannot both slip under it.

Messages never contain absolute paths: they name the path the model gave.
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import os
import secrets
import stat
import time
import unicodedata
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAX_PATH_CHARS = 1024
MAX_SEGMENT_BYTES = 255
BINARY_SNIFF_BYTES = 8192
#: Links followed while resolving one path, as the kernel's own limit.
MAX_LINK_HOPS = 40
_READ_CHUNK = 64 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class SandboxError(Exception):
    """A path or operation was refused; the message is safe to show the model."""


class _Missing(SandboxError):
    """A component of the path does not exist (callers word it for their case)."""


class _Outside(SandboxError):
    """The path leads outside the root, or into a hidden directory."""


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
    if _has_control_chars(path):
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
    return "/".join(_segments(path)) or "."


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
    is_dir: bool
    size: int
    """Bytes of a regular file (0 for a directory)."""
    location: tuple[str, ...]
    """Where the entry really is below the root, links resolved: its real directories."""
    linked: bool = False
    """Reached through a link (reported, never descended)."""
    _found_in: _Cursor | None = field(default=None, compare=False, repr=False)
    """The walk's open directory holding the entry, used while the walk is there."""


class _Cursor:
    """A stack of open directories from a starting directory down; closes them all."""

    def __init__(self, start_fd: int) -> None:
        self.fds = [start_fd]
        self.names: list[str] = []
        self.closed = False

    @property
    def fd(self) -> int:
        return self.fds[-1]

    def push(self, name: str, fd: int) -> None:
        self.fds.append(fd)
        self.names.append(name)

    def pop(self) -> None:
        os.close(self.fds.pop())
        self.names.pop()

    def to_start(self) -> None:
        while self.names:
            self.pop()

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.closed = True
        while self.fds:
            os.close(self.fds.pop())


class Sandbox:
    """A directory tree that tools may touch, and nothing outside it."""

    def __init__(
        self,
        root: Path | str,
        *,
        hidden: Iterable[Path | str] = (),
        quota_bytes: int | None = None,
    ) -> None:
        real = os.path.realpath(root)
        if not os.path.isdir(real):
            raise SandboxError("The tool's root directory does not exist.")
        self._tree = real
        self._base: tuple[str, ...] = ()
        self.root = Path(real)
        self._quota = quota_bytes
        self._hidden = frozenset(_identities(hidden))

    @classmethod
    def within(
        cls,
        tree: Path | str,
        relative_root: str = ".",
        *,
        hidden: Iterable[Path | str] = (),
        quota_bytes: int | None = None,
    ) -> Sandbox:
        """The sandbox at `tree/relative_root`, refused unless inside `tree`.

        The quota, `.git` rule and hidden directories keep applying to the
        whole tree, whichever part of it the sandbox works in.
        """
        check_relative_path(relative_root, what="root")
        sandbox = cls(tree, hidden=hidden, quota_bytes=quota_bytes)
        try:
            with sandbox._cursor() as cursor:
                sandbox._enter_directory(cursor, relative_root)
                base = tuple(cursor.names)
        except _Missing:
            raise SandboxError("The tool's root directory does not exist.") from None
        except _Outside:
            raise SandboxError(
                "The tool's root lies outside the allowed tree."
            ) from None
        except SandboxError as exc:
            raise SandboxError(f"The tool's root is not usable: {exc}") from None
        sandbox._base = base
        sandbox.root = Path(sandbox._tree, *base)
        return sandbox

    # -- operations -------------------------------------------------------

    def resolve(self, path: str) -> Path:
        """Where `path` leads (its last part may not exist); refused if outside.

        For messages and tests only: nothing is ever opened by this path.
        """
        check_relative_path(path)
        with self._cursor() as cursor:
            name, _ = self._follow(cursor, path)
            return Path(self.root, *cursor.names, *([name] if name else []))

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
        check_relative_path(path)
        with self._open_file(path) as fh:
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

    def read_head(self, entry: WalkEntry, max_bytes: int) -> tuple[str, bool]:
        """Up to `max_bytes` of a walked regular file as text.

        Raises SandboxError for binary or non-UTF-8 content.
        """
        display = entry.relative
        walked = entry._found_in
        if walked is not None and not walked.closed and not entry.linked:
            # Still open in the walk that found it: no second walk from the root.
            fh = self._open_regular(walked.fd, entry.location[-1], display)
        else:
            with self._cursor() as cursor:
                self._descend(cursor, entry.location[:-1])
                fh = self._open_regular(cursor.fd, entry.location[-1], display)
        with fh:
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

    def write_text(
        self, path: str, content: str, *, deadline: Deadline
    ) -> tuple[int, bool]:
        """Atomically writes `content`; returns (bytes written, created).

        Missing parent directories are created. Refused: anything under or
        named `.git`, a target that is not a regular file, and (with a quota)
        a write that would take the tree past it.
        """
        check_relative_path(path)
        if path.endswith("/"):
            raise SandboxError(f"{path!r} names a directory, not a file.")
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError:
            raise SandboxError("The content is not valid Unicode text.") from None
        self._refuse_git(self._base, path)
        with self._tree_lock():
            if self._quota is not None:
                # Measured before any missing directory is made for the file.
                self._check_quota(len(data) - self._size_of(path), deadline)
            with self._cursor() as cursor:
                name, found = self._follow(cursor, path, creating=True)
                if name is None:
                    raise SandboxError(
                        f"{path!r} names the root directory, not a file."
                    )
                if found is not None and not stat.S_ISREG(found.st_mode):
                    raise SandboxError(f"{path!r} exists and is not a regular file.")
                self._replace(cursor.fd, name, data, found)
        return len(data), found is None

    def entries(self, path: str, *, deadline: Deadline) -> Iterator[WalkEntry]:
        """The entries of one directory, sorted by name (see `_scan`)."""
        check_relative_path(path)
        with self._cursor() as cursor:
            self._enter_directory(cursor, path)
            yield from self._scan(cursor, ".", deadline)

    def walk(
        self,
        path: str,
        *,
        deadline: Deadline,
        exclude_dirs: frozenset[str] = frozenset(),
    ) -> Iterator[WalkEntry]:
        """Every regular file and directory under `path`, breadth-first, sorted.

        Links are followed only while they stay inside the root; linked
        directories are reported but never descended (no escapes, no cycles).
        Each directory is reopened from the root, component by component, when
        its turn comes. Stops silently when the deadline expires; callers check
        `deadline`.
        """
        check_relative_path(path)
        with self._cursor() as cursor:
            self._enter_directory(cursor, path)
            start = tuple(cursor.names)
        queue: deque[tuple[tuple[str, ...], str]] = deque([(start, display_path(path))])
        while queue:
            location, rel_dir = queue.popleft()
            with self._cursor() as cursor:
                try:
                    self._descend(cursor, location)
                except SandboxError:
                    continue
                for entry in self._scan(cursor, rel_dir, deadline):
                    yield entry
                    name = entry.relative.rsplit("/", 1)[-1]
                    if entry.is_dir and not entry.linked and name not in exclude_dirs:
                        queue.append((entry.location, entry.relative))
                    if deadline.expired:
                        return

    def files(
        self,
        path: str,
        *,
        deadline: Deadline,
        exclude_dirs: frozenset[str] = frozenset(),
    ) -> Iterator[WalkEntry]:
        """The regular file `path`, or every regular file under the directory `path`."""
        check_relative_path(path)
        with self._cursor() as cursor:
            try:
                name, found = self._follow(cursor, path)
            except _Missing:
                raise _Missing(f"No such directory: {path!r}.") from None
            single = None
            if name is not None and found is not None and stat.S_ISREG(found.st_mode):
                single = WalkEntry(
                    display_path(path),
                    False,
                    found.st_size,
                    (*cursor.names, name),
                )
        if single is not None:
            yield single
            return
        for entry in self.walk(path, deadline=deadline, exclude_dirs=exclude_dirs):
            if not entry.is_dir:
                yield entry

    # -- resolution -------------------------------------------------------

    def _cursor(self) -> _Cursor:
        """A cursor at the root, opened from the tree one component at a time.

        The root is where the cursor starts, so `..` never climbs above it.
        """
        try:
            fd = os.open(self._tree, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            raise SandboxError("The tool's root directory does not exist.") from None
        for name in self._base:
            try:
                child = self._open_directory(fd, name, name)
            except SandboxError:
                raise SandboxError(
                    "The tool's root directory changed or vanished."
                ) from None
            finally:
                os.close(fd)
            fd = child
        return _Cursor(fd)

    def _descend(self, cursor: _Cursor, names: Iterable[str]) -> None:
        """Opens each of `names` (real directories, no links) below the cursor."""
        for name in names:
            cursor.push(name, self._open_directory(cursor.fd, name, name))

    def _open_directory(self, parent_fd: int, name: str, display: str) -> int:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            raise _Missing(f"No such directory: {display!r}.") from None
        except OSError as exc:
            # ELOOP/ENOTDIR: the entry is (or just became) a link or a file.
            raise SandboxError(
                f"Cannot open {display!r}: {os.strerror(exc.errno or 0)}."
            ) from None
        if self._hidden and _identity(os.fstat(fd)) in self._hidden:
            os.close(fd)
            raise self._outside(display)
        return fd

    def _follow(
        self, cursor: _Cursor, path: str, *, creating: bool = False
    ) -> tuple[str | None, os.stat_result | None]:
        """Moves `cursor` to the directory holding the last entry of `path`.

        Returns that entry's name and `lstat` (None when it does not exist), or
        (None, None) when `path` is the root itself. Links, the last one
        included, are followed while they stay inside the root. With
        `creating`, missing directories are made (never a `.git` one) and
        every directory on the way is checked against the `.git` rule.
        """
        pending = deque(_segments(path))
        hops = 0
        while pending:
            name = pending.popleft()
            if name == "..":
                # Only link targets bring `..`; check_relative_path refuses it.
                if not cursor.names:
                    raise self._outside(path)
                cursor.pop()
                continue
            if creating:
                self._refuse_git((*self._base, *cursor.names, name), path)
            try:
                found = os.stat(name, dir_fd=cursor.fd, follow_symlinks=False)
            except FileNotFoundError:
                if not pending:
                    return name, None
                if not creating:
                    raise _Missing(f"No such file or directory: {path!r}.") from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=cursor.fd)
                pending.appendleft(name)
                continue
            if stat.S_ISLNK(found.st_mode):
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise SandboxError(f"{path!r} goes through too many links.")
                target = os.readlink(name, dir_fd=cursor.fd)
                if target.startswith("/"):
                    inside = self._relative_to_root(target)
                    if inside is None:
                        raise self._outside(path)
                    cursor.to_start()
                    target = inside
                pending.extendleft(reversed(_segments(target)))
                continue
            if self._hidden and _identity(found) in self._hidden:
                raise self._outside(path)
            if not pending:
                return name, found
            if not stat.S_ISDIR(found.st_mode):
                raise SandboxError(f"Cannot access {path!r}: Not a directory.")
            try:
                cursor.push(name, self._open_directory(cursor.fd, name, path))
            except _Missing:
                raise
            except SandboxError:
                if hops >= MAX_LINK_HOPS:
                    raise
                # Swapped for a link since it was looked at: look again.
                hops += 1
                pending.appendleft(name)
        return None, None

    def _enter_directory(self, cursor: _Cursor, path: str) -> None:
        """Moves `cursor` into the directory `path` (links inside followed)."""
        try:
            name, found = self._follow(cursor, path)
        except _Missing:
            raise _Missing(f"No such directory: {path!r}.") from None
        if name is None:
            return
        if found is None:
            raise _Missing(f"No such directory: {path!r}.")
        if not stat.S_ISDIR(found.st_mode):
            raise SandboxError(f"{path!r} is not a directory.")
        cursor.push(name, self._open_directory(cursor.fd, name, path))

    def _relative_to_root(self, target: str) -> str | None:
        root = str(self.root)
        if target == root:
            return "."
        if target.startswith(root.rstrip("/") + "/"):
            return target[len(root.rstrip("/")) + 1 :]
        return None

    @staticmethod
    def _outside(path: str) -> _Outside:
        return _Outside(f"The path {path!r} leads outside the allowed root.")

    @staticmethod
    def _refuse_git(location: Iterable[str], path: str) -> None:
        if any(part.casefold() == ".git" for part in location):
            raise SandboxError(
                f"Writing to {path!r} is refused: nothing is written in a .git "
                "directory or to a file named .git."
            )

    # -- listing ----------------------------------------------------------

    def _scan(
        self, cursor: _Cursor, rel_dir: str, deadline: Deadline
    ) -> Iterator[WalkEntry]:
        """The entries of the cursor's directory, sorted by name.

        Links are resolved from the root and kept only when they lead to a
        regular file or directory inside it; anything that is neither a regular
        file nor a directory, names with control characters and hidden
        directories are left out.
        """
        names: list[str] = []
        try:
            with os.scandir(cursor.fd) as it:
                for item in it:
                    if deadline.expired:
                        break
                    names.append(item.name)
        except OSError:
            return
        names.sort()
        for name in names:
            if deadline.expired:
                return
            if _has_control_chars(name):
                continue
            try:
                found = os.stat(name, dir_fd=cursor.fd, follow_symlinks=False)
            except OSError:
                continue
            location = (*cursor.names, name)
            linked = stat.S_ISLNK(found.st_mode)
            if linked:
                resolved = self._resolve_link(location)
                if resolved is None:
                    continue
                location, found = resolved
            if self._hidden and _identity(found) in self._hidden:
                continue
            is_dir = stat.S_ISDIR(found.st_mode)
            if not (is_dir or stat.S_ISREG(found.st_mode)):
                continue
            relative = name if rel_dir == "." else f"{rel_dir}/{name}"
            size = 0 if is_dir else found.st_size
            yield WalkEntry(relative, is_dir, size, location, linked, cursor)

    def _resolve_link(
        self, location: tuple[str, ...]
    ) -> tuple[tuple[str, ...], os.stat_result] | None:
        """Where the link at `location` leads, if inside the root and existing."""
        try:
            with self._cursor() as cursor:
                name, found = self._follow(cursor, "/".join(location))
                if name is None:
                    found = os.fstat(cursor.fd)
                    return (), found
                if found is None:
                    return None
                return (*cursor.names, name), found
        except (SandboxError, OSError):
            return None

    # -- files ------------------------------------------------------------

    def _open_file(self, path: str) -> BinaryIO:
        with self._cursor() as cursor:
            try:
                name, found = self._follow(cursor, path)
            except _Missing:
                raise SandboxError(f"No such file: {path!r}.") from None
            if name is None or (found is not None and stat.S_ISDIR(found.st_mode)):
                raise SandboxError(f"{path!r} is a directory, not a file.")
            if found is None:
                raise SandboxError(f"No such file: {path!r}.")
            if not stat.S_ISREG(found.st_mode):
                raise SandboxError(f"{path!r} is not a regular file.")
            return self._open_regular(cursor.fd, name, path)

    @staticmethod
    def _open_regular(parent_fd: int, name: str, display: str) -> BinaryIO:
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            raise SandboxError(f"No such file: {display!r}.") from None
        except OSError as exc:
            raise SandboxError(
                f"Cannot open {display!r}: {os.strerror(exc.errno or 0)}."
            ) from None
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise SandboxError(f"{display!r} is a directory, not a file.")
            if not stat.S_ISREG(mode):
                raise SandboxError(f"{display!r} is not a regular file.")
            # Regular files ignore O_NONBLOCK; reads stay ordinary blocking reads.
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _replace(
        dir_fd: int, name: str, data: bytes, existing: os.stat_result | None
    ) -> None:
        temp = f".agentry-{secrets.token_hex(8)}.tmp"
        # New files get 0o666 less the umask, from the kernel, as any editor's.
        fd = os.open(temp, _TEMP_FLAGS, 0o666, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                if existing is not None:
                    os.fchmod(fh.fileno(), stat.S_IMODE(existing.st_mode))
                os.fsync(fh.fileno())
            os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=dir_fd)
            raise

    # -- quota ------------------------------------------------------------

    def _tree_lock(self) -> _FlockedDirectory:
        """An exclusive lock on the tree while a quota'd write measures and writes."""
        return _FlockedDirectory(self._tree if self._quota is not None else None)

    def _size_of(self, path: str) -> int:
        """Bytes of the regular file a write to `path` would replace, else 0."""
        try:
            with self._cursor() as cursor:
                _, found = self._follow(cursor, path)
        except _Missing:
            return 0
        return found.st_size if found is not None and stat.S_ISREG(found.st_mode) else 0

    def _check_quota(self, growth: int, deadline: Deadline) -> None:
        assert self._quota is not None
        used = self._usage(deadline)
        if used + growth > self._quota:
            megabytes = self._quota // (1024 * 1024)
            raise SandboxError(
                f"This write would take the workspace past its quota of {megabytes}"
                f" MB ({used} bytes are in use); nothing was written."
            )

    def _usage(self, deadline: Deadline) -> int:
        """Bytes of the regular files of the whole tree (links not followed)."""
        total = 0
        queue: deque[tuple[str, ...]] = deque([()])
        tree_fd = os.open(self._tree, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        with _Cursor(tree_fd) as cursor:
            while queue:
                location = queue.popleft()
                cursor.to_start()
                try:
                    self._descend(cursor, location)
                    with os.scandir(cursor.fd) as it:
                        names = [item.name for item in it]
                except (SandboxError, OSError):
                    continue
                for name in names:
                    if deadline.expired:
                        raise SandboxError(
                            "The workspace's use could not be measured in time; "
                            "nothing was written."
                        )
                    try:
                        found = os.stat(name, dir_fd=cursor.fd, follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISREG(found.st_mode):
                        total += found.st_size
                    elif stat.S_ISDIR(found.st_mode):
                        queue.append((*location, name))
        return total


class _FlockedDirectory:
    """Holds an exclusive `flock` on a directory (nothing when given None)."""

    def __init__(self, path: str | None) -> None:
        self._path, self._fd = path, -1

    def __enter__(self) -> None:
        if self._path is not None:
            self._fd = os.open(self._path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc_info: object) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing releases the lock
            self._fd = -1


def _segments(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _identity(found: os.stat_result) -> tuple[int, int]:
    return found.st_dev, found.st_ino


def _identities(paths: Iterable[Path | str]) -> Iterator[tuple[int, int]]:
    for path in paths:
        try:
            found = os.stat(path)
        except OSError:
            continue
        if stat.S_ISDIR(found.st_mode):
            yield _identity(found)

"""A record of the host's file system, to prove that a run changed nothing, byte for byte.

snapshot() walks the given roots and keeps, for every entry, its type, mode, owner, size,
modification time and link target, and the sha256 of every regular file up to
MAX_HASHED bytes (larger files are compared by size and modification time). changes()
names every path created, removed or altered between two snapshots.
"""

import hashlib
import os
import stat

MAX_HASHED = 8 * 1024 * 1024

# Roots a layer may write to on a host: configuration, programs, state and data, the
# login user's kubeconfig. /var/lib/docker and /var/lib/containerd belong to the test
# machine's Docker engine, which writes there on its own.
HOST_ROOTS = ("/etc", "/usr/local", "/opt", "/srv", "/var/lib", "/var/backups", "/root/.kube")
HOST_EXCLUDE = ("/var/lib/docker", "/var/lib/containerd")


def _digest(path, size):
    if size > MAX_HASHED:
        return None
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
    except OSError as error:
        return "unreadable: %s" % error.strerror
    return sha.hexdigest()


def _entry(path, info):
    mode = info.st_mode
    record = (stat.S_IFMT(mode), stat.S_IMODE(mode), info.st_uid, info.st_gid)
    if stat.S_ISLNK(mode):
        return record + (os.readlink(path),)
    if stat.S_ISREG(mode):
        return record + (info.st_size, info.st_mtime_ns, _digest(path, info.st_size))
    return record


def snapshot(roots, exclude=(), skip_names=()):
    """{path: record} for every root and everything under it; roots that do not exist are
    recorded as absent, so creating one counts as a change. Paths in exclude and entries
    named in skip_names (caches such as __pycache__) are left out with what they hold."""
    excluded = {os.path.normpath(str(path)) for path in exclude}
    state = {}
    for root in (os.path.normpath(str(path)) for path in roots):
        try:
            state[root] = _entry(root, os.lstat(root))
        except FileNotFoundError:
            state[root] = None
            continue
        if not stat.S_ISDIR(state[root][0]):
            continue
        for top, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in skip_names and os.path.join(top, d) not in excluded)
            for name in dirs + sorted(files):
                path = os.path.join(top, name)
                if path in excluded or name in skip_names:
                    continue
                try:
                    state[path] = _entry(path, os.lstat(path))
                except FileNotFoundError:
                    continue
    return state


def changes(before, after):
    """Sorted lines 'created PATH', 'removed PATH' and 'changed PATH'."""
    lines = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        if old is None:
            lines.append("created " + path)
        elif new is None:
            lines.append("removed " + path)
        else:
            lines.append("changed " + path)
    return lines

#!/usr/bin/python
# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: artifact_fetch
short_description: Download release files verified by sha256 against their checksum list and pins
version_added: "0.6.0"
description:
  - The one download-and-verify path of the collection. The internal C(odin.stack.artifact) role
    calls it for K3s and Helm from upstream, a mirror or an offline bundle, C(playbooks/bundle.yml)
    calls it to build a bundle, and the k3s role calls it to import a bundle's image archives.
  - When every file in O(files) is already at its O(files[].dest) with its pinned checksum, nothing
    is read from O(base_url), so a re-run of a converged host needs no network.
  - Otherwise it reads O(checksum_list) (C(sha256sum) format) from O(base_url). Every file must be
    listed there, and listed with its pinned checksum when it has one; otherwise it fails, naming
    each problem, before anything is downloaded.
  - Each file that is missing or differs is downloaded to a temporary file next to its
    destination and hashed while it is written. Only when every download matches the list are
    the files moved into place, so a refused download, a broken connection or a full disk changes
    nothing and leaves no temporary file behind.
  - Mode, owner and group of files that are already right are corrected when they drifted.
options:
  base_url:
    description:
      - Where the files and the checksum list are, C(http://), C(https://) or C(file://) (a directory).
    type: str
    required: true
  checksum_list:
    description: File name of the checksum list under O(base_url).
    type: str
    required: true
  checksum_list_dest:
    description: Also keep the checksum list here (an offline bundle serves it next to the files).
    type: path
  files:
    description: The files to fetch.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: File name under O(base_url), as the checksum list names it.
        type: str
        required: true
      dest:
        description: Where the verified file is kept.
        type: path
        required: true
      sha256:
        description: Pinned checksum; the list must agree with it. Empty for a file verified by the list only.
        type: str
        default: ""
      pinned_by:
        description: Where the pin comes from (a variable or file), named in failure messages.
        type: str
        default: ""
      mode:
        description: Mode of the kept file.
        type: raw
        default: "0644"
  owner:
    description: Owner of the kept files (the current user when not set).
    type: str
  group:
    description: Group of the kept files (the current user's group when not set).
    type: str
  timeout:
    description: Seconds to wait for each connection and read.
    type: int
    default: 60
attributes:
  check_mode:
    description: Whether the module can run with C(--check) and report what it would change without changing it.
    support: full
    details: The checksum list is read (read-only) to verify the pins; nothing is downloaded or written.
  diff_mode:
    description: Whether the module returns a diff of what it changed with C(--diff).
    support: none
notes:
  - Failures carry C(reason), one of C(unreachable), C(unparsable), C(refused) (the list disagrees
    with the pins or lacks a file, or a download did not match), C(bad_input) or C(write), and
    C(problems), one entry per file, so that a role can say which setting to change.
author:
  - ODIN maintainers (@odin-stack)
"""

EXAMPLES = r"""
- name: Download the pinned K3s binary, verified against the release's checksum list
  odin.stack.artifact_fetch:
    base_url: https://github.com/k3s-io/k3s/releases/download/v1.36.3%2Bk3s1
    checksum_list: sha256sum-amd64.txt
    files:
      - name: k3s
        dest: /usr/local/bin/k3s
        sha256: 2f98a9f8fe5782479ee2d54e70a1b10a7f6fd4cae8d38ed3098452dc6eed76b5
        pinned_by: roles/artifact/vars/main.yml
        mode: "0755"
    owner: root
    group: root
"""

RETURN = r"""
files:
  description: One entry per file in O(files), in the same order.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: File name under O(base_url).
      type: str
    dest:
      description: Where it is kept.
      type: str
    sha256:
      description: Its verified checksum.
      type: str
    pinned:
      description: Whether a pinned checksum verified it (false when only the checksum list did).
      type: bool
    changed:
      description: Whether this run wrote it or corrected its mode or owner.
      type: bool
fetched_list:
  description: Whether the checksum list was read from O(base_url) (false on a re-run with every pin satisfied).
  returned: success
  type: bool
unpinned:
  description: Files verified by the checksum list only, with no pinned checksum.
  returned: success
  type: list
  elements: str
reason:
  description: Why it failed.
  returned: failure
  type: str
problems:
  description: What was refused, one entry per file (name, reason, listed and pinned checksums).
  returned: failure
  type: list
  elements: dict
"""

import errno
import hashlib
import http.client
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.odin.stack.plugins.module_utils import _artifact

CHUNK = 1024 * 1024
# Errors of the host's own disk, not of the source.
LOCAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO}


def _url(base, name):
    return base.rstrip("/") + "/" + name


def _sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _read(url, timeout):
    """The body at url; raises OSError (URLError is one) with what failed."""
    with open_url(url, timeout=timeout, follow_redirects="safe", http_agent="odin.stack.artifact_fetch") as resp:
        return resp.read()


def _download(url, dest, timeout):
    """Stream url into a temporary file next to dest; returns (path, sha256). The caller removes it."""
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(dest), suffix=".part", dir=os.path.dirname(dest))
    try:
        with (
            os.fdopen(fd, "wb") as out,
            open_url(url, timeout=timeout, follow_redirects="safe", http_agent="odin.stack.artifact_fetch") as resp,
        ):
            received = 0
            for block in iter(lambda: resp.read(CHUNK), b""):
                digest.update(block)
                out.write(block)
                received += len(block)
            length = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
            if length and length.isdigit() and int(length) != received:
                raise http.client.HTTPException("the connection closed after %d of %s bytes" % (received, length))
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp, digest.hexdigest()


class Fetcher:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.files = module.params["files"]
        self.temps = []
        self.list_url = _url(self.p["base_url"], self.p["checksum_list"])

    def fail(self, reason, msg, problems=None, **extra):
        for tmp in self.temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.module.fail_json(msg=msg, reason=reason, problems=problems or [], **extra)

    def attributes(self, path, mode):
        """Set mode, owner and group where they differ; True when something was (or would be) changed."""
        changed = self.module.set_mode_if_different(path, mode, False)
        if self.p["owner"] is not None:
            changed = self.module.set_owner_if_different(path, self.p["owner"], changed)
        if self.p["group"] is not None:
            changed = self.module.set_group_if_different(path, self.p["group"], changed)
        return changed

    def current(self):
        """{dest: sha256 of what is there now ('' for nothing)}; refuses bad pins and directories."""
        for entry in self.files:
            entry["sha256"] = (entry["sha256"] or "").strip().lower()
        bad = _artifact.pin_problems(self.files)
        if bad:
            self.fail("bad_input", " ".join(_artifact.describe(p, "") for p in bad), bad)
        have = {}
        for entry in self.files:
            dest = entry["dest"]
            if os.path.isdir(dest):
                self.fail("bad_input", "%s is a directory; dest names the file to keep." % dest)
            have[dest] = _sha256_of(dest) if os.path.isfile(dest) else ""
        return have

    def read_list(self):
        """(raw list, {name: sha256}) after checking it against every file and pin."""
        try:
            raw = _read(self.list_url, self.p["timeout"])
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.fail(
                "unreachable",
                "%s could not be read: %s" % (self.list_url, getattr(exc, "reason", exc)),
                url=self.list_url,
            )
        try:
            listed = _artifact.parse_checksum_list(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            self.fail("unparsable", "%s is not a sha256sum list: %s" % (self.list_url, exc), url=self.list_url)
        refused = _artifact.list_problems(self.files, listed)
        if refused:
            msg = " ".join(_artifact.describe(p, self.list_url) for p in refused)
            self.fail("refused", msg, refused, url=self.list_url)
        return raw, listed

    def download(self, pending):
        """Download and verify every pending file, then move them all into place."""
        for entry, _want in pending:
            if not os.path.isdir(os.path.dirname(entry["dest"])):
                self.fail("bad_input", "The directory of %s does not exist; create it first." % entry["dest"])
        for entry, want in pending:
            url = _url(self.p["base_url"], entry["name"])
            try:
                tmp, got = _download(url, entry["dest"], self.p["timeout"])
            except (OSError, http.client.HTTPException, ValueError) as exc:
                local = isinstance(exc, OSError) and exc.errno in LOCAL_ERRNOS
                self.fail(
                    "write" if local else "unreachable",
                    "%s could not be downloaded to %s: %s. %s was not changed."
                    % (url, os.path.dirname(entry["dest"]), getattr(exc, "reason", exc) or exc, entry["dest"]),
                    url=url,
                )
            self.temps.append(tmp)
            if got != want:
                problem = {"name": entry["name"], "reason": "download_mismatch", "url": url, "got": got, "listed": want}
                msg = "%s %s was not changed." % (_artifact.describe(problem, self.list_url), entry["dest"])
                self.fail("refused", msg, [problem], url=url)
            self.attributes(tmp, entry["mode"])
        # Every download is verified: only now is anything replaced.
        for (entry, _want), tmp in zip(pending, self.temps, strict=True):
            os.replace(tmp, entry["dest"])
        self.temps = []

    def keep_list(self, raw):
        """Write the checksum list to checksum_list_dest when it differs; True when it did (or would)."""
        kept = self.p["checksum_list_dest"]
        if not kept or raw is None:
            return False
        if os.path.isfile(kept):
            with open(kept, "rb") as handle:
                if handle.read() == raw:
                    return False
        if not self.module.check_mode:
            fd, tmp = tempfile.mkstemp(prefix=".checksums.", dir=os.path.dirname(kept))
            with os.fdopen(fd, "wb") as handle:
                handle.write(raw)
            self.attributes(tmp, "0644")
            os.replace(tmp, kept)
        return True

    def run(self):
        have = self.current()
        kept = self.p["checksum_list_dest"]
        satisfied = all(e["sha256"] and have[e["dest"]] == e["sha256"] for e in self.files)
        raw, listed = None, {}
        if not satisfied or (kept and not os.path.isfile(kept)):
            raw, listed = self.read_list()

        results, pending = [], []
        for entry in self.files:
            want = entry["sha256"] or listed.get(entry["name"], "")
            written = have[entry["dest"]] != want
            if written:
                pending.append((entry, want))
            results.append(
                {
                    "name": entry["name"],
                    "dest": entry["dest"],
                    "sha256": want,
                    "pinned": bool(entry["sha256"]),
                    "changed": written,
                }
            )
        if pending and not self.module.check_mode:
            self.download(pending)
        for entry, result in zip(self.files, results, strict=True):
            if not result["changed"] and os.path.exists(entry["dest"]):
                result["changed"] = self.attributes(entry["dest"], entry["mode"])

        changed = self.keep_list(raw) or any(r["changed"] for r in results)
        self.module.exit_json(
            changed=changed,
            files=results,
            fetched_list=raw is not None,
            unpinned=[e["name"] for e in self.files if not e["sha256"]],
        )


def main():
    module = AnsibleModule(
        argument_spec={
            "base_url": {"type": "str", "required": True},
            "checksum_list": {"type": "str", "required": True},
            "checksum_list_dest": {"type": "path"},
            "files": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "dest": {"type": "path", "required": True},
                    "sha256": {"type": "str", "default": ""},
                    "pinned_by": {"type": "str", "default": ""},
                    "mode": {"type": "raw", "default": "0644"},
                },
            },
            "owner": {"type": "str"},
            "group": {"type": "str"},
            "timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    scheme = module.params["base_url"].split("://", 1)[0].lower() if "://" in module.params["base_url"] else ""
    if scheme not in ("http", "https", "file"):
        module.fail_json(
            msg="base_url '%s' is not an http://, https:// or file:// URL." % module.params["base_url"],
            reason="bad_input",
            problems=[],
        )
    for entry in module.params["files"]:
        if "/" in entry["name"] or entry["name"] in ("", ".", ".."):
            module.fail_json(
                msg="files[].name '%s' must be a plain file name." % entry["name"], reason="bad_input", problems=[]
            )
    Fetcher(module).run()


if __name__ == "__main__":
    main()

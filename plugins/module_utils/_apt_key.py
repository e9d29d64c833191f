# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""OpenPGP key checks for apt repositories: which primary keys a key file holds, and
whether it holds exactly the pinned one.

Plain Python with no Ansible imports, unit-tested on recorded gpg output.
"""

from __future__ import annotations

import re


def gpg_primary_keys(colons):
    """Primary keys in `gpg --show-keys --with-colons` output.

    Returns a list of {'fingerprint', 'validity', 'expires', 'uids'}; subkeys' fingerprints
    (the 'fpr' record after a 'sub' record) are not primary keys and are left out.
    """
    keys, current, last_kind = [], None, None
    for raw in colons.splitlines():
        fields = raw.split(":")
        kind = fields[0]
        if kind == "pub":
            current = {
                "fingerprint": None,
                "validity": fields[1] if len(fields) > 1 else "",
                "expires": int(fields[6]) if len(fields) > 6 and fields[6].isdigit() else None,
                "uids": [],
            }
            keys.append(current)
        elif kind == "fpr" and last_kind == "pub" and current is not None and len(fields) > 9:
            current["fingerprint"] = fields[9].upper()
        elif kind == "uid" and current is not None and len(fields) > 9:
            current["uids"].append(fields[9])
        if kind in ("pub", "sub", "uid", "uat"):
            last_kind = kind
    return keys


def normalise_fingerprint(value):
    """'c95b 321b ...' -> 'C95B321B...' ; None stays None."""
    if value is None:
        return None
    return re.sub(r"\s+", "", value).upper()


def check_key(keys, expected, now):
    """Check a key file's primary keys against one pinned fingerprint.

    The file must hold exactly the pinned key, not expired or revoked at `now` (a Unix
    time). Returns a list of problems (empty when the key is trusted).
    """
    expected = normalise_fingerprint(expected)
    found = [key["fingerprint"] for key in keys]
    if not keys:
        return ["the key file holds no OpenPGP public key"]
    if found != [expected]:
        return ["expected exactly the key %s, the key file holds %s" % (expected, ", ".join(str(f) for f in found))]
    key = keys[0]
    problems = []
    if key["validity"] == "r":
        problems.append("key %s is revoked" % expected)
    if key["validity"] == "e" or (key["expires"] is not None and key["expires"] <= now):
        problems.append("key %s expired (expiry %s)" % (expected, key["expires"]))
    return problems

#!/usr/bin/python
# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: apt_key_check
short_description: Check that an apt repository key is exactly the pinned OpenPGP key
version_added: "0.1.0"
description:
  - Read-only check used before an apt repository is trusted. It lists the key material
    with C(gpg --show-keys --with-colons) in a throw-away GnuPG home (no keyring is touched)
    and fails unless it holds exactly one primary key whose fingerprint is O(fingerprint),
    not revoked and not expired.
options:
  data:
    description: The key as the repository serves it (ASCII-armoured).
    type: str
    required: true
  fingerprint:
    description: The pinned primary key fingerprint, 40 hexadecimal digits (spaces are ignored).
    type: str
    required: true
  name:
    description: Variable or setting that holds the pinned fingerprint, named in failure messages.
    type: str
    default: fingerprint
attributes:
  check_mode:
    description: Whether the module can run with C(--check) and report what it would change without changing it.
    support: full
  diff_mode:
    description: Whether the module returns a diff of what it changed with C(--diff).
    support: none
requirements:
  - gpg
author:
  - ODIN maintainers (@odin-stack)
"""

EXAMPLES = r"""
- name: Download the repository key (read-only)
  ansible.builtin.uri:
    url: https://nvidia.github.io/libnvidia-container/gpgkey
    return_content: true
  register: __key

- name: Check the key before trusting it
  odin.stack.apt_key_check:
    data: "{{ __key.content }}"
    fingerprint: C95B321B61E88C1809C4F759DDCAE044F796ECB0
    name: nvidia_container_toolkit_repo_key_fingerprint
"""

RETURN = r"""
keys:
  description: Primary keys found in O(data).
  returned: always
  type: list
  elements: dict
  sample:
    - fingerprint: C95B321B61E88C1809C4F759DDCAE044F796ECB0
      validity: "-"
      expires: null
      uids: ["NVIDIA CORPORATION (Open Source Projects) <cudatools@nvidia.com>"]
fingerprint:
  description: The pinned fingerprint, normalised to upper case without spaces.
  returned: always
  type: str
"""

import re
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.odin.stack.plugins.module_utils import _apt_key as ak


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            data=dict(type="str", required=True),
            fingerprint=dict(type="str", required=True),
            name=dict(type="str", default="fingerprint"),
        ),
        supports_check_mode=True,
    )
    name = module.params["name"]
    expected = ak.normalise_fingerprint(module.params["fingerprint"])
    if not re.fullmatch(r"[0-9A-F]{40}", expected):
        module.fail_json(
            msg="%s=%r is not a full OpenPGP v4 fingerprint. Set it to the 40 hexadecimal digits "
            "the repository publishes (short key ids can be forged)." % (name, module.params["fingerprint"]),
            fingerprint=expected,
            keys=[],
        )
    gpg = module.get_bin_path("gpg", required=True)
    home = tempfile.mkdtemp(prefix="odin-gpg-")
    try:
        rc, out, err = module.run_command(
            [gpg, "--homedir", home, "--batch", "--show-keys", "--with-colons", "--fixed-list-mode"],
            data=module.params["data"],
            binary_data=True,
            environ_update={"LC_ALL": "C", "LANG": "C"},
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    keys = ak.gpg_primary_keys(out) if rc == 0 else []
    if rc != 0:
        problems = ["gpg could not read the key (rc=%s): %s" % (rc, err.strip())]
    else:
        problems = ak.check_key(keys, expected, int(time.time()))
    if problems:
        module.fail_json(
            msg="The repository key is not trusted: %s. Nothing was installed. If the repository "
            "rotated its key, verify the new fingerprint from the publisher and set %s to it."
            % ("; ".join(problems), name),
            fingerprint=expected,
            keys=keys,
        )
    module.exit_json(changed=False, keys=keys, fingerprint=expected)


def main():
    run_module()


if __name__ == "__main__":
    main()

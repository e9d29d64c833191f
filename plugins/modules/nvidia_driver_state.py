#!/usr/bin/python
# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_driver_state
short_description: Read the NVIDIA driver state of a host (packages, loaded module, DKMS, MOK)
version_added: "0.1.0"
description:
  - Read-only probe used by the C(odin.stack.nvidia_driver) role. It never changes the host.
  - Reports the installed version and the dpkg selection (C(hold) or C(install)) of the
    given packages, the NVIDIA kernel module loaded now (from C(/proc/driver/nvidia/version)),
    whether the running kernel has a build directory (needed for DKMS to build a module),
    whether the host is a container, and whether a MOK certificate is enrolled for Secure Boot.
  - With O(reference_package), compares the loaded module's version with that package's
    upstream version, so a driver/library mismatch after an upgrade is reported with both versions.
options:
  packages:
    description: Debian packages whose installed version and dpkg selection are reported.
    type: list
    elements: str
    default: []
  reference_package:
    description:
      - Package whose upstream version the loaded kernel module must equal
        (for example C(nvidia-kernel-dkms) or C(nvidia-utils-580)). It must be listed in O(packages).
    type: str
  proc_version_path:
    description: File the NVIDIA kernel module exports its version in.
    type: path
    default: /proc/driver/nvidia/version
  modules_path:
    description: Directory holding one subdirectory per kernel release.
    type: path
    default: /lib/modules
  kernel_release:
    description: Kernel release whose C(build) directory is looked for; defaults to the running kernel.
    type: str
  mok_cert:
    description:
      - DER certificate checked with C(mokutil --test-key). Not checked when unset.
    type: path
  kernel_modules_prefix:
    description:
      - Name prefix of prebuilt kernel module packages, one per kernel release (Ubuntu's
        C(linux-modules-nvidia-580-open-)). When set, the installed kernels and kernel flavour
        metapackages are read too, and RV(kernel_modules) says which module packages each
        bootable kernel needs; their installed versions and selections join RV(installed)
        and RV(selections).
    type: str
    version_added: "0.5.0"
  dpkg_admindir:
    description: dpkg's database directory, when it is not the host's (C(/var/lib/dpkg)).
    type: path
    version_added: "0.5.0"
attributes:
  check_mode:
    description: Whether the module can run with C(--check) and report what it would change without changing it.
    support: full
  diff_mode:
    description: Whether the module returns a diff of what it changed with C(--diff).
    support: none
author:
  - ODIN maintainers (@odin-stack)
"""

EXAMPLES = r"""
- name: Read the driver state
  odin.stack.nvidia_driver_state:
    packages: [nvidia-driver, nvidia-kernel-dkms]
    reference_package: nvidia-kernel-dkms
    mok_cert: /var/lib/dkms/mok.pub
  register: __state

- name: Fail on a driver/library mismatch
  ansible.builtin.fail:
    msg: "{{ __state.comparison.message }}"
  when: not __state.comparison.match
"""

RETURN = r"""
installed:
  description: Installed version of each package in O(packages) that is installed.
  returned: always
  type: dict
  sample: {nvidia-kernel-dkms: "535.309.01-0+deb12u1"}
selections:
  description: dpkg selection of each package in O(packages) that dpkg knows, C(hold) or C(install).
  returned: always
  type: dict
  sample: {nvidia-kernel-dkms: hold}
loaded:
  description: The loaded NVIDIA kernel module, or null when none is loaded.
  returned: always
  type: dict
  sample:
    version: "535.309.01"
    flavor: proprietary
    line: "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.309.01 ..."
comparison:
  description: Loaded module against O(reference_package); null without O(reference_package).
  returned: always
  type: dict
  sample: {match: false, expected: "535.309.01", found: "535.261.03", message: "the loaded NVIDIA kernel module is ..."}
kernel_release:
  description: The kernel release inspected.
  returned: always
  type: str
  sample: 6.1.0-40-amd64
kernel_build_dir:
  description: Whether O(modules_path)/<kernel_release>/build exists, so DKMS can build for this kernel.
  returned: always
  type: bool
container:
  description: The container technology this host runs in (C(systemd-detect-virt --container)), or C(none).
  returned: always
  type: str
  sample: docker
mok_key:
  description:
    - C(enrolled), C(not_enrolled), C(unknown), C(absent) (no certificate file),
      C(no_mokutil) or C(not_checked).
  returned: always
  type: str
  sample: not_enrolled
kernel_modules:
  description:
    - With O(kernel_modules_prefix), the prebuilt module packages of every kernel the host can
      boot (each installed C(linux-image-<release>) and the running kernel, oldest first), those
      not installed, and the module metapackage of each installed kernel flavour metapackage
      (C(linux-image-generic-hwe-24.04) gives C(<prefix>generic-hwe-24.04)). Null otherwise.
  returned: always
  type: dict
  sample:
    kernels: [6.8.0-49-generic, 6.8.0-51-generic]
    packages: [linux-modules-nvidia-580-open-6.8.0-49-generic, linux-modules-nvidia-580-open-6.8.0-51-generic]
    missing: [linux-modules-nvidia-580-open-6.8.0-51-generic]
    metapackages: [linux-modules-nvidia-580-open-generic-hwe-24.04]
nvidia_smi:
  description: Path of nvidia-smi, or null when it is not installed.
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.odin.stack.plugins.module_utils import _nvidia_driver as nd

ENV = {"LC_ALL": "C", "LANG": "C"}


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def query_packages(module, packages):
    """Installed versions and selections of packages (names or dpkg-query patterns)."""
    if not packages:
        return {}, {}
    dpkg_query = module.get_bin_path("dpkg-query", required=True)
    admindir = ["--admindir", module.params["dpkg_admindir"]] if module.params["dpkg_admindir"] else []
    # dpkg-query exits 1 when some package is unknown; the known ones are still listed.
    rc, out, err = module.run_command(
        [dpkg_query, *admindir, "-W", "-f", "${Package}\\t${Version}\\t${db:Status-Abbrev}\\n", *packages],
        environ_update=ENV,
    )
    if rc not in (0, 1):
        module.fail_json(msg="dpkg-query failed (rc=%s): %s. Check that dpkg works on this host." % (rc, err.strip()))
    return nd.parse_dpkg_query(out)


def detect_container(module):
    tool = module.get_bin_path("systemd-detect-virt")
    if not tool:
        return "none"
    rc, out, _err = module.run_command([tool, "--container"], environ_update=ENV)
    value = out.strip()
    return value if rc == 0 and value else "none"


def mok_state(module, cert):
    if not cert:
        return "not_checked"
    if not os.path.exists(cert):
        return "absent"
    mokutil = module.get_bin_path("mokutil")
    if not mokutil:
        return "no_mokutil"
    rc, out, err = module.run_command([mokutil, "--test-key", cert], environ_update=ENV)
    return nd.mok_key_state(rc, out, err)


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            packages=dict(type="list", elements="str", default=[]),
            reference_package=dict(type="str"),
            proc_version_path=dict(type="path", default="/proc/driver/nvidia/version"),
            modules_path=dict(type="path", default="/lib/modules"),
            kernel_release=dict(type="str"),
            mok_cert=dict(type="path"),
            kernel_modules_prefix=dict(type="str"),
            dpkg_admindir=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    reference = params["reference_package"]
    if reference and reference not in params["packages"]:
        module.fail_json(
            msg="reference_package %s must also be listed in packages %s" % (reference, params["packages"])
        )

    installed, selections = query_packages(module, params["packages"])
    loaded = nd.parse_proc_version(_read(params["proc_version_path"]))
    comparison = nd.compare_loaded(loaded, reference, installed.get(reference)) if reference else None
    kernel_release = params["kernel_release"] or os.uname().release
    kernel_modules = None
    prefix = params["kernel_modules_prefix"]
    if prefix:
        kernel_installed, kernel_selections = query_packages(module, ["linux-image-*", prefix + "*"])
        kernel_modules = nd.kernel_module_plan(prefix, kernel_release, kernel_installed)
        for package, version in kernel_installed.items():
            if package.startswith(prefix):
                installed[package] = version
        for package, selection in kernel_selections.items():
            if package.startswith(prefix):
                selections[package] = selection

    module.exit_json(
        changed=False,
        installed=installed,
        selections=selections,
        loaded=loaded,
        comparison=comparison,
        kernel_release=kernel_release,
        kernel_modules=kernel_modules,
        kernel_build_dir=os.path.isdir(os.path.join(params["modules_path"], kernel_release, "build")),
        container=detect_container(module),
        mok_key=mok_state(module, params["mok_cert"]),
        nvidia_smi=module.get_bin_path("nvidia-smi"),
    )


def main():
    run_module()


if __name__ == "__main__":
    main()

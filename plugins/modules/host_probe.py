#!/usr/bin/python
# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_probe
short_description: Detect NVIDIA GPUs, Secure Boot state and free disk space on a host
version_added: "0.1.0"
description:
  - Read-only probe used by the C(odin.stack.preflight) role before anything is changed.
  - Finds NVIDIA display functions (PCI vendor C(0x10de), class C(0x03xx)) from sysfs,
    falling back to C(lspci -Dnmm) when sysfs cannot be read.
  - Reads the Secure Boot state with C(mokutil --sb-state), falling back to the
    C(SecureBoot) EFI variable when mokutil is not installed.
  - Measures free space on the filesystems that will hold K3s and ODIN data.
  - Reports whether the C(nouveau) and C(nvidia) kernel modules are loaded.
options:
  pci_devices_path:
    description:
      - Directory listing PCI functions, one subdirectory each with C(vendor), C(device) and C(class) files.
    type: path
    default: /sys/bus/pci/devices
  efi_path:
    description:
      - EFI firmware directory. Its absence means the host booted without UEFI, so Secure Boot is unsupported.
    type: path
    default: /sys/firmware/efi
  sys_module_path:
    description:
      - Directory listing loaded kernel modules.
    type: path
    default: /sys/module
  disk_paths:
    description:
      - Paths whose filesystem free space is measured. A path that does not exist yet is
        measured on its nearest existing parent.
    type: list
    elements: path
    default: []
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
- name: Probe the host
  odin.stack.host_probe:
    disk_paths:
      - /var/lib/rancher
  register: __probe

- name: Show detected GPUs
  ansible.builtin.debug:
    msg: "{{ __probe.pci_gpus | map(attribute='address') | list }}"
"""

RETURN = r"""
pci_gpus:
  description: NVIDIA display functions found on the PCI bus.
  returned: always
  type: list
  elements: dict
  sample:
    - address: "0000:01:00.0"
      vendor_id: "10de"
      device_id: "2820"
      class: "030000"
      driver: nvidia
pci_source:
  description: Where the PCI list came from, C(sysfs), C(lspci), or C(none) when neither could be read.
  returned: always
  type: str
  sample: sysfs
secure_boot:
  description: Secure Boot state, one of C(enabled), C(disabled), C(unsupported) or C(unknown).
  returned: always
  type: str
  sample: disabled
secure_boot_source:
  description: C(mokutil) or C(efivars).
  returned: always
  type: str
  sample: mokutil
disks:
  description: Free and total bytes per requested path.
  returned: always
  type: list
  elements: dict
  sample:
    - path: /var/lib/rancher
      measured_at: /var/lib
      free_bytes: 107374182400
      total_bytes: 512110190592
kernel_modules:
  description: Whether the nouveau and nvidia kernel modules are loaded.
  returned: always
  type: dict
  sample: {nouveau: false, nvidia: true}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.odin.stack.plugins.module_utils import _host_probe as probe


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            pci_devices_path=dict(type="path", default="/sys/bus/pci/devices"),
            efi_path=dict(type="path", default="/sys/firmware/efi"),
            sys_module_path=dict(type="path", default="/sys/module"),
            disk_paths=dict(type="list", elements="path", default=[]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    env = {"LC_ALL": "C", "LANG": "C"}

    gpus = probe.pci_gpus_from_sysfs(params["pci_devices_path"])
    pci_source = "sysfs"
    if gpus is None:
        gpus, pci_source = [], "none"
        lspci = module.get_bin_path("lspci")
        if lspci:
            rc, out, err = module.run_command([lspci, "-Dnmm"], environ_update=env)
            if rc == 0:
                gpus, pci_source = probe.pci_gpus_from_lspci(out), "lspci"

    mokutil = module.get_bin_path("mokutil")
    if mokutil:
        rc, out, err = module.run_command([mokutil, "--sb-state"], environ_update=env)
        secure_boot, sb_source = probe.secure_boot_from_mokutil(rc, out, err), "mokutil"
        if secure_boot == "unknown":
            secure_boot, sb_source = probe.secure_boot_from_efivars(params["efi_path"]), "efivars"
    else:
        secure_boot, sb_source = probe.secure_boot_from_efivars(params["efi_path"]), "efivars"

    disks = []
    for path in params["disk_paths"]:
        try:
            disks.append(probe.disk_usage(path))
        except OSError as exc:
            module.fail_json(msg="Cannot measure free space for %s: %s" % (path, exc))

    module.exit_json(
        changed=False,
        pci_gpus=gpus,
        pci_source=pci_source,
        secure_boot=secure_boot,
        secure_boot_source=sb_source,
        disks=disks,
        kernel_modules={
            name: probe.kernel_module_loaded(name, params["sys_module_path"]) for name in ("nouveau", "nvidia")
        },
    )


def main():
    run_module()


if __name__ == "__main__":
    main()

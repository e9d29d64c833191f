#!/usr/bin/python
# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_restore
short_description: Restore an ODIN backup, or drill a restore into a scratch directory
version_added: "0.1.0"
description:
  - Reads a backup written by M(odin.stack.stack_backup), checks C(manifest.json) against
    C(manifest.sha256) and every file against its size and sha256 before touching anything,
    and refuses the backup when anything does not match.
  - In check mode lists, per file, what a restore would do (C(create), C(replace),
    C(unchanged), C(replace directory), C(create directory)).
  - I(mode=restore) puts the files back where they were backed up from (or where
    I(destinations) says). Replaced files and directories are moved aside as
    C(<path>.pre-restore-<time>), never deleted; a restored SQLite database's stale C(-wal)
    and C(-shm) files are moved aside too. A restored file takes the owner and mode of the file
    it replaces (0600 when there is none). When K3s components are restored and
    I(manage_k3s) is true, the K3s service is stopped before and started after.
  - I(mode=drill) restores into I(scratch_dir) instead and verifies the result end to end
    (SQLite C(integrity_check) and row counts, C(promtool tsdb list) on the TSDB, non-empty
    files); the live system is not touched.
  - I(mode=verify) checks that a backup can be relied on to rebuild the cluster, as
    C(playbooks/reset.yml) needs before deleting it. It checks the manifest and its signature,
    that directory name and creation time agree, every file's checksum, each of I(required_components)
    present and non-empty, a plain SQLite file passing C(integrity_check), at most
    I(max_age_hours) old. With I(backup=latest) the newest backup that passes is used and
    the ones passed over are listed with the reason. Nothing is written.
  - A restore writes only where the collection backs each component up from (I(k3s_datastore),
    I(grafana_db) and the other source options, globs matched per path segment) or where
    I(destinations) maps a file; a manifest naming any other C(restore_to) is refused.
  - A restored file or directory gets the owner, group and mode recorded at backup time,
    whether or not something is there now.
  - Runs under the backup directory's lock. Decrypted files exist only in a 0700 work
    directory (C(.tmp-restore-<pid>)) in I(backup_dir) and are removed on the way out; what
    an interrupted run left there or beside a destination is removed first.
  - Prometheus, Grafana and volume data belong to pods; stop those workloads before a
    I(mode=restore) of them (see docs/backup.md).
options:
  backup_dir:
    description: Directory holding the backups.
    type: path
    default: /var/backups/odin
  backup:
    description: Backup to restore, C(latest), a backup name (C(odin-20261121T031500Z)) or a path.
    type: str
    default: latest
  components:
    description: Components to restore. All components in the backup when empty.
    type: list
    elements: str
    default: []
  mode:
    description:
      - C(restore) puts the data back, C(drill) restores into I(scratch_dir) and verifies it,
        C(verify) only checks that the backup can be relied on.
    type: str
    choices: [restore, drill, verify]
    default: restore
  required_components:
    description: I(mode=verify) refuses a backup that lacks any of these, or holds them empty.
    type: list
    elements: str
    default: [k3s_datastore, k3s_token]
  max_age_hours:
    description: I(mode=verify) refuses backups older than this. No limit when omitted.
    type: float
  signing_key:
    description:
      - File holding the key the backups' manifests are signed with (see M(odin.stack.stack_backup)).
      - When given, an unsigned or differently signed backup is refused in every mode.
    type: path
  k3s_datastore:
    description: Where the K3s datastore is backed up from and may be restored to.
    type: path
    default: /var/lib/rancher/k3s/server/db/state.db
  k3s_token:
    description: Where the K3s token is backed up from and may be restored to.
    type: path
    default: /var/lib/rancher/k3s/server/token
  k3s_config:
    description: Where K3s' config file (and C(registries.yaml) beside it) is backed up from and may be restored to.
    type: path
    default: /etc/rancher/k3s/config.yaml
  grafana_db:
    description: Glob of where Grafana's database is backed up from and may be restored to.
    type: str
    default: /var/lib/rancher/k3s/storage/pvc-*_monitoring_*grafana*/grafana.db
  prometheus_data_dir:
    description: Glob of where Prometheus' TSDB is backed up from and may be restored to.
    type: str
    default: /var/lib/rancher/k3s/storage/pvc-*_monitoring_prometheus-*/prometheus-db
  volumes:
    description: Volume directories (or globs) that are backed up and may be restored to.
    type: list
    elements: str
    default: []
  scratch_dir:
    description: Where a drill restores to. Created, and removed afterwards unless I(keep_scratch).
    type: path
    default: /var/lib/odin/restore-drill
  keep_scratch:
    description: Leave the drill's scratch directory in place for inspection.
    type: bool
    default: false
  destinations:
    description: Restore a file or directory somewhere else, as a mapping of backed-up source path to destination path.
    type: dict
    default: {}
  age_identity:
    description: age identity file, needed to restore an encrypted backup.
    type: path
  manage_k3s:
    description: Stop the K3s service before restoring K3s components and start it afterwards.
    type: bool
    default: true
  k3s_service:
    description: Name of the K3s systemd unit.
    type: str
    default: k3s
attributes:
  check_mode:
    description: Whether the module can run with C(--check) and report what it would change without changing it.
    support: full
    details: Verifies the backup and returns the plan; nothing is written, not even in drill mode.
  diff_mode:
    description: Whether the module returns a diff of what it changed with C(--diff).
    support: none
requirements:
  - tar and zstd for archives, age for encrypted backups, promtool for a drill of Prometheus data
author:
  - ODIN maintainers (@odin-stack)
"""

EXAMPLES = r"""
- name: What would a restore of the latest backup change?
  odin.stack.stack_restore:
    backup: latest
  check_mode: true
  register: __plan

- name: Drill the latest backup end to end without touching the live system
  odin.stack.stack_restore:
    mode: drill

- name: Is there a backup of the cluster at most a day old that a restore can rely on?
  odin.stack.stack_restore:
    mode: verify
    max_age_hours: 24
  register: __trusted

- name: Restore the K3s datastore and token (K3s is stopped and started around it)
  odin.stack.stack_restore:
    backup: odin-20261121T031500Z
    components: [k3s_datastore, k3s_token]
"""

RETURN = r"""
backup:
  description: Directory of the backup that was used.
  returned: always
  type: str
  sample: /var/backups/odin/odin-20261121T031500Z
created:
  description: When the backup was taken (manifest C(created)).
  returned: always
  type: str
plan:
  description: Per file, the destination and the action a restore takes.
  returned: always
  type: list
  elements: dict
  sample:
    - component: k3s_datastore
      file: k3s_datastore/state.db
      destination: /var/lib/rancher/k3s/server/db/state.db
      action: replace
restored:
  description: What was restored, per file.
  returned: when not in check mode
  type: list
  elements: dict
moved_aside:
  description: Paths the replaced files and directories were moved to.
  returned: mode=restore, not in check mode
  type: list
  elements: str
drill:
  description: Checks run on the drill's restored files (SQLite integrity and row counts, TSDB blocks and series).
  returned: mode=drill, not in check mode
  type: list
  elements: dict
k3s_restarted:
  description: Whether K3s was stopped and started around the restore.
  returned: mode=restore, not in check mode
  type: bool
trusted:
  description: Whether a backup passed every check of I(mode=verify).
  returned: mode=verify
  type: bool
age_hours:
  description: Age of the trusted backup in hours.
  returned: mode=verify and a backup was trusted
  type: float
rejected:
  description: Backups I(mode=verify) looked at and refused, as [name, reason].
  returned: mode=verify
  type: list
  elements: list
"""

import os
import shutil

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.odin.stack.plugins.module_utils import _backup as backup

ENV = {"LC_ALL": "C", "LANG": "C"}


def _unit_active(module, systemctl, unit):
    rc, _out, _err = module.run_command([systemctl, "is-active", "--quiet", unit], environ_update=ENV)
    return rc == 0


def _systemctl(module, systemctl, action, unit):
    rc, out, err = module.run_command([systemctl, action, unit], environ_update=ENV)
    if rc != 0:
        module.fail_json(
            msg="systemctl %s %s failed (rc=%s): %s. Check 'journalctl -u %s'." % (action, unit, rc, err or out, unit)
        )


def _tools(module, components, need_promtool):
    archives = any(f["kind"] == "tar.zst" for c in components for f in c["files"])
    encrypted = any(f["path"].endswith(".age") for c in components for f in c["files"])
    return backup.Tools(
        tar=module.get_bin_path("tar", required=archives) or "tar",
        zstd=module.get_bin_path("zstd", required=archives) or "zstd",
        age=module.get_bin_path("age", required=encrypted),
        promtool=module.get_bin_path("promtool") if need_promtool else None,
    )


def _drill(module, path, components, result):
    p = module.params
    scratch = p["scratch_dir"]
    tools = _tools(module, components, need_promtool=True)
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch, mode=0o700)
    try:
        restored, _aside = backup.restore(path, components, tools, target_root=scratch, identity=p["age_identity"])
        report, problems = backup.drill(restored, tools)
    except (backup.BackupError, OSError) as exc:
        module.fail_json(msg="Restore drill of %s failed while restoring: %s" % (path, exc), **result)
    finally:
        if not p["keep_scratch"]:
            shutil.rmtree(scratch, ignore_errors=True)
    result.update(changed=True, restored=restored, drill=report)
    if problems:
        module.fail_json(msg="Restore drill of %s found problems: %s" % (path, "; ".join(problems)), **result)
    module.exit_json(**result)


SOURCES = ("k3s_datastore", "k3s_token", "k3s_config", "grafana_db", "prometheus_data_dir", "volumes")


def _verify(module, key):
    p = module.params
    unknown = sorted(set(p["required_components"]) - set(backup.COMPONENTS))
    if unknown:
        module.fail_json(
            msg="required_components has %s; choose from %s." % (", ".join(unknown), ", ".join(backup.COMPONENTS))
        )
    try:
        found = backup.trusted_backup(
            p["backup_dir"],
            backup=p["backup"],
            required=p["required_components"],
            max_age_hours=p["max_age_hours"],
            key=key,
        )
    except backup.BackupError as exc:
        module.fail_json(msg="No trusted backup: %s" % exc, trusted=False, rejected=[])
    result = {"changed": False, **found}
    if not found["trusted"]:
        reasons = "; ".join("%s: %s" % (name, reason) for name, reason in found["rejected"])
        module.fail_json(
            msg="No backup in %s can be relied on to rebuild the cluster: %s."
            % (p["backup_dir"], reasons or "there is no complete backup"),
            **result,
        )
    module.exit_json(**result)


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            backup_dir=dict(type="path", default="/var/backups/odin"),
            backup=dict(type="str", default="latest"),
            components=dict(type="list", elements="str", default=[]),
            mode=dict(type="str", choices=["restore", "drill", "verify"], default="restore"),
            required_components=dict(type="list", elements="str", default=list(backup.CLUSTER_COMPONENTS)),
            max_age_hours=dict(type="float"),
            signing_key=dict(type="path", no_log=False),
            k3s_datastore=dict(type="path", default=backup.DEFAULT_SOURCES["k3s_datastore"]),
            k3s_token=dict(type="path", default=backup.DEFAULT_SOURCES["k3s_token"]),
            k3s_config=dict(type="path", default=backup.DEFAULT_SOURCES["k3s_config"]),
            grafana_db=dict(type="str", default=backup.DEFAULT_SOURCES["grafana_db"]),
            prometheus_data_dir=dict(type="str", default=backup.DEFAULT_SOURCES["prometheus_data_dir"]),
            volumes=dict(type="list", elements="str", default=[]),
            scratch_dir=dict(type="path", default="/var/lib/odin/restore-drill"),
            keep_scratch=dict(type="bool", default=False),
            destinations=dict(type="dict", default={}),
            age_identity=dict(type="path"),
            manage_k3s=dict(type="bool", default=True),
            k3s_service=dict(type="str", default="k3s"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        key = backup.read_signing_key(p["signing_key"]) if p["signing_key"] else None
    except backup.BackupError as exc:
        module.fail_json(msg=str(exc))
    if p["mode"] == "verify":
        _verify(module, key)
    try:
        path = backup.resolve_backup(p["backup_dir"], p["backup"])
        manifest = backup.load_manifest(path, key)
        components = backup.select_components(manifest, p["components"])
    except backup.BackupError as exc:
        module.fail_json(msg="Refusing to restore: %s" % exc)
    result = {"changed": False, "backup": path, "created": manifest.get("created")}

    problems = backup.verify_backup(path, manifest)
    if problems:
        module.fail_json(
            msg="Refusing to restore %s: its files do not match manifest.json (%s). Nothing was changed; "
            "restore an older backup." % (path, "; ".join(problems)),
            problems=problems,
            **result,
        )

    target_root = p["scratch_dir"] if p["mode"] == "drill" else None
    destinations = {c["name"]: p["destinations"] for c in components}
    if p["mode"] == "restore":
        outside = backup.confine_restore(components, {k: p[k] for k in SOURCES}, destinations)
        if outside:
            module.fail_json(
                msg="Refusing to restore %s: it asks to write outside what this collection backs up (%s). "
                "Nothing was changed. A backup from another host or layout needs destinations; a forged "
                "one must not be restored." % (path, "; ".join(outside)),
                problems=outside,
                **result,
            )
    result["plan"] = backup.plan_restore(path, manifest, components, target_root, destinations)
    if module.check_mode:
        result["changed"] = any(step["action"] != "unchanged" for step in result["plan"])
        module.exit_json(**result)

    if p["mode"] == "drill":
        _drill(module, path, components, result)

    tools = _tools(module, components, need_promtool=False)
    touches_k3s = any(c["name"] in backup.K3S_COMPONENTS for c in components)
    systemctl = module.get_bin_path("systemctl") if p["manage_k3s"] and touches_k3s else None
    stopped = False
    if systemctl and _unit_active(module, systemctl, p["k3s_service"]):
        _systemctl(module, systemctl, "stop", p["k3s_service"])
        stopped = True
    try:
        restored, moved = backup.restore(path, components, tools, destinations=destinations, identity=p["age_identity"])
    except (backup.BackupError, OSError) as exc:
        module.fail_json(
            msg="Restore of %s failed part way: %s. Files replaced so far were moved aside as "
            "<path>.pre-restore-<time>; %s is left stopped so the mix is not served. Move them back or "
            "restore again, then start it." % (path, exc, p["k3s_service"] if stopped else "K3s"),
            **result,
        )
    if stopped:
        _systemctl(module, systemctl, "start", p["k3s_service"])
    result.update(changed=True, restored=restored, moved_aside=moved, k3s_restarted=stopped)
    module.exit_json(**result)


def main():
    run_module()


if __name__ == "__main__":
    main()

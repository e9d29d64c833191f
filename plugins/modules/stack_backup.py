#!/usr/bin/python
# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_backup
short_description: Take a consistent, checksummed backup of K3s, Prometheus, Grafana and chosen volumes
version_added: "0.1.0"
description:
  - Writes one backup directory C(odin-<YYYYmmddTHHMMSSZ>) under I(backup_dir) per run.
  - The K3s SQLite datastore and Grafana's SQLite database are copied online with SQLite's
    backup API (a consistent copy at one committed point while K3s keeps writing), checked
    with C(PRAGMA integrity_check). The K3s server token is always wanted with the datastore,
    since the datastore's secrets cannot be read without it.
  - Prometheus is asked for a TSDB snapshot through its admin API (C(--web.enable-admin-api)),
    the snapshot is archived with tar and zstd and then removed.
  - Chosen local-path volume directories are archived with tar and zstd.
  - The backup is written under C(.tmp-*) and renamed to its final name only when every file,
    C(manifest.json) (component, files, sizes, sha256, tool versions) and C(manifest.sha256)
    are written and synced, so an interrupted or failed run (a full disk included) never
    leaves a backup that looks complete. Directories are 0700, files 0600.
  - Files are encrypted with C(age) when I(age_recipients) is given.
  - Components whose source does not exist on the host are listed in C(missing_components)
    and in the manifest, never dropped silently.
  - A component that fails (other than one in I(required_components), or a full disk, also
    when a child process such as age reports it) is left out and listed in
    C(failed_components); the others are still backed up into C(partial-odin-<time>), which
    no listing, retention, restore of C(latest) or reset check counts as a backup, and the
    task fails so the problem is seen.
  - Each file's source owner, group and mode are recorded in the manifest, so a restore
    gives them back even where the file no longer exists.
  - With I(signing_key) the manifest is signed (C(manifest.sig), HMAC-SHA256), so a restore
    or reset given the same key refuses a manifest not written by a holder of the key.
  - Prometheus snapshots the module asked for are listed in C(.prometheus-snapshots.json)
    until removed; a later run removes those an interrupted run left behind, as it removes
    the work directories (C(.tmp-*)) and restore leftovers (C(<path>.restore-tmp)) of
    interrupted runs.
  - Afterwards keeps the newest backup of each of the last I(keep_daily) days and of each of
    the last I(keep_weekly) ISO weeks and deletes the others.
  - With I(textfile_dir) writes the result as Prometheus metrics for node-exporter's textfile
    collector (C(odin_backup.prom)).
options:
  backup_dir:
    description: Directory holding the backups (created 0700).
    type: path
    default: /var/backups/odin
  components:
    description: Components to back up.
    type: list
    elements: str
    choices: [k3s_datastore, k3s_token, k3s_config, prometheus, grafana, volumes]
    default: [k3s_datastore, k3s_token, k3s_config, prometheus, grafana, volumes]
  required_components:
    description:
      - Components whose absence or failure fails the whole run, leaving no backup, instead of
        being reported in C(missing_components) or C(failed_components).
      - When not given, those of C(k3s_datastore) and C(k3s_token) that I(components) holds
        (what a restore of the cluster needs).
    type: list
    elements: str
  signing_key:
    description:
      - File holding the manifest signing key (at least 32 bytes, mode 0600 or stricter).
      - When given, the manifest is signed; M(odin.stack.stack_restore) with the same key refuses
        unsigned or differently signed backups.
    type: path
  k3s_datastore:
    description: K3s' SQLite datastore.
    type: path
    default: /var/lib/rancher/k3s/server/db/state.db
  k3s_token:
    description: K3s' server token file.
    type: path
    default: /var/lib/rancher/k3s/server/token
  k3s_config:
    description: K3s' config file; C(registries.yaml) next to it is included when present.
    type: path
    default: /etc/rancher/k3s/config.yaml
  grafana_db:
    description: Grafana's SQLite database. A glob is accepted when it matches exactly one file.
    type: str
    default: /var/lib/rancher/k3s/storage/pvc-*_monitoring_*grafana*/grafana.db
  prometheus_url:
    description: Base URL of Prometheus' HTTP API, with the admin API enabled.
    type: str
    default: http://127.0.0.1:9090
  prometheus_data_dir:
    description:
      - Prometheus' TSDB directory as seen from this host, where the snapshot appears under C(snapshots/).
      - A glob is accepted when it matches exactly one directory.
    type: str
    default: /var/lib/rancher/k3s/storage/pvc-*_monitoring_prometheus-*/prometheus-db
  volumes:
    description: Directories (for example local-path volumes) archived as they are.
    type: list
    elements: path
    default: []
  age_recipients:
    description: age public keys; when given every file of the backup is encrypted to them.
    type: list
    elements: str
    default: []
  keep_daily:
    description: Days for which the newest backup is kept.
    type: int
    default: 7
  keep_weekly:
    description: ISO weeks for which the newest backup is kept.
    type: int
    default: 4
  prune:
    description:
      - Apply retention after the backup. With C(false) nothing is deleted. The safety backup
        taken before a restore uses C(false), because it is the newest of its day and retention
        would delete the backup of the same day that is about to be restored.
    type: bool
    default: true
    version_added: "0.5.0"
  textfile_dir:
    description: node-exporter textfile collector directory for the result metrics. No metrics when omitted.
    type: path
  zstd_level:
    description: zstd compression level of archives.
    type: int
    default: 3
attributes:
  check_mode:
    description: Whether the module can run with C(--check) and report what it would change without changing it.
    support: full
    details: Reports which components would be backed up, which are missing, and which backups retention would delete.
  diff_mode:
    description: Whether the module returns a diff of what it changed with C(--diff).
    support: none
requirements:
  - tar and zstd on the host (for Prometheus and volumes), age when encrypting
author:
  - ODIN maintainers (@odin-stack)
"""

EXAMPLES = r"""
- name: Back up K3s and the monitoring data now
  odin.stack.stack_backup:
    backup_dir: /var/backups/odin
    required_components: [k3s_datastore, k3s_token]
    textfile_dir: /var/lib/node_exporter/textfile_collector
  register: __backup

- name: Say where it went and what was not there
  ansible.builtin.debug:
    msg: "{{ __backup.path }} ({{ __backup.size_bytes }} bytes); missing: {{ __backup.missing_components }}"

- name: Encrypted backup of the K3s datastore only, keeping two weeks of dailies
  odin.stack.stack_backup:
    components: [k3s_datastore, k3s_token, k3s_config]
    age_recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]
    keep_daily: 14
    keep_weekly: 0
"""

RETURN = r"""
path:
  description: Directory of the new backup.
  returned: success, not in check mode
  type: str
  sample: /var/backups/odin/odin-20261121T031500Z
name:
  description: Name of the new backup.
  returned: success, not in check mode
  type: str
  sample: odin-20261121T031500Z
partial:
  description: Whether a component failed, so the run was kept as C(partial-odin-<time>) and is no backup.
  returned: success, not in check mode
  type: bool
size_bytes:
  description: Bytes of all files in the backup.
  returned: success, not in check mode
  type: int
duration_seconds:
  description: Seconds the backup took.
  returned: success, not in check mode
  type: float
components:
  description: Components in the backup (in check mode, those that would be).
  returned: always
  type: list
  elements: str
  sample: [k3s_datastore, k3s_token, k3s_config, prometheus]
missing_components:
  description: Components that were asked for but have no source on this host, with the reason.
  returned: always
  type: list
  elements: dict
  sample:
    - component: grafana
      source: /var/lib/rancher/k3s/storage/pvc-*_monitoring_*grafana*/grafana.db
      reason: nothing matches
failed_components:
  description:
    - Components whose source exists but whose backup failed (for example Prometheus without
      its admin API). The backup of the others is complete; the task fails and the metrics
      report a failed run.
  returned: success, not in check mode
  type: list
  elements: dict
pruned:
  description: Backups deleted by retention (in check mode, those that would be).
  returned: always
  type: list
  elements: str
manifest:
  description: The backup's manifest.json.
  returned: success, not in check mode
  type: dict
metrics:
  description: Values written to the textfile collector.
  returned: when textfile_dir is set
  type: dict
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.odin.stack.plugins.module_utils import _backup as backup


def _config(p):
    return {
        "backup_dir": p["backup_dir"],
        "components": p["components"],
        "required_components": p["required_components"],
        "k3s_datastore": p["k3s_datastore"],
        "k3s_token": p["k3s_token"],
        "k3s_config": p["k3s_config"],
        "grafana_db": p["grafana_db"],
        "prometheus_url": p["prometheus_url"],
        "prometheus_data_dir": p["prometheus_data_dir"],
        "volumes": p["volumes"],
        "age_recipients": p["age_recipients"],
        "signing_key": p["signing_key"],
    }


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            backup_dir=dict(type="path", default="/var/backups/odin"),
            components=dict(
                type="list", elements="str", choices=list(backup.COMPONENTS), default=list(backup.COMPONENTS)
            ),
            required_components=dict(type="list", elements="str"),
            signing_key=dict(type="path", no_log=False),
            k3s_datastore=dict(type="path", default="/var/lib/rancher/k3s/server/db/state.db"),
            k3s_token=dict(type="path", default="/var/lib/rancher/k3s/server/token"),
            k3s_config=dict(type="path", default="/etc/rancher/k3s/config.yaml"),
            grafana_db=dict(type="str", default="/var/lib/rancher/k3s/storage/pvc-*_monitoring_*grafana*/grafana.db"),
            prometheus_url=dict(type="str", default="http://127.0.0.1:9090"),
            prometheus_data_dir=dict(
                type="str", default="/var/lib/rancher/k3s/storage/pvc-*_monitoring_prometheus-*/prometheus-db"
            ),
            volumes=dict(type="list", elements="path", default=[]),
            age_recipients=dict(type="list", elements="str", default=[]),
            keep_daily=dict(type="int", default=7),
            keep_weekly=dict(type="int", default=4),
            prune=dict(type="bool", default=True),
            textfile_dir=dict(type="path"),
            zstd_level=dict(type="int", default=3),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["required_components"] is None:
        p["required_components"] = backup.required_components({"components": p["components"]})
    unknown = sorted(set(p["required_components"]) - set(backup.COMPONENTS))
    if unknown:
        module.fail_json(
            msg="required_components has %s; choose from %s." % (", ".join(unknown), ", ".join(backup.COMPONENTS))
        )
    not_chosen = sorted(set(p["required_components"]) - set(p["components"]))
    if not_chosen:
        module.fail_json(
            msg="required_components has %s, which components (%s) does not back up; add it to components "
            "or remove it from required_components." % (", ".join(not_chosen), ", ".join(p["components"]))
        )
    for name in ("keep_daily", "keep_weekly"):
        if p[name] < 0:
            module.fail_json(msg="%s is %s; it must be 0 or more." % (name, p[name]))

    config = _config(p)
    present, missing = backup.plan_sources(config)
    result = {"changed": False, "components": sorted(present), "missing_components": missing, "pruned": []}

    if module.check_mode:
        would_delete = []
        if p["prune"]:
            would_delete = backup.prune(p["backup_dir"], p["keep_daily"], p["keep_weekly"], dry_run=True)[1]
        result.update(changed=bool(present), pruned=would_delete)
        module.exit_json(**result)

    tools = backup.Tools(
        tar=module.get_bin_path("tar", required="prometheus" in present or "volumes" in present) or "tar",
        zstd=module.get_bin_path("zstd", required="prometheus" in present or "volumes" in present) or "zstd",
        age=module.get_bin_path("age", required=bool(p["age_recipients"])),
        zstd_level=p["zstd_level"],
    )
    started = time.time()
    try:
        taken = backup.take_backup(config, tools)
    except backup.BackupError as exc:
        if p["textfile_dir"]:
            result["metrics"] = backup.write_metrics(p["textfile_dir"], False, started, time.time() - started)
        module.fail_json(msg="Backup failed, no backup was marked complete: %s" % exc, **result)

    # A partial run is not a backup to retention, so it pushes no complete one out.
    pruned = backup.prune(p["backup_dir"], p["keep_daily"], p["keep_weekly"])[1] if p["prune"] else []
    result.update(
        changed=True,
        path=taken["path"],
        name=taken["name"],
        partial=taken["partial"],
        size_bytes=taken["size_bytes"],
        duration_seconds=taken["duration_seconds"],
        components=taken["components"],
        missing_components=taken["missing"],
        pruned=pruned,
        manifest=taken["manifest"],
    )
    result["failed_components"] = taken["failed"]
    if p["textfile_dir"]:
        result["metrics"] = backup.write_metrics(
            p["textfile_dir"], not taken["failed"], started, taken["duration_seconds"], taken["size_bytes"]
        )
    for item in taken["missing"]:
        module.warn("backup component %s not backed up: %s (%s)" % (item["component"], item["source"], item["reason"]))
    if taken["failed"]:
        module.fail_json(
            msg="Backup failed: %s holds everything except %s (%s); it does not count as a backup. "
            "Fix the cause and run the backup again."
            % (
                taken["path"],
                ", ".join(f["component"] for f in taken["failed"]),
                "; ".join("%s: %s" % (f["component"], f["reason"]) for f in taken["failed"]),
            ),
            **result,
        )
    module.exit_json(**result)


def main():
    run_module()


if __name__ == "__main__":
    main()

"""playbooks/validate.yml refuses every bad setting before anything changes, naming it.

One ansible-playbook run checks the whole table: every case is a host of its own (local
connection, its own state and backup directories under tmp_path) with the case's bad
settings as host variables, next to good hosts that must pass. Each case host must fail
with a message that names the variable (and the bad value where it is printable), names no
other setting than the ones the case is about, change nothing and leave its directories
uncreated. The host's configuration, program and state directories, the checkout and the
cases' directories are compared byte for byte before and after the run. Cases marked gpu
run with odin_gpu_resolved true, so the host GPU layer's checks run too (they read the
dpkg state, read-only).
"""

import copy
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run
from hoststate import HOST_EXCLUDE, HOST_ROOTS, changes, snapshot

ROLES = ("nvidia_driver", "nvidia_container_toolkit", "k3s", "helm", "gpu_k8s", "monitoring", "backup", "verify")
MONITORING_DEFAULTS = yaml.safe_load((REPO / "roles" / "monitoring" / "defaults" / "main.yml").read_text())
BACKUP_COMPONENTS = ["k3s_datastore", "k3s_token", "k3s_config", "prometheus", "grafana"]
WEBHOOK = {"name": "ops", "type": "webhook", "url": "https://hooks.example.test/odin"}
SMTP = {"smarthost": "smtp.example.test:587", "from": "odin@example.test"}
EMAIL = {"name": "mail", "type": "email", "to": "ops@example.test"}
SECRET = "SECRET-0815"  # noqa: S105 (a marker the tests search the output for)


@dataclass
class Case:
    id: str
    # The bad settings: the message must name each of them.
    settings: dict
    # Good settings the rule needs to apply (k3s_source: mirror for k3s_mirror_url); may be named.
    context: dict = field(default_factory=dict)
    gpu: bool = False
    # Text the message must hold besides the variable names; None: every printable value.
    shows: list | None = None
    # Other settings the message may name (the rule compares them with the case's own).
    mentions: tuple = ()
    # Secrets the output must not hold.
    hidden: tuple = ()

    @property
    def host(self):
        return "case_" + re.sub(r"[^a-z0-9]+", "_", self.id.lower())

    def expected_text(self):
        if self.shows is not None:
            return list(self.shows)
        return [
            str(value)
            for value in self.settings.values()
            if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip()
        ]


def monitoring_default(name, change):
    """A copy of the monitoring role's default for `name`, changed by change(value)."""
    value = copy.deepcopy(MONITORING_DEFAULTS[name])
    change(value)
    return value


CASES = [
    # Cross-cutting settings (odin_*).
    Case("odin_state_dir relative", {"odin_state_dir": "odin-relative-state"}),
    Case("odin_state_dir relative, GPU layer", {"odin_state_dir": "odin-relative-gpu-state"}, gpu=True),
    Case("odin_state_dir empty", {"odin_state_dir": ""}, shows=["odin_state_dir=''"]),
    Case("odin_backup_dir relative", {"odin_backup_dir": "odin-relative-backups"}),
    Case("odin_kubeconfig relative", {"odin_kubeconfig": "k3s.yaml"}),
    Case("odin_textfile_dir relative", {"odin_textfile_dir": "textfile_collector"}),
    Case("odin_backup_signing_key relative", {"odin_backup_signing_key": "backup-signing.key"}),
    Case("odin_listen_address octet out of range", {"odin_listen_address": "192.168.1.300"}),
    Case("odin_listen_address with a port", {"odin_listen_address": "127.0.0.1:3000"}),
    Case("odin_listen_address a host name", {"odin_listen_address": "laptop.lan"}),
    # nvidia_driver
    Case("nvidia_driver_version wildcard", {"nvidia_driver_version": "535.*"}, gpu=True),
    Case("nvidia_driver_version trailing space", {"nvidia_driver_version": "535.309.01-0+deb12u1 "}, gpu=True),
    Case("nvidia_driver_branch unknown", {"nvidia_driver_branch": "999"}, gpu=True),
    Case("nvidia_driver_flavor unknown", {"nvidia_driver_flavor": "closed"}, gpu=True),
    Case("nvidia_driver_debian_mirror no scheme", {"nvidia_driver_debian_mirror": "deb.debian.org/debian"}, gpu=True),
    Case(
        "nvidia_driver_debian_security_mirror ftp",
        {"nvidia_driver_debian_security_mirror": "ftp://security.debian.org/debian-security"},
        gpu=True,
    ),
    Case("nvidia_driver_mok_certificate relative", {"nvidia_driver_mok_certificate": "mok.pub"}, gpu=True),
    Case("nvidia_driver_reboot_timeout zero", {"nvidia_driver_reboot_timeout": 0}, gpu=True),
    Case("nvidia_driver_reboot_timeout not a number", {"nvidia_driver_reboot_timeout": "soon"}, gpu=True),
    # nvidia_container_toolkit
    Case("nvidia_container_toolkit_version no revision", {"nvidia_container_toolkit_version": "1.20.0"}, gpu=True),
    Case(
        "nvidia_container_toolkit_version trailing space", {"nvidia_container_toolkit_version": "1.20.0-1 "}, gpu=True
    ),
    Case(
        "nvidia_container_toolkit_repo_url no scheme",
        {"nvidia_container_toolkit_repo_url": "nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)"},
        gpu=True,
    ),
    Case(
        "nvidia_container_toolkit_repo_key_url file",
        {"nvidia_container_toolkit_repo_key_url": "file:///srv/gpgkey"},
        gpu=True,
    ),
    Case(
        "nvidia_container_toolkit_repo_key_fingerprint short",
        {"nvidia_container_toolkit_repo_key_fingerprint": "F796ECB0"},
        gpu=True,
    ),
    Case(
        "nvidia_container_toolkit_keyring not asc",
        {"nvidia_container_toolkit_keyring": "/etc/apt/keyrings/nvidia.gpg"},
        gpu=True,
    ),
    Case(
        "nvidia_container_toolkit_keyring relative",
        {"nvidia_container_toolkit_keyring": "keyrings/nvidia-container-toolkit.asc"},
        gpu=True,
    ),
    Case(
        "nvidia_container_toolkit_cdi_refresh not a bool",
        {"nvidia_container_toolkit_cdi_refresh": "sometimes"},
        gpu=True,
    ),
    # k3s
    Case("k3s_version no v", {"k3s_version": "1.34.2+k3s1"}),
    Case("k3s_version trailing space", {"k3s_version": "v1.34.2+k3s1 "}, shows=["'v1.34.2+k3s1 '"]),
    Case("k3s_source unknown", {"k3s_source": "http"}),
    Case("k3s_mirror_url empty", {"k3s_mirror_url": ""}, context={"k3s_source": "mirror"}),
    Case("k3s_mirror_url no scheme", {"k3s_mirror_url": "mirror.lan/k3s"}, context={"k3s_source": "mirror"}),
    Case(
        "k3s_bundle_dir empty",
        {"k3s_bundle_dir": ""},
        context={"k3s_source": "bundle"},
        mentions=("k3s_airgap_images",),
    ),
    Case("k3s_bundle_dir relative", {"k3s_bundle_dir": "bundle/k3s"}, context={"k3s_source": "bundle"}),
    Case("k3s_sha256 not hex", {"k3s_sha256": "ABC123"}),
    Case("k3s_node_role unknown", {"k3s_node_role": "master"}),
    Case(
        "k3s_config bool as string", {"k3s_config": {"secrets-encryption": "yes"}}, shows=["secrets-encryption", "yes"]
    ),
    Case("k3s_config key with dashes", {"k3s_config": {"--node-name": "odin"}}, shows=["--node-name"]),
    Case("k3s_config a list", {"k3s_config": ["node-name=odin"]}, shows=[]),
    Case(
        "k3s_kubelet_args one string",
        {"k3s_kubelet_args": "system-reserved=cpu=500m,memory=1Gi"},
    ),
    Case("k3s_kubelet_args entry without =", {"k3s_kubelet_args": ["max-pods 110"]}, shows=["max-pods 110"]),
    Case("k3s_node_labels entry without =", {"k3s_node_labels": ["gpu"]}, shows=["'gpu'"]),
    Case("k3s_node_labels one string", {"k3s_node_labels": "zone=lab"}),
    Case("k3s_gpu_node_label without =", {"k3s_gpu_node_label": "nvidia.com/gpu.present"}),
    Case("k3s_local_storage_path relative", {"k3s_local_storage_path": "storage"}),
    Case("k3s_ready_timeout zero", {"k3s_ready_timeout": 0}),
    Case("k3s_stable_address not an address", {"k3s_stable_address": "172.31.254"}),
    Case("k3s_stable_address with a prefix", {"k3s_stable_address": "172.31.254.1/24"}),
    Case("k3s_stable_address loopback", {"k3s_stable_address": "127.0.0.5"}),
    Case("k3s_stable_address link-local", {"k3s_stable_address": "169.254.10.1"}),
    Case("k3s_stable_address in the service range", {"k3s_stable_address": "10.43.0.20"}),
    Case("k3s_stable_address IPv6", {"k3s_stable_address": "fd00::1"}),
    Case("k3s_stable_interface too long", {"k3s_stable_interface": "odin-stable-address0"}),
    Case("k3s_stable_interface lo", {"k3s_stable_interface": "lo"}),
    Case("k3s_stable_interface_kind unknown", {"k3s_stable_interface_kind": "tap"}),
    Case("k3s_stable_address_enabled not a bool", {"k3s_stable_address_enabled": "sometimes"}),
    Case(
        "k3s_stable_address with node-ip in k3s_config",
        {"k3s_config": {"node-ip": "192.168.1.20"}},
        shows=["k3s_config['node-ip']", "k3s_stable_address_enabled"],
        mentions=("k3s_stable_address_enabled",),
    ),
    # Registry settings may hold credentials: the value is not echoed, its type is.
    Case(
        "k3s_registries not a dict", {"k3s_registries": "docker.io=https://mirror.example.test"}, shows=["got a string"]
    ),
    Case(
        "k3s_registries endpoint without scheme",
        {"k3s_registries": {"mirrors": {"docker.io": {"endpoint": ["mirror.example.test"]}}}},
        shows=["'mirror.example.test'"],
    ),
    Case(
        "k3s_registries endpoint one string",
        {"k3s_registries": {"mirrors": {"docker.io": {"endpoint": "https://mirror.example.test"}}}},
        shows=["k3s_registries.mirrors['docker.io'].endpoint"],
    ),
    Case(
        "k3s_registries unknown key",
        {"k3s_registries": {"mirror": {"docker.io": {"endpoint": ["https://mirror.example.test"]}}}},
        shows=["'mirror'"],
    ),
    Case(
        "k3s_registries password without username",
        {"k3s_registries": {"configs": {"registry.example.test": {"auth": {"password": SECRET}}}}},
        shows=["k3s_registries.configs['registry.example.test'].auth"],
        hidden=(SECRET,),
    ),
    Case(
        "k3s_registries relative CA file",
        {"k3s_registries": {"configs": {"registry.example.test": {"tls": {"ca_file": "ca.pem"}}}}},
        shows=["'ca.pem'"],
    ),
    Case("k3s_reset_max_backup_age_hours zero", {"k3s_reset_max_backup_age_hours": 0}),
    Case("k3s_server_url no scheme", {"k3s_server_url": "k3s.lan:6443"}),
    Case("k3s_allow_downgrade not a bool", {"k3s_allow_downgrade": "perhaps"}),
    # helm
    Case("helm_version no v", {"helm_version": "3.19.0"}),
    Case("helm_version trailing space", {"helm_version": "v3.19.0 "}, shows=["'v3.19.0 '"]),
    Case("helm_source unknown", {"helm_source": "ftp"}),
    Case("helm_mirror_url empty", {"helm_mirror_url": ""}, context={"helm_source": "mirror"}),
    Case("helm_mirror_url no scheme", {"helm_mirror_url": "get.helm.lan"}, context={"helm_source": "mirror"}),
    Case("helm_bundle_dir relative", {"helm_bundle_dir": "bundle/helm"}, context={"helm_source": "bundle"}),
    Case("helm_sha256 not hex", {"helm_sha256": "xyz"}),
    # gpu_k8s
    Case("gpu_k8s_chart_version v prefix", {"gpu_k8s_chart_version": "v0.20.0"}),
    Case("gpu_k8s_chart_version latest", {"gpu_k8s_chart_version": "latest"}),
    Case("gpu_k8s_chart_version two parts", {"gpu_k8s_chart_version": "0.20"}),
    Case("gpu_k8s_chart_version trailing space", {"gpu_k8s_chart_version": "0.20.0 "}, shows=["'0.20.0 '"]),
    Case("gpu_k8s_chart_repo_url no scheme", {"gpu_k8s_chart_repo_url": "nvidia.github.io/k8s-device-plugin"}),
    Case("gpu_k8s_chart_path relative", {"gpu_k8s_chart_path": "charts/nvidia-device-plugin-0.20.0.tgz"}),
    Case("gpu_k8s_namespace not a DNS label", {"gpu_k8s_namespace": "NVIDIA_Plugin"}),
    Case("gpu_k8s_release_name with spaces", {"gpu_k8s_release_name": "nvidia device plugin"}),
    Case("gpu_k8s_time_slicing_replicas zero", {"gpu_k8s_time_slicing_replicas": 0}),
    Case("gpu_k8s_timeout zero", {"gpu_k8s_timeout": 0}),
    Case("gpu_k8s_containerd_config relative", {"gpu_k8s_containerd_config": "config.toml"}),
    # monitoring
    Case("monitoring chart version latest", {"monitoring_kube_prometheus_stack_version": "latest"}),
    Case("monitoring chart version trailing space", {"monitoring_loki_version": "18.11.0 "}, shows=["'18.11.0 '"]),
    Case("monitoring_chart_source unknown", {"monitoring_chart_source": "git"}),
    Case(
        "monitoring_chart_dir relative",
        {"monitoring_chart_dir": "charts"},
        context={"monitoring_chart_source": "directory"},
    ),
    Case(
        "monitoring_chart_repositories no scheme",
        {
            "monitoring_chart_repositories": monitoring_default(
                "monitoring_chart_repositories", lambda repos: repos.update(grafana="grafana.github.io/helm-charts")
            )
        },
        shows=["grafana.github.io/helm-charts"],
    ),
    Case(
        "monitoring_chart_repositories missing one",
        {
            "monitoring_chart_repositories": monitoring_default(
                "monitoring_chart_repositories", lambda repos: repos.pop("grafana")
            )
        },
        shows=["no entry for grafana"],
    ),
    Case("monitoring_chart_sha256 not hex", {"monitoring_chart_sha256": {"loki": "xyz"}}, shows=["loki", "xyz"]),
    Case("monitoring_release_timeout zero", {"monitoring_release_timeout": 0}),
    Case("monitoring_grafana_port 70000", {"monitoring_grafana_port": 70000}),
    Case("monitoring_prometheus_port zero", {"monitoring_prometheus_port": 0}),
    Case("monitoring_loki_port not a number", {"monitoring_loki_port": "http"}),
    Case(
        "monitoring ports shared",
        {"monitoring_alertmanager_port": 9090},
        mentions=("monitoring_prometheus_port",),
    ),
    Case("monitoring_prometheus_retention 100000000y", {"monitoring_prometheus_retention": "100000000y"}),
    Case("monitoring_prometheus_retention negative", {"monitoring_prometheus_retention": "-15d"}),
    Case("monitoring_prometheus_scrape_interval no unit", {"monitoring_prometheus_scrape_interval": "30"}),
    Case("monitoring_prometheus_scrape_interval zero", {"monitoring_prometheus_scrape_interval": "0s"}),
    Case("monitoring_loki_retention spelled out", {"monitoring_loki_retention": "7 days"}),
    Case("monitoring_prometheus_retention_size no unit", {"monitoring_prometheus_retention_size": "8gigs"}),
    Case(
        "monitoring_prometheus_retention_size above the volume",
        {"monitoring_prometheus_retention_size": "20GiB"},
        mentions=("monitoring_prometheus_storage_size",),
    ),
    Case("monitoring_prometheus_storage_size not a quantity", {"monitoring_prometheus_storage_size": "10GB"}),
    Case(
        "monitoring_resources not a quantity",
        {
            "monitoring_resources": monitoring_default(
                "monitoring_resources", lambda res: res["prometheus"]["limits"].update(memory="1.5GB")
            )
        },
        shows=["monitoring_resources.prometheus.limits.memory", "1.5GB"],
    ),
    Case(
        "monitoring_resources missing a component",
        {"monitoring_resources": monitoring_default("monitoring_resources", lambda res: res.pop("loki"))},
        shows=["loki"],
    ),
    Case("monitoring_storage_class not a DNS name", {"monitoring_storage_class": "Local_Path"}),
    Case("monitoring_journal_units without a type", {"monitoring_journal_units": ["k3s"]}, shows=["'k3s'"]),
    Case(
        "monitoring_gpu_temperature_warning above critical",
        {"monitoring_gpu_temperature_warning": 95},
        mentions=("monitoring_gpu_temperature_critical",),
    ),
    Case("monitoring_gpu_memory_used_ratio 1.5", {"monitoring_gpu_memory_used_ratio": 1.5}),
    Case("monitoring_node_disk_free_ratio negative", {"monitoring_node_disk_free_ratio": -0.1}),
    Case("monitoring_node_memory_available_ratio zero", {"monitoring_node_memory_available_ratio": 0.0}),
    Case("monitoring_backup_max_age_hours zero", {"monitoring_backup_max_age_hours": 0}),
    Case("monitoring_apply not a bool", {"monitoring_apply": "sometimes"}),
    Case(
        "monitoring receiver type unknown",
        {"monitoring_alertmanager_receivers": [{"name": "ops", "type": "pager"}]},
        shows=["pager"],
    ),
    Case(
        "monitoring webhook receiver without url",
        {"monitoring_alertmanager_receivers": [{"name": "hook", "type": "webhook"}]},
        shows=["'hook'", "need an http(s) url"],
    ),
    Case(
        "monitoring slack receiver url no scheme",
        {"monitoring_alertmanager_receivers": [{"name": "chat", "type": "slack", "url": "hooks.test/" + SECRET}]},
        shows=["'chat'", "need an http(s) url"],
        hidden=(SECRET,),
    ),
    Case(
        "monitoring email receiver without smtp",
        {"monitoring_alertmanager_receivers": [EMAIL]},
        shows=["'mail'", "smarthost"],
        mentions=("monitoring_alertmanager_smtp",),
    ),
    Case(
        "monitoring email receiver without to",
        {"monitoring_alertmanager_receivers": [{"name": "mail", "type": "email"}]},
        context={"monitoring_alertmanager_smtp": SMTP},
        shows=["'mail'", "'to'"],
    ),
    Case(
        "monitoring receiver named null",
        {"monitoring_alertmanager_receivers": [dict(WEBHOOK, name="null")]},
        shows=["'null'", "reserved"],
    ),
    Case(
        "monitoring smtp password empty",
        {"monitoring_alertmanager_smtp": dict(SMTP, auth_username="odin", auth_password="")},
        context={"monitoring_alertmanager_receivers": [EMAIL]},
        shows=["auth_password is empty"],
    ),
    Case(
        "monitoring smtp password missing",
        {"monitoring_alertmanager_smtp": dict(SMTP, auth_username="odin")},
        context={"monitoring_alertmanager_receivers": [EMAIL]},
        shows=["auth_password is empty while auth_username is set"],
    ),
    Case(
        "monitoring smtp smarthost without port",
        {"monitoring_alertmanager_smtp": {"smarthost": "smtp.example.test"}},
        context={"monitoring_alertmanager_receivers": [EMAIL]},
        shows=["'smtp.example.test'", "host:port"],
    ),
    Case(
        "monitoring smtp unknown key",
        {"monitoring_alertmanager_smtp": {"smart_host": "smtp.example.test:587", "auth_password": SECRET}},
        shows=["smart_host"],
        hidden=(SECRET,),
    ),
    Case(
        "monitoring matcher without operator",
        {"monitoring_alertmanager_routes": [{"receiver": "ops", "matchers": ["severity critical"]}]},
        context={"monitoring_alertmanager_receivers": [WEBHOOK]},
        shows=["'severity critical'"],
    ),
    Case(
        "monitoring matcher unbalanced quote",
        {"monitoring_alertmanager_routes": [{"receiver": "ops", "matchers": ['severity="critical']}]},
        context={"monitoring_alertmanager_receivers": [WEBHOOK]},
        shows=["'severity=\"critical'"],
    ),
    Case(
        "monitoring matchers one string",
        {"monitoring_alertmanager_routes": [{"receiver": "ops", "matchers": 'severity="critical"'}]},
        context={"monitoring_alertmanager_receivers": [WEBHOOK]},
        shows=["matchers is one string"],
    ),
    Case(
        "monitoring route to an unknown receiver",
        {"monitoring_alertmanager_routes": [{"receiver": "nobody", "matchers": ['severity="critical"']}]},
        shows=["unknown receiver 'nobody'"],
        mentions=("monitoring_alertmanager_receivers",),
    ),
    Case(
        "monitoring_alertmanager_default_receiver unknown",
        {"monitoring_alertmanager_default_receiver": "pager-duty"},
        mentions=("monitoring_alertmanager_receivers",),
    ),
    # backup
    Case(
        "backup_required_components not backed up",
        {"backup_required_components": ["prometheus"]},
        context={"backup_components": ["k3s_datastore", "k3s_token"]},
        shows=["prometheus"],
    ),
    # The allowed components are listed, and one of them is spelt like the k3s role's k3s_config.
    Case("backup_components unknown", {"backup_components": ["etcd"]}, shows=["etcd"], mentions=("k3s_config",)),
    Case("backup_keep_daily negative", {"backup_keep_daily": -1}),
    Case("backup_keep_weekly negative", {"backup_keep_weekly": -2}),
    Case("backup keep nothing", {"backup_keep_daily": 0, "backup_keep_weekly": 0}, shows=[]),
    Case("backup_age_recipients not a key", {"backup_age_recipients": ["age1short"]}, shows=["age1short"]),
    Case(
        "backup volumes without backup_volumes",
        {"backup_components": [*BACKUP_COMPONENTS, "volumes"]},
        shows=["'volumes'"],
        mentions=("backup_volumes",),
    ),
    Case(
        "backup_volumes relative",
        {"backup_volumes": ["data/volume"]},
        context={"backup_components": [*BACKUP_COMPONENTS, "volumes"]},
        shows=["data/volume"],
    ),
    Case("backup_k3s_datastore relative", {"backup_k3s_datastore": "state.db"}),
    Case("backup_k3s_token relative", {"backup_k3s_token": "server/token"}),
    Case("backup_k3s_config relative", {"backup_k3s_config": "config.yaml"}),
    Case("backup_prometheus_data_dir relative", {"backup_prometheus_data_dir": "pvc-*/prometheus-db"}),
    Case("backup_grafana_db relative", {"backup_grafana_db": "grafana.db"}),
    Case("backup_prometheus_url no scheme", {"backup_prometheus_url": "127.0.0.1:9090"}),
    Case("backup_schedule prose", {"backup_schedule": "every day at 3"}),
    Case("backup_schedule hour 25", {"backup_schedule": "*-*-* 25:00:00"}),
    Case("backup_randomized_delay prose", {"backup_randomized_delay": "15 minutes please"}),
    Case("backup_randomized_delay negative", {"backup_randomized_delay": "-5min"}),
    Case("backup_zstd_level zero", {"backup_zstd_level": 0}),
    Case("backup_zstd_level 22", {"backup_zstd_level": 22}),
    Case("backup_lib_dir relative", {"backup_lib_dir": "lib/odin"}),
    Case("backup_restore_scratch_dir relative", {"backup_restore_scratch_dir": "restore-drill"}),
    Case("backup_restore_age_identity relative", {"backup_restore_age_identity": "age.key"}),
    Case("backup_restore_scale_timeout zero", {"backup_restore_scale_timeout": 0}),
    Case("backup_restore_mode unknown", {"backup_restore_mode": "live"}),
    # verify
    Case("verify_gates unknown", {"verify_gates": ["gate5"]}, shows=["gate5"]),
    Case("verify_gates empty", {"verify_gates": []}, shows=[]),
    Case("verify_dashboard_max_seconds zero", {"verify_dashboard_max_seconds": 0}),
    Case("verify_ingestion_max_seconds negative", {"verify_ingestion_max_seconds": -1}),
    Case("verify_min_data_age_hours negative", {"verify_min_data_age_hours": -1}),
    Case("verify_notification_timeout zero", {"verify_notification_timeout": 0}),
    Case("verify_prometheus_url no scheme", {"verify_prometheus_url": "localhost:9090"}),
    Case("verify_loki_url ftp", {"verify_loki_url": "ftp://127.0.0.1:3100"}),
    Case("verify_report_dir relative", {"verify_report_dir": "reports"}),
    Case("verify_grafana_password_file relative", {"verify_grafana_password_file": "grafana-admin-password"}),
    Case("verify_storage_class not a DNS name", {"verify_storage_class": "Local Path"}),
    Case(
        "verify_system_namespaces not a DNS label", {"verify_system_namespaces": ["Kube_System"]}, shows=["Kube_System"]
    ),
    Case("verify_gpu_expected_count negative", {"verify_gpu_expected_count": -1}),
    Case("verify_gpu_min_driver_version not a version", {"verify_gpu_min_driver_version": "latest"}),
    Case("verify_fail_on_failure not a bool", {"verify_fail_on_failure": "maybe"}),
]
GOOD_HOSTS = {"good": False, "good_gpu": True}


def _all_setting_names():
    names = set()
    for specs_file in (REPO / "roles").glob("*/meta/argument_specs.yml"):
        for entry in yaml.safe_load(specs_file.read_text())["argument_specs"].values():
            names.update((entry or {}).get("options") or {})
    return names


SETTINGS = _all_setting_names()


def _dirs(tmp, host):
    return {"odin_state_dir": str(tmp / host / "state"), "odin_backup_dir": str(tmp / host / "backups")}


def _host_vars(tmp, host, gpu, settings):
    hostvars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        **_dirs(tmp, host),
        "odin_gpu_resolved": gpu,
    }
    if gpu:
        hostvars["odin_secure_boot"] = "disabled"
    hostvars.update(settings)
    return hostvars


def _messages(payload, host):
    """Every message of the tasks (and loop items) that failed on host."""
    found = []
    for play in payload["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get(host)
            if not result or not result.get("failed"):
                continue
            found.append(str(result.get("msg", "")))
            found += [str(item.get("msg", "")) for item in result.get("results", []) if item.get("failed")]
    return "\n".join(found)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """Run playbooks/validate.yml once over every case and good host."""
    tmp = tmp_path_factory.mktemp("bad_settings")
    hosts = {case.host: _host_vars(tmp, case.host, case.gpu, {**case.context, **case.settings}) for case in CASES}
    hosts.update({host: _host_vars(tmp, host, gpu, {}) for host, gpu in GOOD_HOSTS.items()})
    inventory = tmp / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {"odin": {"children": {"k3s_server": {"hosts": hosts}}}}}}))
    # Every host is this machine: its facts are gathered once, for the first good host, and
    # the others read them from the fact cache (gathering "smart" skips a host whose facts
    # are cached).
    facts = tmp / "facts"
    env = {
        "ANSIBLE_CACHE_PLUGIN": "jsonfile",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(facts),
        "ANSIBLE_GATHERING": "smart",
    }
    gather = tmp / "gather.yml"
    gather.write_text(json.dumps([{"name": "Gather this machine's facts", "hosts": "good", "tasks": []}]))
    result = run(["ansible-playbook", "-i", str(inventory), str(gather)], timeout=120, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    (cached,) = facts.iterdir()
    for host in hosts:
        if host != "good":
            (facts / cached.name.replace("good", host)).write_bytes(cached.read_bytes())
    # The cases' relative paths resolve against the checkout, the working directory.
    roots = (*HOST_ROOTS, REPO, tmp)
    exclude = (*HOST_EXCLUDE, facts, *(REPO / name for name in (".git", ".venv")))
    skip = ("__pycache__", ".pytest_cache", ".ruff_cache")
    before = snapshot(roots, exclude, skip)
    started = time.monotonic()
    # preflight runs only where odin_gpu_resolved is unset, which every host here sets;
    # skipping its tags spares skipping each of its tasks on each host.
    result = run(
        ["ansible-playbook", "-i", str(inventory), "playbooks/validate.yml", "-f", "8", "-e", "ansible_become=false"]
        + ["--skip-tags", "preflight"],
        timeout=900,
        **env,
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
    )
    seconds = time.monotonic() - started
    altered = changes(before, snapshot(roots, exclude, skip))
    assert "{" in result.stdout, result.stdout + result.stderr
    # The json callback's document comes first; callbacks enabled in ansible.cfg may print after it.
    payload, _end = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index("{") :])
    return {"payload": payload, "tmp": tmp, "result": result, "seconds": seconds, "altered": altered}


def test_table_covers_every_role():
    assert len(CASES) >= 80
    assert len({case.host for case in CASES}) == len(CASES), "two cases map to one host name"
    covered = {name for case in CASES for name in {**case.context, **case.settings}}
    for role in ROLES:
        assert any(name.startswith(role + "_") for name in covered), f"no case sets a {role}_* variable"
    assert any(name.startswith("odin_") for name in covered)
    unknown = sorted(covered - SETTINGS)
    assert not unknown, f"cases set variables no role declares: {unknown}"


@pytest.mark.parametrize("host", sorted(GOOD_HOSTS))
def test_good_host_passes(table, host):
    stats = table["payload"]["stats"][host]
    assert stats["failures"] == 0 and stats["unreachable"] == 0, _messages(table["payload"], host)
    assert stats["changed"] == 0
    for path in _dirs(table["tmp"], host).values():
        assert not Path(path).exists(), path


def test_run_changes_nothing(table):
    stats = table["payload"]["stats"]
    assert set(stats) == {case.host for case in CASES} | set(GOOD_HOSTS)
    assert sum(host["changed"] for host in stats.values()) == 0
    assert not table["altered"], "the run changed files on the host:\n" + "\n".join(table["altered"][:50])
    print(f"validate.yml over {len(stats)} hosts took {table['seconds']:.1f} s")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_setting_is_refused(table, case):
    payload = table["payload"]
    stats = payload["stats"][case.host]
    message = _messages(payload, case.host)
    assert stats["failures"] >= 1, f"{case.id}: not refused"
    assert stats["unreachable"] == 0
    assert stats["changed"] == 0
    for name in case.settings:
        assert name in message, f"{case.id}: {name} not named in: {message}"
    for text in case.expected_text():
        assert text in message, f"{case.id}: {text!r} not in: {message}"
    for text in case.hidden:
        assert text not in table["result"].stdout, f"{case.id}: the secret was printed"
    dirs = _dirs(table["tmp"], case.host)
    dirs.update({name: case.settings[name] for name in dirs if name in case.settings})
    for path in dirs.values():
        if path:
            assert not (REPO / path).exists(), f"{case.id}: {path} was created"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_message_holds_only_the_failed_rule(table, case):
    message = _messages(table["payload"], case.host)
    allowed = set(case.settings) | set(case.context) | set(case.mentions)
    others = sorted(
        name
        for name in SETTINGS - allowed
        if re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message)
    )
    assert not others, f"{case.id}: the message also names {others}: {message}"

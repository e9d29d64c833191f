"""playbooks/verify.yml on this machine, which has no cluster and no monitoring stack.

Every check that needs them must fail with a message naming what is missing, the GPU
checks must be skipped with the reason, gate tags must select gates, and the report must
be written before the play fails.
"""

import json
import os
import sys

import pytest


@pytest.fixture
def run_verify(ansible, tmp_path):
    def run(*extra):
        return ansible(
            [
                "ansible-playbook",
                "-i",
                "inventories/laptop",
                "playbooks/verify.yml",
                "-e",
                "ansible_python_interpreter=" + sys.executable,
                # preflight runs only when odin_gpu_resolved is unset; this machine has no systemd.
                "-e",
                "odin_gpu_resolved=false",
                "-e",
                "odin_state_dir=%s" % tmp_path,
                "-e",
                "odin_kubeconfig=%s" % (tmp_path / "k3s.yaml"),
                # Ports where nothing listens, so no service on this machine answers.
                "-e",
                "verify_prometheus_url=http://127.0.0.1:9 verify_alertmanager_url=http://127.0.0.1:9",
                "-e",
                "verify_grafana_url=http://127.0.0.1:9 verify_loki_url=http://127.0.0.1:9",
                *extra,
            ],
            timeout=300,
        )

    return run


def test_report_written_and_play_fails(run_verify, tmp_path):
    res = run_verify()
    assert res.returncode == 2, res.stdout + res.stderr
    assert "check(s) failed on laptop" in res.stdout
    assert "SKIPPED GPU checks: odin_gpu_resolved is false" in res.stdout
    assert "password in %s/secrets/grafana-admin-password" % tmp_path in res.stdout
    report = json.loads((tmp_path / "reports" / "verify.json").read_text())
    assert [g["id"] for g in report["gates"]] == ["gate1", "gate2", "gate3", "gate4"]
    checks = {c["id"]: c for g in report["gates"] for c in g["checks"]}
    assert (
        checks["node_ready"]["detail"]
        == "The kubeconfig %s/k3s.yaml does not exist: run the k3s layer first." % tmp_path
    )
    assert (
        checks["gpu_host"]["status"] == checks["gpu_allocatable"]["status"] == checks["gpu_metrics"]["status"] == "skip"
    )
    assert "Connection refused" in checks["prometheus_targets"]["detail"]
    assert report["summary"]["pass"] == 0
    assert (tmp_path / "reports" / "verify.md").read_text().count("| Check | Status |") == 4
    assert oct(os.stat(tmp_path / "reports").st_mode & 0o777) == "0o750"


def test_gate_tag_selects_one_gate_and_check_mode_writes_nothing(run_verify, tmp_path):
    res = run_verify("--tags", "gate4", "--check", "-e", "verify_fail_on_failure=false")
    assert res.returncode == 0, res.stdout + res.stderr
    assert '"Gates: gate4 FAIL"' in res.stdout
    assert "gate1" not in res.stdout.split("Gates:")[1].split("\n")[0]
    assert "Report: not written (check mode)" in res.stdout
    assert not (tmp_path / "reports" / "verify.json").exists()


def test_bad_gate_name_fails_before_measuring(run_verify, tmp_path):
    res = run_verify("-e", '{"verify_gates": ["gate5"]}')
    assert res.returncode == 2
    assert "verify_gates" in res.stdout and "gate5" in res.stdout
    assert not (tmp_path / "reports").exists()

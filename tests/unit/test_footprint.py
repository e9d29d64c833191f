"""benchmarks/footprint.py: quantities, sums and the budget check, on values on disk."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "footprint"
_spec = importlib.util.spec_from_file_location("footprint", REPO / "benchmarks" / "footprint.py")
footprint = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(footprint)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", 0.1),
        ("1", 1.0),
        ("1.5", 1.5),
        ("512Mi", 512 * 1024**2),
        ("2Gi", 2 * 1024**3),
        ("64Ki", 64 * 1024),
        ("1G", 1e9),
        ("250M", 250e6),
        (2, 2.0),
    ],
)
def test_quantity(text, value):
    assert footprint.quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "1.5 Gi", "100mi", "lots", "-1", "1e3"])
def test_quantity_rejects(text):
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        footprint.quantity(text)


def test_totals_multiply_by_container_count_and_list_unbounded():
    rows = [
        ("a", {"requests": {"cpu": "100m", "memory": "100Mi"}, "limits": {"memory": "200Mi"}}, 1),
        ("b", {"requests": {"cpu": "10m", "memory": "10Mi"}}, 2),
        ("c", {}, 1),
    ]
    t = footprint.totals(rows)
    assert t["requests"]["cpu"] == pytest.approx(0.12)
    assert t["requests"]["memory"] == 120 * 1024**2
    assert t["limits"]["memory"] == 200 * 1024**2
    assert t["unbounded"] == ["b", "c"]


@pytest.mark.parametrize(
    ("fixture", "gpu", "rc"),
    [
        ("within-budget", True, 0),
        ("within-budget", False, 0),
        ("over-budget", True, 1),
        ("missing-limit", True, 1),
    ],
)
def test_check_against_budget(fixture, gpu, rc, capsys):
    args = [str(FIXTURES / fixture), "--check"] + ([] if gpu else ["--no-gpu"])
    assert footprint.main(args) == rc
    out = capsys.readouterr().out
    assert "chart defaults" in out
    if not gpu:
        assert "dcgm-exporter" not in out.split("\n\n")[0]


def test_chart_defaults_are_recorded_with_sources():
    names = [n for n, _ in footprint.CHART_DEFAULTS["components"]]
    assert "loki chunks-cache (memcached)" in names
    assert all(footprint.CHART_DEFAULTS["source"].values())
    rendered_names = {c[0] for c in footprint.COMPONENTS}
    assert rendered_names <= set(names)

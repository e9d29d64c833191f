#!/usr/bin/env python3
"""Backup throughput against `tar --zstd`, and Prometheus snapshot time against TSDB size.

    .venv/bin/python benchmarks/backup.py [--size-mb 256] [--runs 3] [--series 500 --samples 2000]

Part 1 builds a data directory (half compressible text, half random bytes), then times in
the same run, alternately, `tar --zstd` of that directory and a stack_backup of it as a
volume (tar | zstd with sha256 while writing, manifest, fsync, rename). It prints the
median throughput of each and their ratio (backup / tar; 1.0 means as fast as tar).

Part 2 builds a TSDB with `promtool tsdb create-blocks-from openmetrics`, starts Debian's
prometheus on it on 127.0.0.1 with the admin API, and times the snapshot API call and the
archive of the snapshot, relative to the TSDB's size on disk.

Numbers depend on the machine and on what else runs on it; this is not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.odin.stack.plugins.module_utils import _backup as backup  # noqa: E402

MIB = 1024 * 1024


def make_data(root, size_mb):
    root.mkdir(parents=True)
    words = b"kube prometheus grafana loki alloy node gpu nvidia k3s sqlite backup restore snapshot "
    text = (words * (MIB // len(words) + 1))[:MIB]
    half = size_mb // 2
    for i in range(half):
        # Vary the text a little so zstd does real work rather than matching one block.
        (root / ("log-%04d.txt" % i)).write_bytes(text.replace(b"gpu", b"g%02d" % (i % 100)))
    for i in range(size_mb - half):
        (root / ("blob-%04d.bin" % i)).write_bytes(os.urandom(MIB))
    return sum(f.stat().st_size for f in root.iterdir())


def drop_output(path):
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def time_tar(tar, data, out):
    drop_output(out)
    started = time.perf_counter()
    subprocess.run([tar, "--zstd", "-cf", str(out), "-C", str(data), "."], check=True)
    # The backup fsyncs what it writes; so must the baseline, or it measures the page cache.
    backup.fsync_path(str(out))
    return time.perf_counter() - started


def time_backup(tools, data, backup_dir):
    drop_output(backup_dir)
    config = {"backup_dir": str(backup_dir), "components": ["volumes"], "volumes": [str(data)]}
    started = time.perf_counter()
    backup.take_backup(config, tools)
    return time.perf_counter() - started


def throughput(args, work, tools):
    data = work / "data"
    size = make_data(data, args.size_mb)
    os.sync()
    tar = shutil.which("tar")
    tar_times, backup_times = [], []
    for _ in range(args.runs):
        tar_times.append(time_tar(tar, data, work / "baseline.tar.zst"))
        backup_times.append(time_backup(tools, data, work / "backups"))
    tar_s, backup_s = statistics.median(tar_times), statistics.median(backup_times)
    print("data: %.0f MiB (half text, half random), %d runs each, medians" % (size / MIB, args.runs))
    print("tar --zstd        %7.2f s  %8.1f MiB/s" % (tar_s, size / MIB / tar_s))
    print("stack_backup      %7.2f s  %8.1f MiB/s" % (backup_s, size / MIB / backup_s))
    print("ratio backup/tar  %7.2fx  (target >= 0.90x)" % (tar_s / backup_s))
    shutil.rmtree(data)
    return tar_s / backup_s


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_tsdb(work, series, samples):
    """An OpenMetrics file of `series` gauges with `samples` points 15 s apart, turned into blocks."""
    source = work / "metrics.om"
    end = int(time.time()) - 3 * 3600  # older than the head block, so it lands in persisted blocks
    start = end - samples * 15
    with open(source, "w") as out:
        out.write("# TYPE bench_value gauge\n")
        for step in range(samples):
            ts = start + step * 15
            for s in range(series):
                out.write('bench_value{series="%d"} %d %d\n' % (s, (s * 7 + step) % 1000, ts))
        out.write("# EOF\n")
    tsdb = work / "tsdb"
    subprocess.run(
        [shutil.which("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
        check=True,
        capture_output=True,
    )
    source.unlink()
    return tsdb


def dir_size(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def snapshot(args, work, tools):
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        print("prometheus snapshot: skipped, Debian's prometheus package is not installed")
        return
    tsdb = make_tsdb(work, args.series, args.samples)
    size = dir_size(tsdb)
    port = free_port()
    config = work / "prometheus.yml"
    config.write_text("global: {scrape_interval: 15s}\nscrape_configs: []\n")
    url = "http://127.0.0.1:%d" % port
    with open(work / "prometheus.log", "w") as log:
        proc = subprocess.Popen(
            [
                shutil.which("prometheus"),
                "--config.file=%s" % config,
                "--storage.tsdb.path=%s" % tsdb,
                "--web.listen-address=127.0.0.1:%d" % port,
                "--web.enable-admin-api",
                "--storage.tsdb.retention.time=10y",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(url + "/-/ready", timeout=2).read()  # noqa: S310 - local server
                    break
                except OSError:
                    time.sleep(0.5)
            times, archive_times = [], []
            for _ in range(args.runs):
                started = time.perf_counter()
                snap = backup.prometheus_snapshot(url, str(tsdb))
                times.append(time.perf_counter() - started)
                started = time.perf_counter()
                dest = work / "snap.tar.zst"
                drop_output(dest)
                backup.archive_dir(snap, str(dest), tools)
                archive_times.append(time.perf_counter() - started)
                shutil.rmtree(snap)
        finally:
            proc.terminate()
            proc.wait()
    snap_s, arch_s = statistics.median(times), statistics.median(archive_times)
    gib = size / (1024 * MIB)
    print(
        "prometheus TSDB: %.1f MiB on disk (%d series x %d samples), %d runs, medians"
        % (size / MIB, args.series, args.samples, args.runs)
    )
    print("snapshot API      %7.3f s  (%.2f s per GiB of TSDB)" % (snap_s, snap_s / gib))
    print("archive snapshot  %7.3f s  (%.1f MiB/s)" % (arch_s, size / MIB / arch_s))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--workdir", help="where to build the data (default: a temporary directory under /var/tmp)")
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = parser.parse_args()
    tools = backup.Tools(tar=shutil.which("tar"), zstd=shutil.which("zstd"))
    # /var/tmp rather than /tmp: /tmp is often a tmpfs, which would measure memory, not disk.
    work = Path(tempfile.mkdtemp(prefix="odin-bench-", dir=args.workdir or "/var/tmp"))  # noqa: S108
    try:
        ratio = throughput(args, work, tools)
        snapshot(args, work, tools)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"ratio_backup_over_tar": round(ratio, 3)}))


if __name__ == "__main__":
    main()

"""Monitoring artefacts against real tools: the alert rules pass `promtool check rules`, every
metric the Grafana dashboard queries is one PCC really exports (a live /metrics scrape), and a
real Prometheus server scraping PCC sees a site go down and a reservation run then stop."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from pcc.controller.metrics import serve_metrics
from pcc.controller.model import State
from pcc.controller.service import Actor, SiteRequest
from pcc.dev import demo
from pcc.dev.controller_env import Controller
from pcc.dev.ssh_sites import SshSite

pytestmark = [pytest.mark.condor, pytest.mark.libvirt, pytest.mark.slow]
MONITORING = resources.files("pcc.monitoring")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def metrics_url() -> str:
    port = free_port()
    serve_metrics(port)
    return f"http://127.0.0.1:{port}/metrics"


def test_alert_rules_pass_promtool() -> None:
    with resources.as_file(MONITORING.joinpath("alerts.yml")) as path:
        proc = subprocess.run(
            ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
        )
    assert proc.returncode == 0 and "SUCCESS: 5 rules found" in proc.stdout, proc.stdout + proc.stderr


def dashboard_metric_names() -> set[str]:
    dash = json.loads(MONITORING.joinpath("grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(dash["panels"]) >= 10 and exprs
    return {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"\bpcc_[a-z0-9_]+", e)}


def test_every_dashboard_query_uses_metrics_pcc_exports(metrics_url: str) -> None:
    scrape = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    exported = set(re.findall(r"^# TYPE (pcc_[a-z0-9_]+) ", scrape, re.M))
    exported |= {name.removesuffix("_total") for name in exported}
    missing = dashboard_metric_names() - exported
    assert not missing, f"the dashboard queries metrics PCC does not export: {sorted(missing)}"


@pytest.fixture(scope="module")
def prometheus(metrics_url: str) -> Iterator[str]:
    """A real Prometheus server on loopback, scraping PCC every second."""
    root = Path(tempfile.mkdtemp(prefix="prometheus-"))
    target = urllib.parse.urlparse(metrics_url).netloc
    (root / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
        f"  - job_name: pcc\n    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(root / "log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=2)
            break
        except OSError:
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    subprocess.run(["rm", "-rf", str(root)], check=False)


def promql(url: str, query: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(
        f"{url}/api/v1/query?{urllib.parse.urlencode({'query': query})}", timeout=10
    ) as r:
        return list(json.load(r)["data"]["result"])


def wait_promql(url: str, query: str, want: float, timeout: float, ctl: Controller) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        ctl.reconciler.reconcile_once()
        ctl.probe()
        ctl.gauges()
        last = promql(url, query)
        if last and float(last[0]["value"][1]) == want:
            return
        time.sleep(1)
    raise AssertionError(f"Prometheus never saw {query} == {want}; last {last}")


def test_prometheus_sees_a_site_go_down_and_an_allocation_run_then_stop(
    prometheus: str, controller: Controller, ssh_sites: dict[str, Any]
) -> None:
    sites: dict[str, SshSite] = {s.name: s for s in ssh_sites["sites"]}
    b = sites["b"]
    wait_promql(prometheus, 'pcc_site_up{site="b"}', 1, 60, controller)
    subprocess.run(["kill", str(b.sshd_pid)], check=True)  # site b's SSH goes away
    try:
        wait_promql(prometheus, 'pcc_site_up{site="b"}', 0, 60, controller)
    finally:
        b.sshd_pid, _ = demo.start_sshd(
            b.site.root / "sshd",
            b.address,
            b.site.account,
            Path(ssh_sites["key"]).with_suffix(".pub").read_text(),
            "/usr/bin:/bin",
        )
    now = time.time()
    res = controller.service.reserve(
        Actor("alice"),
        "tiny",
        [SiteRequest("a", 1, 0.5)],
        int(now + 2),
        int(now + 25),
        ssh_key=controller.user_public_key(),
    )
    before = promql(prometheus, 'pcc_allocations{state="stopped"}')
    stopped_before = float(before[0]["value"][1]) if before else 0.0
    wait_promql(prometheus, 'pcc_allocations{state="running"}', 1, 120, controller)
    controller.wait_state(res.id, "a", State.STOPPED, timeout=120)
    wait_promql(prometheus, 'pcc_allocations{state="stopped"}', stopped_before + 1, 60, controller)
    assert float(promql(prometheus, 'pcc_allocations{state="running"}')[0]["value"][1]) == 0

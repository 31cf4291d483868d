"""The live summary and the banner (pure renderers)."""

from __future__ import annotations

import io
from pathlib import Path

from gossamer.up import report, summary
from gossamer.up.commands import Settings
from gossamer.up.layout import FreePorts, Subnet, isolated_layout, loopback_layout
from gossamer.up.session import Printer, process_started_at
from gossamer.up.statedir import StateDir


def test_render_shows_connected_sidecars_and_per_service_figures():
    snap = summary.Snapshot(
        sidecars=[{"identity": "spiffe://gossamer.local/ns/default/sa/web"}, {"identity": None}],
        services=[
            {
                "name": "web",
                "rps": 5.04,
                "success_rate": 1.0,
                "latency_p99_ms": 12.3,
                "meshed": 1,
                "instances": 1,
            },
            {
                "name": "inventory",
                "rps": 5.2,
                "success_rate": 0.9812,
                "latency_p99_ms": None,
                "meshed": 1,
                "instances": 1,
            },
        ],
        running=10,
        expected_processes=11,
        expected_sidecars=5,
    )
    lines = summary.render(snap, now=0)
    assert "sidecars connected 1/5" in lines[0] and "processes running 10/11" in lines[0]
    web = next(line for line in lines if line.strip().startswith("web"))
    assert "5.0" in web and "100.0%" in web and "12.3" in web
    inventory = next(line for line in lines if line.strip().startswith("inventory"))
    assert "98.1%" in inventory and " - " in inventory
    catalog = next(line for line in lines if line.strip().startswith("catalog"))
    assert catalog.split()[1:4] == ["-", "-", "-"]  # no traffic seen yet


def test_render_reports_an_unreachable_api():
    lines = summary.render(summary.Snapshot(error="control plane API: refused"), now=0)
    assert lines[1] == "  (control plane API: refused)"


def test_banner_names_dashboard_curl_and_logs(tmp_path: Path):
    ports = FreePorts()
    layout = loopback_layout(ports)
    ports.release()
    state = StateDir(tmp_path / "up")
    lines = report.banner(layout, state, Settings(), token="tok", seconds=4.25, processes=11)
    text = "\n".join(lines)
    assert "up in 4.2 s: 11 processes" in text or "up in 4.3 s: 11 processes" in text
    assert f"http://127.0.0.1:{layout.control.api}/#token=tok" in text
    assert f"curl -x http://127.0.0.1:{layout.entry.sidecar.outbound} http://web:8080/" in text
    assert str(state.logs) in text
    status = report.status(layout, state, token="tok", seconds=4.25, pids={"web": 1}, bridge=None)
    assert status["ready"] and status["control"]["api"] == layout.control.api
    assert status["instances"][0]["name"] == "web"


def test_isolated_banner_runs_curl_inside_the_entry_namespace(tmp_path: Path):
    layout = isolated_layout(Subnet("10.213.3"), "5")
    lines = report.banner(
        layout, StateDir(tmp_path), Settings(), token="t", seconds=1, processes=11
    )
    text = "\n".join(lines)
    assert "sudo ip netns exec gup-5-loadgen curl -s http://web:8080/" in text
    assert "http://10.213.3.2:15014/#token=t" in text and "10.213.3.0/24" in text


def test_printer_redraws_the_summary_in_place_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    printer = Printer(out)
    printer.block(["a", "b"])
    printer.block(["c", "d"])
    assert out.getvalue() == "a\nb\n\x1b[2F\x1b[Jc\nd\n"
    printer.say("event")
    printer.block(["e"])
    assert out.getvalue().endswith("event\ne\n")
    plain = io.StringIO()
    Printer(plain).block(["x"])
    assert plain.getvalue() == "x\n"


def test_process_start_is_in_the_past():
    """A fresh process finds its own start a moment before it asks (the test process
    itself may be older than any fixed bound: a slow suite ran past ten minutes)."""
    import subprocess
    import sys
    import time

    started = process_started_at()
    assert started <= time.monotonic()
    code = (
        "import time; from gossamer.up.session import process_started_at; "
        "print(time.monotonic() - process_started_at())"
    )
    before = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    age = float(out.stdout)
    assert 0 <= age <= time.monotonic() - before + 0.02  # (clock ticks: 10 ms)

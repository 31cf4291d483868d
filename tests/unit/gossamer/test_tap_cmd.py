"""`gossamer tap`'s printing (gossamer/cli/tap_cmd.py): JSON lines with records only,
an aligned table, the summary with drops, one-line refusals with hints."""

from __future__ import annotations

import json

import pytest

from gossamer.cli.tap_cmd import Printer, _refused, table_header, table_row
from gossamer.errors import AuthorizationDenied

RECORD = {
    "ts": 1796688519.5, "direction": "outbound",
    "source": "spiffe://gossamer.local/ns/default/sa/web",
    "destination": "spiffe://gossamer.local/ns/default/sa/catalog", "method": "GET",
    "authority": "catalog:8080", "path": "/items", "status": 200, "latency_ms": 3.0,
    "bytes": 281, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "sampled": True,
}  # fmt: skip


def test_json_prints_records_only_and_counts_drops(capsys: pytest.CaptureFixture[str]) -> None:
    printer = Printer("json")
    printer({"type": "status", "sidecars": 2, "dropped": 0})
    printer(RECORD)
    printer({"type": "status", "sidecars": 2, "dropped": 7})
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in out] == [RECORD]
    assert printer.summary() == "1 records, 7 dropped over the sidecars' cap"


def test_waiting_is_said_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    Printer("json")({"type": "status", "sidecars": 0, "dropped": 0})
    captured = capsys.readouterr()
    assert captured.out == "" and "no sidecar of this service is connected" in captured.err


def test_table_columns_line_up() -> None:
    header, row = table_header(), table_row(RECORD)
    assert header.split()[:4] == ["TIME", "DIR", "SOURCE", "DESTINATION"]
    for column in ("DIR", "SOURCE", "DESTINATION", "METHOD", "STATUS"):
        start = header.index(column)
        assert row[start - 1] == " " and row[start] != " ", (column, header, row)
    assert " out " in row and " web " in row and " catalog " in row and "(sampled)" in row
    unknown = table_row({**RECORD, "bytes": None, "trace_id": None, "destination": None})
    assert unknown.rstrip().endswith("-")


def test_refusals_are_one_line_with_hints() -> None:
    denied = _refused(403, '{"error": "role viewer may not do this (needs operator)"}')
    assert isinstance(denied, AuthorizationDenied) and "needs operator" in denied.message
    assert denied.hint is not None and "operator" in denied.hint
    missing = _refused(404, '{"error": "service \'x\' is not in the registry"}')
    assert "not in the registry" in missing.message
    assert "HTTP 502" in _refused(502, "<html>bad gateway</html>").message

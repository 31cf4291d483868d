"""Engine and Compose version checks: parsing, findings per feature, feature detection."""

from __future__ import annotations

import pytest

from gossamer.compose import engine_check as ec
from gossamer.compose.engine_check import Finding, Version, Versions, parse_version
from gossamer.compose.inject import inject_text
from gossamer.compose.plan import InjectOptions
from tests.helpers.compose import SAMPLES, plain


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("26.1.5+dfsg1", Version(26, 1, 5)),
        ("20.10.24+dfsg1", Version(20, 10, 24)),
        ("v2.26.1", Version(2, 26, 1)),
        ("2.26.1-desktop.1", Version(2, 26, 1)),
        ("2.26.1-4", Version(2, 26, 1)),  # Debian's revision
        ("25.0.0-rc.1", Version(25, 0, 0)),
        ("1.44", Version(1, 44, 0)),
        ("28", Version(28, 0, 0)),
        ("  v2.24.1\n", Version(2, 24, 1)),
    ],
)
def test_parse_version(text: str, expected: Version):
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", ["", "dev", "version 2", "-1.2"])
def test_parse_version_refuses_what_is_not_a_version(text: str):
    with pytest.raises(ValueError, match="not a version"):
        parse_version(text)


def test_versions_compare_numerically():
    assert parse_version("2.9.0") < parse_version("2.24.0") < parse_version("v2.26.1")
    assert parse_version("1.41") < ec.MIN_API <= parse_version("1.45")
    assert str(parse_version("2.26.1-4")) == "2.26.1"


def versions(engine: str | None, api: str | None, compose: str | None) -> Versions:
    return Versions(
        engine=parse_version(engine) if engine else None,
        api=parse_version(api) if api else None,
        compose=parse_version(compose) if compose else None,
        engine_text=engine or "",
        compose_text=compose or "",
    )


def by_feature(findings: list[Finding]) -> dict[str, Finding]:
    return {f.feature: f for f in findings}


def test_engine_26_with_compose_2_26_runs_everything_inject_writes():
    findings = ec.check(versions("26.1.5+dfsg1", "1.45", "2.26.1-4"))
    assert [f.feature for f in findings] == ["Docker Engine", "Docker Compose", *ec.INJECT_FEATURES]
    assert {f.severity for f in findings} == {"ok"}
    assert ec.usable(findings)
    assert by_feature(findings)["Docker Engine"].what == "26.1.5+dfsg1 (API 1.45)"


def test_debian_12_engine_refuses_start_interval_and_says_how_to_upgrade():
    findings = by_feature(ec.check(versions("20.10.24+dfsg1", "1.41", "2.26.1")))
    start = findings[ec.START_INTERVAL]
    assert start.severity == "error"
    assert "require Docker Engine v25 or later" in start.what  # Compose's own words
    assert "API 1.41" in start.why and "20.10.24+dfsg1" in start.why
    assert "Docker Engine 25 or later" in start.fix and "Debian 12" in start.fix
    # the rest only needs Compose, which is recent enough
    assert findings[ec.CONFIG_CONTENT].severity == "ok"
    engine = findings["Docker Engine"]  # it answers; it is just too old
    assert engine.severity == "warning" and "minimum, 25" in engine.what
    assert engine.fix == ec.ENGINE_FIX and findings["Docker Compose"].severity == "ok"
    assert not ec.usable(findings.values())


@pytest.mark.parametrize(
    ("engine", "api", "expected"),
    [("24.0.7", "1.43", "error"), ("25.0.0", "1.44", "ok"), ("25.0.0", None, "ok")],
)
def test_start_interval_needs_api_1_44(engine: str, api: str | None, expected: str):
    findings = by_feature(ec.check(versions(engine, api, "2.24.1")))
    assert findings[ec.START_INTERVAL].severity == expected


def test_compose_between_2_20_2_and_2_24_ignores_start_interval_a_warning():
    findings = by_feature(ec.check(versions("26.1.5", "1.45", "2.23.3")))
    start = findings[ec.START_INTERVAL]
    assert start.severity == "warning"
    assert "2.24.0" in start.why and "Compose v2 plugin, 2.24 or later" in start.fix
    assert findings[ec.CONFIG_CONTENT].severity == "ok"  # 2.23.1 and later
    assert findings["Docker Compose"].severity == "warning"
    assert findings["Docker Compose"].what == "2.23.3: older than Gossamer's minimum, 2.24"
    assert ec.usable(findings.values())


def test_old_engine_with_compose_that_ignores_start_interval_names_both_fixes():
    start = by_feature(ec.check(versions("20.10.24", "1.41", "2.23.3")))[ec.START_INTERVAL]
    assert start.severity == "warning"
    assert "Compose v2 plugin" in start.fix and "Docker Engine 25" in start.fix


def test_compose_before_2_20_2_does_not_know_start_interval():
    findings = by_feature(ec.check(versions("26.1.5", "1.45", "2.20.1")))
    assert findings[ec.START_INTERVAL].severity == "error"
    assert "2.20.2" in findings[ec.START_INTERVAL].what
    assert "Docker Engine 25" not in findings[ec.START_INTERVAL].fix  # the engine is fine


@pytest.mark.parametrize(("compose", "expected"), [("2.23.0", "error"), ("2.23.1", "ok")])
def test_inline_config_content_needs_compose_2_23_1(compose: str, expected: str):
    content = by_feature(ec.check(versions("26.1.5", "1.45", compose)))[ec.CONFIG_CONTENT]
    assert content.severity == expected
    if expected == "error":
        assert "2.23.1" in content.why and content.fix == ec.COMPOSE_FIX


def test_compose_v1_is_refused():
    findings = by_feature(ec.check(versions("26.1.5", "1.45", "1.29.2")))
    assert findings["Docker Compose"].severity == "error"
    assert "v1" in findings["Docker Compose"].what
    assert findings[ec.COMPLETED].severity == "error"


def test_missing_compose_and_missing_engine_are_errors_with_their_reason():
    missing = Versions(
        engine_problem="the Docker daemon is not running or not reachable: Cannot connect",
        engine_fix="start it",
        compose_problem="the Compose v2 plugin is not installed",
    )
    findings = by_feature(ec.check(missing))
    assert findings["Docker Engine"] == Finding(
        "error", "Docker Engine", "cannot be used", missing.engine_problem or "", "start it"
    )
    assert findings["Docker Compose"].why == "the Compose v2 plugin is not installed"
    assert findings["Docker Compose"].fix == ec.COMPOSE_FIX
    # nothing is reported as working when it could not be asked
    assert findings[ec.START_INTERVAL].severity == "warning"
    assert findings[ec.CONFIG_CONTENT].severity == "warning"
    assert ec.engine_unknown(missing) == missing.engine_problem
    assert ec.engine_unknown(versions("26.1.5", "1.45", None)) is None


def test_only_the_features_asked_for_are_checked():
    findings = ec.check(versions("20.10.24", "1.41", "2.26.1"), [ec.SERVICE_NETWORK])
    assert [f.feature for f in findings] == ["Docker Engine", "Docker Compose", ec.SERVICE_NETWORK]
    assert ec.usable(findings)  # a file without start_interval runs on 20.10
    assert [f.severity for f in findings] == ["warning", "ok", "ok"]


def test_finding_lines_put_why_and_fix_under_the_verdict():
    finding = Finding("error", "f", "it fails", "because", "do this")
    assert finding.lines() == [
        "error    f: it fails",
        "         why: because",
        "         fix: do this",
    ]
    assert Finding("ok", "f", "fine").lines() == ["ok       f: fine"]


def test_features_used_by_an_injected_file():
    original = (SAMPLES / "nginx-flask-mysql.yaml").read_text()
    assert ec.features_used(plain(original)) == frozenset()
    files = inject_text(original, InjectOptions(), source="compose.yaml").text
    assert ec.features_used(plain(files)) == {ec.START_INTERVAL, ec.COMPLETED, ec.SERVICE_NETWORK}
    volumes = inject_text(original, InjectOptions(bootstrap="volumes"), source="c.yaml").text
    assert ec.features_used(plain(volumes)) == set(ec.INJECT_FEATURES)
    explicit = inject_text(original, InjectOptions(mode="explicit"), source="c.yaml").text
    # no init containers in explicit mode, so nothing waits for a completed service
    assert ec.features_used(plain(explicit)) == {ec.START_INTERVAL, ec.SERVICE_NETWORK}


def test_features_used_ignores_odd_shapes():
    assert ec.features_used(None) == frozenset()
    assert ec.features_used(["services"]) == frozenset()
    odd = {
        "services": {
            "a": None,
            "b": {"healthcheck": "x", "depends_on": ["a"], "network_mode": "host"},
            "c": {"depends_on": {"a": None, "b": {"condition": "service_healthy"}}},
        },
        "configs": {"x": {"file": "./x"}, "y": None},
    }
    assert ec.features_used(odd) == frozenset()
    uses = {"configs": {"m": {"environment": "MESH"}}}
    assert ec.features_used(uses) == {ec.CONFIG_CONTENT}

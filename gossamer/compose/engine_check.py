"""Which Docker Engine and Compose a compose file needs, and what fails on older ones.

Pure logic: version strings in, findings out (`check`); `features_used` says which of
the version-dependent features a loaded compose file uses. Asking the local `docker`
CLI for its versions is `engine_probe`'s job; `gossamer doctor` and
`gossamer inject --check` print the findings.

Minimums, from the projects' own history:

- `healthcheck.start_interval` (every sidecar and the control plane): Engine API 1.44,
  i.e. Docker Engine 25.0 (moby/moby#40894; Engine API version history, v1.44). Compose
  accepts the key from 2.20.2 (compose-go v1.17.0, commit e9919f6; its schema had
  `additionalProperties: false` before), passes it to the engine from 2.24.0
  (docker/compose fb3868ffa, #10939) and from then on refuses it when the engine's API
  is older than 1.44: "can't set healthcheck.start_interval as feature require Docker
  Engine v25 or later" (wording fixed in 2.24.1, docker/compose #11360; 2.24.0 says
  "Docker Engine 1.25").
- top-level `configs` with inline `content` (mesh.yaml and prometheus.yml with
  `--bootstrap volumes`, the demo's compose.yaml): Compose 2.23.1 (compose-go v1.20.1,
  docker/compose cf608fa95; docs.docker.com/reference/compose-file/configs: "Introduced
  in Docker Compose version 2.23.1"); older schemas refuse the property.
- `depends_on: {condition: service_completed_successfully}` (init containers,
  `gossamer-bootstrap`): Compose 2.0.0 (docker/compose 15a21a449).
- `network_mode: service:NAME` (the sidecar shape): every Compose v2 release.

So Gossamer needs Docker Engine >= 25 (API >= 1.44) and Compose v2 >= 2.24.0; it is
tested with Engine 26.1 and Compose 2.26.1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

Severity = Literal["error", "warning", "ok"]


class Version(NamedTuple):
    """A release number; compares as a tuple (`Version(2, 24) < Version(2, 26, 1)`)."""

    major: int
    minor: int = 0
    patch: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


_VERSION = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def parse_version(text: str) -> Version:
    """`26.1.5+dfsg1`, `v2.26.1`, `2.26.1-desktop.1`, `2.26.1-4`, `1.44` -> a Version.

    What follows the numbers (a distribution's revision, a pre-release tag) is ignored.
    Raises ValueError when `text` does not start with a number."""
    found = _VERSION.match(text.strip())
    if found is None:
        raise ValueError(f"not a version: {text!r}")
    return Version(*(int(part) if part else 0 for part in found.groups()))


MIN_ENGINE = Version(25)
MIN_API = Version(1, 44)
MIN_COMPOSE = Version(2, 24, 0)

START_INTERVAL = "healthcheck.start_interval"
CONFIG_CONTENT = "configs.*.content"
COMPLETED = "depends_on service_completed_successfully"
SERVICE_NETWORK = "network_mode service:NAME"
# Everything `gossamer inject` may write (configs.content only with --bootstrap volumes).
INJECT_FEATURES = (START_INTERVAL, CONFIG_CONTENT, COMPLETED, SERVICE_NETWORK)

ENGINE_FIX = (
    "install Docker Engine 25 or later: on Debian 12, whose docker.io is 20.10, take "
    "docker-ce from Docker's apt repository (docs.docker.com/engine/install/debian) or "
    "docker.io 26.1 from Debian 13"
)
COMPOSE_FIX = (
    "install the Compose v2 plugin, 2.24 or later: docker-compose-plugin from Docker's apt "
    "repository, or Debian 13's docker-compose (2.26.1); Debian 12's docker-compose is "
    "Compose v1 (1.29), which Gossamer does not support"
)


@dataclass(frozen=True)
class Versions:
    """What the local Docker reported; a None version comes with the problem why."""

    engine: Version | None = None
    api: Version | None = None
    compose: Version | None = None
    engine_text: str = ""
    compose_text: str = ""
    engine_problem: str | None = None
    compose_problem: str | None = None
    engine_fix: str = ENGINE_FIX  # for engine_problem: e.g. start the daemon


@dataclass(frozen=True)
class Finding:
    """One verdict: `what` fails (or works) and `why`; `fix` for errors and warnings."""

    severity: Severity
    feature: str
    what: str
    why: str = ""
    fix: str = ""

    def lines(self) -> list[str]:
        """The finding as text: `error    feature: what`, then why and fix indented."""
        out = [f"{self.severity:<8} {self.feature}: {self.what}"]
        out += [
            f"         {label}: {text}"
            for label, text in (("why", self.why), ("fix", self.fix))
            if text
        ]
        return out


def usable(findings: Iterable[Finding]) -> bool:
    """True when nothing is an error (warnings only slow things down)."""
    return all(f.severity != "error" for f in findings)


def engine_unknown(v: Versions) -> str | None:
    """Why the engine could not be asked at all (no docker, daemon down), else None."""
    if v.engine is None and v.api is None:
        return v.engine_problem or "the Docker Engine did not report its version"
    return None


def _api(v: Versions) -> str:
    return f"{v.api.major}.{v.api.minor}" if v.api else "?"


def _engine_ok(v: Versions) -> bool | None:
    """Does the engine speak API 1.44? None when it could not be asked."""
    if v.api is not None:
        return v.api >= MIN_API
    if v.engine is not None:
        return v.engine >= MIN_ENGINE
    return None


def _components(v: Versions) -> list[Finding]:
    """One finding each for the Engine and Compose: there and recent enough?"""
    old = "older than Gossamer's minimum"
    why = "files written by gossamer inject use features that need it (see below)"
    unknown = engine_unknown(v)
    if unknown is not None:
        engine = Finding("error", "Docker Engine", "cannot be used", unknown, v.engine_fix)
    else:
        text = f"{v.engine_text or v.engine}" + (f" (API {_api(v)})" if v.api else "")
        engine = Finding("ok", "Docker Engine", text)
        if _engine_ok(v) is False:
            engine = Finding("warning", "Docker Engine", f"{text}: {old}, 25", why, ENGINE_FIX)
    text = v.compose_text or str(v.compose)
    if v.compose is None:
        why = v.compose_problem or "`docker compose version` reported no version"
        compose = Finding("error", "Docker Compose", "cannot be used", why, COMPOSE_FIX)
    elif v.compose.major < 2:
        why = "Gossamer needs the Compose v2 plugin; v1 is end-of-life and predates every minimum"
        compose = Finding("error", "Docker Compose", f"{text} is v1", why, COMPOSE_FIX)
    elif v.compose < MIN_COMPOSE:
        compose = Finding("warning", "Docker Compose", f"{text}: {old}, 2.24", why, COMPOSE_FIX)
    else:
        compose = Finding("ok", "Docker Compose", text)
    return [engine, compose]


def _fixes(v: Versions, compose: bool) -> str:
    """The fix for whichever of Compose and the engine is too old."""
    parts = [COMPOSE_FIX] if compose else []
    if _engine_ok(v) is False:
        parts.append(ENGINE_FIX)
    return "; and ".join(parts)


def _start_interval(v: Versions) -> Finding:
    compose, engine_ok = v.compose, _engine_ok(v)
    if compose is not None and compose < Version(2, 20, 2):
        what = "`docker compose` stops: Compose knows the key only from 2.20.2"
        why = f"Compose {compose} validates against a schema without start_interval"
        return Finding("error", START_INTERVAL, what, why, _fixes(v, compose=True))
    if engine_ok is False and (compose is None or compose >= MIN_COMPOSE):
        what = (
            "`docker compose up` stops: \"can't set healthcheck.start_interval as feature "
            'require Docker Engine v25 or later"'
        )
        why = (
            f"the engine speaks API {_api(v)} (Docker Engine {v.engine_text or v.engine or '?'}); "
            "start_interval needs API 1.44, i.e. Docker Engine 25"
        )
        return Finding("error", START_INTERVAL, what, why, ENGINE_FIX)
    if compose is not None and compose < MIN_COMPOSE:
        what = (
            "ignored: health checks run every 5s, not 1s, while a container starts (slower start)"
        )
        why = f"Compose {compose} accepts the key but passes it to the engine only from 2.24.0"
        return Finding("warning", START_INTERVAL, what, why, _fixes(v, compose=True))
    if engine_ok is None or compose is None:
        return Finding("warning", START_INTERVAL, "not checked: a version is unknown")
    return Finding("ok", START_INTERVAL, "Engine API >= 1.44 and Compose >= 2.24")


# Features only Compose implements: the first Compose release that reads them.
COMPOSE_MINIMUMS = {
    CONFIG_CONTENT: Version(2, 23, 1),
    COMPLETED: Version(2),
    SERVICE_NETWORK: Version(2),
}


def _compose_minimum(feature: str, v: Versions) -> Finding:
    minimum = COMPOSE_MINIMUMS[feature]
    if v.compose is None:
        return Finding("warning", feature, "not checked: the Compose version is unknown")
    if v.compose < minimum:
        what = "`docker compose` stops: its file schema does not allow it"
        why = f"Compose {v.compose} is older than {minimum}, the first release that reads it"
        return Finding("error", feature, what, why, COMPOSE_FIX)
    return Finding("ok", feature, f"Compose >= {minimum}")


def check(versions: Versions, features: Iterable[str] = INJECT_FEATURES) -> list[Finding]:
    """Findings for the Engine and Compose in `versions`, then for each feature used
    (in the order of INJECT_FEATURES)."""
    wanted = set(features)
    found = _components(versions)
    if START_INTERVAL in wanted:
        found.append(_start_interval(versions))
    found += [_compose_minimum(f, versions) for f in COMPOSE_MINIMUMS if f in wanted]
    return found


def features_used(data: Any) -> frozenset[str]:
    """The version-dependent features a loaded compose file (plain data) uses."""
    used: set[str] = set()
    if not isinstance(data, Mapping):
        return frozenset()
    services = data.get("services")
    for service in services.values() if isinstance(services, Mapping) else ():
        if not isinstance(service, Mapping):
            continue
        health = service.get("healthcheck")
        if isinstance(health, Mapping) and "start_interval" in health:
            used.add(START_INTERVAL)
        mode = service.get("network_mode")
        if isinstance(mode, str) and mode.startswith("service:"):
            used.add(SERVICE_NETWORK)
        depends = service.get("depends_on")
        if isinstance(depends, Mapping) and any(
            isinstance(d, Mapping) and d.get("condition") == "service_completed_successfully"
            for d in depends.values()
        ):
            used.add(COMPLETED)
    configs = data.get("configs")
    for config in configs.values() if isinstance(configs, Mapping) else ():
        if isinstance(config, Mapping) and ("content" in config or "environment" in config):
            used.add(CONFIG_CONTENT)
    return frozenset(used)

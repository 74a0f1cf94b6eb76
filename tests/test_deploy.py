"""Deployment files checked by the real tools that read them, plus the cross-file agreements that no
single tool sees (ports, topics, paths, metric names, runbook anchors).

- Prometheus config and rules: promtool (check config, check rules, test rules).
- docker-compose.yml: the Compose Specification JSON schema (as vendored by check-jsonschema),
  then the stack's own invariants.
- deploy/Dockerfile: BuildKit's parser (the `dockerfile` package) and hadolint.
- deploy/kafka/create-topics.sh: run with a stand-in kafka-topics.sh.
- The Grafana dashboard: every query parsed by promtool, every metric name from docs/contracts.md.
The live counterpart (a real Prometheus scraping a real worker) is tests/test_deploy_live.py.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PROM_DIR = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "fmlc.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASH_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "fmlc.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
OPERATIONS = ROOT / "docs" / "operations.md"
CONTRACTS = ROOT / "docs" / "contracts.md"
ALERT_RULES = DEPLOY / "alert_rules.yaml"

WORKER_SERVICES = ("worker", "worker-gpu")
INPUT_TOPIC, OUTPUT_TOPIC, DLQ_TOPIC = "fmlc.complaints", "fmlc.labels", "fmlc.dead-letter"
# The alerts the deploy issue asks for, by name: renaming one is a change to docs/operations.md too.
REQUIRED_ALERTS = {
    "FmlcWorkerDown", "FmlcNoWorkerUp", "FmlcConsumerLagGrowing", "FmlcWorkerStalled",
    "FmlcDeadLetterRateHigh", "FmlcEndToEndLatencyHigh", "FmlcLabelSurge",
    "FmlcDeliveryFailing", "FmlcPollErrors", "FmlcStageStalled", "FmlcCacheErrors", "FmlcModelReloadFailing",
    "FmlcPartitionsPausedTooLong",
}


# --- helpers shared with test_deploy_live.py ---------------------------------------------------------

def tool(name: str) -> str:
    """Path of a command-line tool. CI installs them (.ci/run), so there a missing one is a failure;
    elsewhere the test is skipped with the way to get it."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    message = f"{name} not found (Debian: apt-get install prometheus; pip: the test extra)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def contract_metrics() -> dict[str, tuple[str, set[str]]]:
    """docs/contracts.md's metric table: name -> (type, label names)."""
    text = CONTRACTS.read_text(encoding="utf-8")
    section = text.split("## Metrics", 1)[1]
    metrics: dict[str, tuple[str, set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        # fmlc_* from the worker's own metrics, process_* from the process collector on its registry
        if len(cells) >= 3 and re.fullmatch(r"(fmlc|process)_[a-z0-9_]+", cells[0]):
            # "topic, partition", "reason (bounded set)", "outcome = ok, cached, dead_letter"
            cell = re.sub(r"\([^)]*\)", "", cells[2])
            if "=" in cell:
                labels = set(re.findall(r"([a-z_]+)\s*=", cell))
            else:
                labels = {c.strip() for c in cell.split(",") if c.strip()}
            metrics[cells[0]] = (cells[1].split()[0], labels)
    assert len(metrics) >= 10, "could not read the metric table of docs/contracts.md"
    return metrics


def exposed_series_names() -> dict[str, set[str]]:
    """Every series name the contract metrics expose -> the labels allowed on it."""
    names: dict[str, set[str]] = {}
    for name, (kind, labels) in contract_metrics().items():
        scrape_labels = labels | {"instance", "job"}
        if kind == "histogram":
            names[f"{name}_bucket"] = scrape_labels | {"le"}
            names[f"{name}_sum"] = scrape_labels
            names[f"{name}_count"] = scrape_labels
        else:
            names[name] = scrape_labels
    return names


PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                   "offset", "bool", "inf", "nan", "atan2"}


def promql_selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) for every vector selector in a PromQL expression.

    Not a full parser (promtool checks that the expression parses); enough to list the series an
    expression reads: strings, ranges and grouping clauses are dropped, identifiers followed by `(`
    are functions, what remains are metric names."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    # `sum by (x) (...)` becomes `sum (...)`, so that the aggregation reads as a call.
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    found = []
    for m in re.finditer(r"(?<![\w$:.])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?\s*(\()?", expr):
        name, matchers, call = m.group(1), m.group(2), m.group(3)
        if call or name in PROMQL_KEYWORDS:
            continue
        labels = set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers or ""))
        found.append((name, labels))
    return found


def grafana_to_promql(expr: str) -> str:
    """A dashboard query as Prometheus would receive it from Grafana (all workers selected)."""
    return expr.replace("$__rate_interval", "1m").replace("$__interval", "15s").replace("$instance", ".*")


def dashboard_panels() -> list[dict]:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = []
    for panel in dash["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # panels inside collapsed rows
    return [p for p in panels if p.get("type") != "row"]


def alert_rules() -> list[dict]:
    doc = yaml.safe_load((PROM_DIR / "rules.yml").read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def read_env_example() -> dict[str, str]:
    env = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                            r"|\$(?P<bare>[A-Za-z_]\w*)")


def interpolate(value: object, env: dict[str, str]) -> object:
    """Compose's variable substitution (${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err},
    ${VAR?err}, $VAR, $$) applied to every string in a loaded compose file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg")
        current = env.get(name)
        unset_or_empty = not current if op and op.startswith(":") else current is None
        if op in (":-", "-"):
            return arg if unset_or_empty else current
        if op in (":?", "?"):
            if unset_or_empty:
                raise ValueError(f"required variable {name}: {arg}")
            return current
        return current or ""

    return _INTERPOLATION.sub(sub, value)


def compose_variables() -> dict[str, bool]:
    """Variables the compose file reads -> whether the file gives them a default."""
    found: dict[str, bool] = {}
    for m in _INTERPOLATION.finditer(COMPOSE.read_text(encoding="utf-8")):
        name = m.group("name") or m.group("bare")
        if name:
            has_default = m.group("op") in (":-", "-")
            found[name] = found.get(name, False) or has_default
    return found


def resolved_compose() -> dict:
    """The compose file as `docker compose config` would see it with .env.example, the one secret
    filled in with a dummy."""
    env = read_env_example()
    env["GRAFANA_ADMIN_PASSWORD"] = "test-only"
    return interpolate(load_compose(), env)


def worker_env(service: dict) -> dict[str, str]:
    env = service["environment"]
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text))


# --- Prometheus -----------------------------------------------------------------------------------

def run_tool(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_promtool_check_config() -> None:
    # Also loads and checks the rule files the config names.
    res = run_tool(tool("promtool"), "check", "config", str(PROM_DIR / "prometheus.yml"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_check_rules() -> None:
    res = run_tool(tool("promtool"), "check", "rules", str(PROM_DIR / "rules.yml"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_test_rules() -> None:
    res = run_tool(tool("promtool"), "test", "rules", str(PROM_DIR / "rules_test.yml"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    tests = yaml.safe_load((PROM_DIR / "rules_test.yml").read_text(encoding="utf-8"))
    fires, quiet = set(), set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - fires == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested staying quiet"
    assert (fires | quiet) - names == set(), "tests for alerts that rules.yml does not define"


def test_alert_set_and_shape() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(names) >= REQUIRED_ALERTS
    for rule in rules:
        where = rule["alert"]
        assert duration_s(rule.get("for", "")) > 0, f"{where}: no `for:`"
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, where
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), where
        assert annotations.get("runbook_url", "").startswith("docs/operations.md#"), where


def github_anchor(heading: str) -> str:
    """GitHub's heading slug: lower case, punctuation dropped, spaces to hyphens."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def test_runbook_links_resolve_to_headings_in_operations_doc() -> None:
    anchors = {github_anchor(m.group(1))
               for m in re.finditer(r"^#+\s+(.+)$", OPERATIONS.read_text(encoding="utf-8"), re.M)}
    for rule in alert_rules():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in anchors, f"{rule['alert']}: docs/operations.md has no heading #{anchor}"


def test_alert_expressions_use_contract_metrics_and_labels() -> None:
    allowed = exposed_series_names()
    allowed["up"] = {"instance", "job"}  # Prometheus' own per-target series
    for rule in alert_rules():
        for name, labels in promql_selectors(rule["expr"]):
            assert name in allowed, f"{rule['alert']}: {name} is not a metric in docs/contracts.md"
            assert labels <= allowed[name], f"{rule['alert']}: {name} has no label(s) {labels - allowed[name]}"


def test_required_alerts_watch_what_the_issue_asks() -> None:
    exprs = {r["alert"]: " ".join(r["expr"].split()) for r in alert_rules()}
    assert 'up{job="fmlc-worker"}' in exprs["FmlcWorkerDown"]
    assert "fmlc_consumer_lag" in exprs["FmlcConsumerLagGrowing"]
    assert 'outcome="dead_letter"' in exprs["FmlcDeadLetterRateHigh"]
    latency = exprs["FmlcEndToEndLatencyHigh"]
    assert "histogram_quantile(0.99" in latency and "fmlc_end_to_end_seconds_bucket" in latency
    assert latency.endswith("> 1")
    surge = exprs["FmlcLabelSurge"]
    assert "fmlc_predicted_labels_total[5m]" in surge
    windows = {duration_s(w) for w in re.findall(r"fmlc_predicted_labels_total\[(\w+)\]", surge)}
    assert max(windows) >= 3600, "the surge must be judged against a window much longer than 5m"
    stalled = exprs["FmlcWorkerStalled"]
    assert "fmlc_consumer_lag" in stalled and "fmlc_messages_total" in stalled
    for alert, watched in {"FmlcDeliveryFailing": "fmlc_delivery_failures_total",
                           "FmlcPollErrors": "fmlc_poll_errors_total", "FmlcStageStalled": "fmlc_stage_stall_seconds",
                           "FmlcCacheErrors": "fmlc_cache_errors_total",
                           "FmlcModelReloadFailing": 'fmlc_model_reloads_total{result="error"}',
                           "FmlcPartitionsPausedTooLong": "fmlc_consumer_paused"}.items():
        assert watched in exprs[alert], alert


def test_prometheus_scrapes_the_worker_metrics_port() -> None:
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "fmlc-worker")
    compose = resolved_compose()
    port = int(worker_env(compose["services"]["worker"])["FMLC_METRICS_PORT"])
    for sd in job["dns_sd_configs"]:
        assert sd["port"] == port
        for service in WORKER_SERVICES:
            aliases = compose["services"][service]["networks"]["default"]["aliases"]
            assert set(sd["names"]) <= set(aliases), f"{service} is not reachable under {sd['names']}"


# --- docker-compose.yml --------------------------------------------------------------------------

def compose_schema_validator():
    import importlib.resources

    import jsonschema

    # check-jsonschema vendors the Compose Specification's schema (compose-spec.json, Apache-2.0)
    # and refreshes it with each release; it is a test dependency, nothing is copied into this repo.
    schema_text = (importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
                   .joinpath("compose-spec.json").read_text(encoding="utf-8"))
    schema = json.loads(schema_text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_matches_the_compose_specification() -> None:
    validator = compose_schema_validator()
    for label, doc in (("as written", load_compose()), ("interpolated", resolved_compose())):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert errors == [], f"{label}: " + "\n".join(errors)


def test_compose_schema_check_rejects_mistakes() -> None:
    # The schema must be strict enough to catch the slips it is here for.
    validator = compose_schema_validator()
    doc = load_compose()
    misspelt = copy.deepcopy(doc)
    misspelt["services"]["worker"]["deploy"]["replica"] = 2
    bad_condition = copy.deepcopy(doc)
    bad_condition["services"]["kafka-init"]["depends_on"]["kafka"]["condition"] = "service_ready"
    misplaced = copy.deepcopy(doc)
    misplaced["services"]["worker"]["replicas"] = 2  # belongs under deploy:
    for bad in (misspelt, bad_condition, misplaced):
        assert list(validator.iter_errors(bad)), "the compose schema accepted an invalid file"


def test_env_example_lists_exactly_the_compose_variables() -> None:
    used = compose_variables()
    listed = read_env_example()
    assert set(used) - set(listed) == set(), "variables the compose file reads but .env.example lacks"
    assert set(listed) - set(used) == set(), ".env.example variables the compose file never reads"
    for name, has_default in used.items():
        if not has_default:
            assert "?" in COMPOSE.read_text(encoding="utf-8").split("${" + name, 1)[1].split("}", 1)[0], (
                f"${{{name}}} has neither a default nor a `:?` error: an empty value would pass silently")


def test_no_secret_values_in_the_compose_file() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for m in re.finditer(r"^\s*-?\s*([A-Z0-9_]*(?:PASSWORD|SECRET|TOKEN|API_KEY)[A-Z0-9_]*)\s*[:=]\s*(.*)$",
                         text, re.M):
        value = m.group(2).strip().strip("\"'")
        assert re.fullmatch(r"\$\{\w+:?\?[^}]*\}", value), f"{m.group(1)} must come from .env without a default"
    for name, value in read_env_example().items():
        if re.search(r"PASSWORD|SECRET|TOKEN|API_KEY", name):
            assert value == "", f".env.example must leave {name} blank"


def image_is_pinned(image: str) -> bool:
    name, _, digest = image.partition("@")
    if digest:
        return digest.startswith("sha256:")
    repo, _, tag = name.rpartition(":")
    return bool(repo) and "/" not in tag and tag not in ("", "latest") and any(c.isdigit() for c in tag)


def test_every_image_is_pinned() -> None:
    compose = resolved_compose()
    for name, service in compose["services"].items():
        assert "image" in service, f"{name}: give locally built images an explicit name:tag too"
        assert image_is_pinned(service["image"]), f"{name}: {service['image']} is not pinned"
        base = service.get("build", {}).get("args", {}).get("BASE_IMAGE")
        if base:
            assert image_is_pinned(base), f"{name}: base image {base} is not pinned"
    for command in dockerfile_commands():
        if command.cmd == "ARG" and command.value[0].startswith("BASE_IMAGE="):
            assert image_is_pinned(command.value[0].split("=", 1)[1])


def test_worker_environment_is_worker_settings() -> None:
    from worker.settings import WorkerSettings

    fields = {f"FMLC_{name.upper()}" for name in WorkerSettings.model_fields}
    compose = resolved_compose()
    for service in WORKER_SERVICES:
        env = worker_env(compose["services"][service])
        assert set(env) - fields == set(), f"{service}: variables the worker does not read"
        assert {"FMLC_BOOTSTRAP_SERVERS", "FMLC_INPUT_TOPIC", "FMLC_OUTPUT_TOPIC", "FMLC_DLQ_TOPIC",
                "FMLC_GROUP_ID", "FMLC_MODEL_PATH", "FMLC_REDIS_URL", "FMLC_METRICS_PORT",
                "FMLC_BATCH_SIZE", "FMLC_MAX_WAIT_MS", "FMLC_ALERT_RULES"} <= set(env)
        # The worker must accept these values: types, ranges and cross-field rules.
        settings = WorkerSettings(**{k[len("FMLC_"):].lower(): v for k, v in env.items()})
        assert (settings.input_topic, settings.output_topic, settings.dlq_topic) == (
            INPUT_TOPIC, OUTPUT_TOPIC, DLQ_TOPIC)
    envs = [worker_env(compose["services"][s]) for s in WORKER_SERVICES]
    same = ("FMLC_GROUP_ID", "FMLC_INPUT_TOPIC", "FMLC_MODEL_PATH", "FMLC_METRICS_PORT")
    assert [{k: e[k] for k in same} for e in envs][0] == [{k: e[k] for k in same} for e in envs][1], (
        "CPU and GPU workers must share a consumer group, topic, model and port")


def test_worker_service_invariants() -> None:
    compose = resolved_compose()
    services = compose["services"]
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert "profiles" not in services["worker"], "the CPU workers run by default"
    for name in WORKER_SERVICES:
        service = services[name]
        env = worker_env(service)
        port = env["FMLC_METRICS_PORT"]
        assert [str(p) for p in service["expose"]] == [port]
        assert "ports" not in service, "a fixed host port cannot be shared by several replicas"
        check = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/readyz" in check
        assert "container_name" not in service, "a fixed container name allows only one replica"
        mounts = {m["target"]: m for m in service["volumes"]}
        model_mount = next(m for t, m in mounts.items() if env["FMLC_MODEL_PATH"].startswith(t + "/"))
        assert model_mount["read_only"] is True
        assert mounts[env["FMLC_ALERT_RULES"]]["source"].endswith("deploy/alert_rules.yaml")
        assert mounts[env["FMLC_ALERT_RULES"]]["read_only"] is True
        assert duration_s(service["stop_grace_period"]) > float(env["FMLC_SHUTDOWN_TIMEOUT_S"]), (
            "compose would SIGKILL the worker before its own shutdown timeout")
        assert service["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert env["FMLC_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["FMLC_REDIS_URL"].startswith("redis://redis:")
        build = service["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_gpu_and_demo_profiles() -> None:
    services = resolved_compose()["services"]
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["args"]["BASE_IMAGE"].startswith("nvidia/cuda:")
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert worker_env(gpu)["FMLC_DEVICE"].startswith("cuda")

    replay = services["replay"]
    assert replay["profiles"] == ["demo"]
    script = replay["entrypoint"][-1]
    copied = [c.value for c in dockerfile_commands() if c.cmd == "COPY" and "deploy/replay.py" in c.value]
    assert copied and copied[0][-1] == script, "the demo entrypoint must be where the image puts replay.py"
    args = replay["command"]
    assert args[args.index("--topic") + 1] == INPUT_TOPIC
    assert args[args.index("--bootstrap-servers") + 1] == "kafka:9092"
    mounted = {m["target"] for m in replay["volumes"]}
    assert args[args.index("--file") + 1] in mounted


def test_kafka_is_a_single_kraft_broker_with_topics_from_init() -> None:
    services = resolved_compose()["services"]
    kafka, init = services["kafka"], services["kafka-init"]
    assert kafka["image"].startswith("apache/kafka:") and image_is_pinned(kafka["image"])
    env = {k: str(v) for k, v in kafka["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in k for k in env)
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "INTERNAL://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert init["image"] == kafka["image"]
    assert int(init["environment"]["FMLC_PARTITIONS"]) >= services["worker"]["deploy"]["replicas"], (
        "more replicas than input partitions leaves some idle")


def run_create_topics(tmp_path: Path, rules: Path) -> tuple[subprocess.CompletedProcess, dict[str, int]]:
    stub = tmp_path / "kafka-topics.sh"
    calls = tmp_path / "calls"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    stub.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "KAFKA_TOPICS": str(stub), "ALERT_RULES": str(rules),
           "FMLC_PARTITIONS": "7", "BOOTSTRAP_SERVERS": "kafka:9092"}
    res = subprocess.run(["sh", str(DEPLOY / "kafka" / "create-topics.sh")], env=env, capture_output=True,
                         text=True, timeout=30)
    created = {}
    for line in calls.read_text().splitlines() if calls.exists() else []:
        args = line.split()
        if "--create" in args:
            created[args[args.index("--topic") + 1]] = int(args[args.index("--partitions") + 1])
    return res, created


def test_create_topics_makes_every_topic_the_worker_writes(tmp_path: Path) -> None:
    from worker.alerts import AlertRules

    rules = ALERT_RULES
    if not rules.exists():  # written by the worker side; until then a file in the documented format
        rules = tmp_path / "alert_rules.yaml"
        rules.write_text("# topics look like fmlc.alerts.<area>\nrules:\n"
                         "  - name: a\n    label: x\n    topic: fmlc.alerts.collection\n"
                         "  - name: b\n    any_of: [y, z]\n    topic: 'fmlc.alerts.privacy'  # quoted\n")
    res, created = run_create_topics(tmp_path, rules)
    assert res.returncode == 0, res.stderr
    alert_topics = set(AlertRules.load(rules).topics)
    assert alert_topics, "the alert rules name no topic"
    assert set(created) == {INPUT_TOPIC, OUTPUT_TOPIC, DLQ_TOPIC} | alert_topics
    assert created[INPUT_TOPIC] == 7, "the input topic must get FMLC_PARTITIONS partitions"


def test_create_topics_refuses_rules_without_topics(tmp_path: Path) -> None:
    rules = tmp_path / "alert_rules.yaml"
    rules.write_text("rules: []\n")
    res, _ = run_create_topics(tmp_path, rules)
    assert res.returncode != 0


def documented_compose_commands(text: str) -> list[list[str]]:
    """`docker compose ...` commands in fenced code blocks and in inline code spans."""
    snippets = []
    in_fence = False
    for line in text.replace("\\\n", " ").splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif in_fence:
            snippets.append(line.split(" #", 1)[0])
        else:
            snippets.extend(re.findall(r"`([^`]+)`", line))
    commands = []
    for snippet in snippets:
        for part in re.split(r"&&|;|\|", snippet):
            m = re.search(r"docker compose\s+(.*)", part)
            if m:
                commands.append(m.group(1).split())
    return commands


SUBCOMMANDS_WITH_SERVICES = {"up", "logs", "restart", "stop", "start", "kill", "exec", "run", "ps", "build",
                             "pull", "rm", "create", "top", "pause", "unpause", "port"}
# Options that take a value, before the subcommand (global) and after it; `-f` is --file before
# the subcommand and --follow after it.
GLOBAL_OPTIONS_WITH_VALUE = {"-f", "--file", "--profile", "-p", "--project-name", "--env-file"}
OPTIONS_WITH_VALUE = {"-s", "--signal", "--scale", "-t", "--timeout", "--tail", "-u", "--user", "-w",
                      "--workdir", "-e", "--env", "--index"}


def test_services_named_in_the_docs_exist() -> None:
    compose = load_compose()
    services, profiles = set(compose["services"]), set()
    for service in compose["services"].values():
        profiles.update(service.get("profiles", []))
    docs = [OPERATIONS] + [p for p in (ROOT / "README.md",) if p.exists()]
    checked = 0
    for doc in docs:
        for args in documented_compose_commands(doc.read_text(encoding="utf-8")):
            i = 0
            sub = None
            while i < len(args):
                arg = args[i]
                takes_value = GLOBAL_OPTIONS_WITH_VALUE if sub is None else OPTIONS_WITH_VALUE
                if arg in takes_value and i + 1 < len(args):
                    value = args[i + 1]
                    if arg == "--profile":
                        assert value in profiles, f"{doc.name}: no profile {value}"
                    if arg == "--scale":
                        assert value.split("=")[0] in services, f"{doc.name}: no service {value}"
                    i += 2
                    continue
                if arg.startswith("-"):
                    i += 1
                    continue
                if sub is None:
                    sub = arg
                elif sub in SUBCOMMANDS_WITH_SERVICES and re.fullmatch(r"[a-z][a-z0-9-]*", arg):
                    assert arg in services, f"{doc.name}: `docker compose {' '.join(args)}` names no service"
                    checked += 1
                    if sub in ("exec", "run"):
                        break  # what follows is the command run inside the container
                i += 1
    assert checked >= 3, "docs/operations.md should show the compose commands it talks about"
    text = OPERATIONS.read_text(encoding="utf-8")
    for name in services:
        assert f"`{name}`" in text, f"docs/operations.md does not describe the `{name}` service"


# --- Dockerfile ----------------------------------------------------------------------------------

def dockerfile_commands():
    import dockerfile  # BuildKit's own parser

    return dockerfile.parse_file(str(DOCKERFILE))


def stages(commands) -> list[list]:
    out: list[list] = []
    for command in commands:
        if command.cmd == "FROM":
            out.append([])
        if out:
            out[-1].append(command)
    return out


def test_dockerfile_is_multi_stage_non_root_with_cpu_and_cuda_variants() -> None:
    commands = dockerfile_commands()
    # The base image is a build argument declared before the first FROM.
    first_from = next(i for i, c in enumerate(commands) if c.cmd == "FROM")
    args = {c.value[0].split("=", 1)[0] for c in commands[:first_from] if c.cmd == "ARG"}
    assert "BASE_IMAGE" in args
    assert commands[first_from].value[0] == "${BASE_IMAGE}"
    all_stages = stages(commands)
    assert len(all_stages) >= 3
    names = {s[0].value[2]: s for s in all_stages if len(s[0].value) == 3}
    final = all_stages[-1]

    build_runs = " ".join(" ".join(c.value) for c in names["build"] if c.cmd == "RUN")
    torch_at = build_runs.index('"torch==$(cat torch-version)"')
    assert build_runs.index('pip install --no-cache-dir "./[worker]"') > torch_at, "torch must be installed first"
    assert "--index-url" in build_runs[torch_at:torch_at + 200]
    build_args = {c.value[0].split("=", 1)[0]: c.value[0].split("=", 1)[1]
                  for c in names["build"] if c.cmd == "ARG" and "=" in c.value[0]}
    # The pin is deploy/torch-version's (shared with scripts/setup.sh); the build argument only overrides it.
    assert build_args["TORCH_VERSION"].strip('"') == ""
    assert any(c.cmd == "COPY" and c.value[0] == "deploy/torch-version" for c in names["build"])
    assert build_args["TORCH_INDEX_URL"].endswith("/whl/cpu"), "the default variant is the CPU one"

    final_runs = " ".join(" ".join(c.value) for c in final if c.cmd == "RUN")
    assert "pip" not in final_runs, "the runtime stage installs nothing with pip"
    assert any(c.cmd == "COPY" and "--from=build" in c.flags for c in final)
    users = [c.value[0] for c in final if c.cmd == "USER"]
    assert users, "the runtime stage must not run as root"
    uid = users[-1].split(":")[0]
    uid_args = {c.value[0].split("=", 1)[0]: c.value[0].split("=", 1)[1] for c in final
                if c.cmd == "ARG" and "=" in c.value[0]}
    uid = uid_args.get(uid.strip("${}"), uid)
    assert uid not in ("0", "root")
    compose = resolved_compose()
    assert f"EXPOSE {worker_env(compose['services']['worker'])['FMLC_METRICS_PORT']}" in [
        c.original for c in final]


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern == "**" or fnmatch(path, pattern) or path.startswith(pattern + "/") or fnmatch(
                path, pattern.replace("**/", "*/")):
            excluded = not negate
    return excluded


def test_every_copied_path_exists_and_survives_the_dockerignore() -> None:
    ignore = DOCKERFILE.with_name("Dockerfile.dockerignore")
    patterns = [line.strip() for line in ignore.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    for command in dockerfile_commands():
        if command.cmd != "COPY" or any(f.startswith("--from") for f in command.flags):
            continue
        for source in command.value[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such path in the build context"
            assert not dockerignore_excludes(source, patterns), f"COPY {source} is excluded by {ignore.name}"
    assert dockerignore_excludes(".venv", patterns), "the virtualenv must not be sent to the builder"


def test_hadolint_passes() -> None:
    res = run_tool(tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE))
    assert res.returncode == 0, res.stdout + res.stderr


# --- Grafana -------------------------------------------------------------------------------------

def test_grafana_provisioning_matches_compose_and_dashboard() -> None:
    datasources = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    prometheus = next(d for d in datasources if d["type"] == "prometheus")
    compose = resolved_compose()
    assert prometheus["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    providers = yaml.safe_load(DASH_PROVIDERS.read_text(encoding="utf-8"))["providers"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in compose["services"]["grafana"]["volumes"]}
    assert (ROOT / mounts[providers[0]["options"]["path"]]).resolve() == DASHBOARD.parent
    assert (ROOT / mounts["/etc/grafana/provisioning"]).resolve() == DATASOURCES.parents[1]
    uids = {p["datasource"]["uid"] for p in dashboard_panels()}
    uids |= {t["datasource"]["uid"] for p in dashboard_panels() for t in p["targets"]}
    assert uids == {prometheus["uid"]}


def test_dashboard_panels_query_only_contract_metrics() -> None:
    allowed = exposed_series_names()
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    used = set()
    for panel in panels:
        exprs = [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
        assert exprs, f"panel {panel['title']!r} has no query"
        for expr in exprs:
            selectors = promql_selectors(grafana_to_promql(expr))
            assert selectors, f"{panel['title']!r}: {expr} reads no metric"
            for name, labels in selectors:
                assert name in allowed, f"{panel['title']!r}: {name} is not in docs/contracts.md"
                assert labels <= allowed[name], f"{panel['title']!r}: {name} has no label(s) {labels - allowed[name]}"
                used.add(name)
    base = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    assert set(contract_metrics()) - base == set(), "contract metrics the dashboard never shows"


def test_dashboard_covers_the_panels_the_issue_asks_for() -> None:
    queries = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in dashboard_panels()}

    def panel_with(*needles: str) -> str:
        hits = [title for title, q in queries.items() if all(n in q for n in needles)]
        assert hits, f"no panel queries {needles}"
        return hits[0]

    panel_with("sum by (outcome)", "fmlc_messages_total")
    for metric in ("fmlc_end_to_end_seconds_bucket", "fmlc_inference_seconds_bucket"):
        panel_with(*(f"histogram_quantile({q}" for q in ("0.5", "0.95", "0.99")), metric)
    panel_with("fmlc_batch_size_bucket")
    panel_with("fmlc_batch_fill_ratio")
    panel_with("fmlc_queue_depth")
    panel_with("by (topic, partition)", "fmlc_consumer_lag")
    panel_with('result="hit"', "fmlc_cache_requests_total")
    panel_with("by (reason)", "fmlc_dead_letters_total")
    panel_with("by (topic, severity)", "fmlc_alerts_total")
    panel_with("topk(", "by (label)", "fmlc_predicted_labels_total")
    panel_with("version, device", "fmlc_model_info")


def test_dashboard_layout_fits_the_grid() -> None:
    # Grafana's grid is 24 columns wide; overlapping panels are silently pushed around on load.
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    cells: dict[tuple[int, int], str] = {}
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    # promtool parses every expression of a rules file: the dashboard queries go in as recording rules.
    rules = [{"record": f"dashboard:panel{p['id']}:{t['refId']}", "expr": grafana_to_promql(t["expr"])}
             for p in dashboard_panels() for t in p["targets"]]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, allow_unicode=True))
    res = run_tool(tool("promtool"), "check", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(rules)} rules found" in res.stdout


def test_promql_selector_extraction() -> None:
    # The metric-name checks above are only as good as this extraction.
    got = promql_selectors('histogram_quantile(0.99, sum by (le, instance) (rate(fmlc_x_bucket{a="b}",c=~"d"}[5m])))'
                           ' / on () group_left () sum(fmlc_y offset 1h) and time() - up')
    assert got == [("fmlc_x_bucket", {"a", "c"}), ("fmlc_y", set()), ("up", set())]


# --- deploy/replay.py ----------------------------------------------------------------------------

def load_replay():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fmlc_deploy_replay", DEPLOY / "replay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = False

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def flush(self) -> None:
        self.flushed = True


def test_replay_sends_worker_input_messages(tmp_path: Path) -> None:
    from worker.messages import parse_complaint

    replay = load_replay()
    data = tmp_path / "c.jsonl"
    data.write_text('{"id": "a1", "text": "借款被暴力催收", "labels": ["暴力催收"], "split": "test"}\n\n'
                    '{"text": "无 id 的投诉", "source": "web"}\n', encoding="utf-8")
    producer = RecordingProducer()
    sent = replay.replay(producer, "fmlc.complaints", replay.read_messages(data, loop=True), limit=5)
    assert sent == 5 and producer.flushed
    keys = [key.decode() for _, key, _ in producer.sent]
    assert keys == ["a1", "c-3", "a1-r1", "c-3-r1", "a1-r2"]
    first = json.loads(producer.sent[0][2])
    assert "labels" not in first and "split" not in first, "gold labels must not be replayed"
    for _, key, value in producer.sent:
        complaint = parse_complaint(value, max_text_chars=5000)  # the worker's own input parser
        assert complaint.id == key.decode()
    assert json.loads(producer.sent[1][2])["source"] == "web"

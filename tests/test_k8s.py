"""The Kubernetes manifests under deploy/k8s/: rendered from one place, valid, and saying what they must.

- The checked-in files equal a fresh render of deploy/k8s/render.py (so nobody edits them by hand
  and a change to a source file cannot leave them behind).
- Core kinds validate strictly against the Kubernetes API schema (kubernetes-validate, offline).
- Custom resources (KEDA ScaledObject, Prometheus Operator PodMonitor and PrometheusRule) and the
  prometheus-adapter rule are checked against the fields their operators document.
- The properties the deployment depends on: probes on the worker's real endpoints, grace period
  longer than the shutdown timeout, instance id from the pod name, secrets by reference only, the
  same alert rules as deploy/prometheus/, replicas never above the input partitions, and no drift
  between docker-compose.yml, the manifests and worker/settings.py.
No cluster is needed: what only a cluster could say (a scheduled pod, a live HPA) is out of reach here.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
sys.path.insert(0, str(Path(__file__).parent))
from test_deploy import resolved_compose, tool, worker_env  # noqa: E402

CRD_GROUPS = ("keda.sh/", "monitoring.coreos.com/")


def load_render():
    spec = importlib.util.spec_from_file_location("k8s_render", K8S / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = load_render()


def docs(path: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / path).read_text()) if d is not None]


def all_docs() -> dict[str, list[dict]]:
    return {str(p.relative_to(K8S)): docs(str(p.relative_to(K8S))) for p in sorted(K8S.rglob("*.yaml"))}


def manifests() -> list[tuple[str, dict]]:
    """Every Kubernetes object (kustomizations and the adapter's config are not objects)."""
    return [(path, d) for path, ds in all_docs().items() for d in ds
            if "kind" in d and d["kind"] != "Kustomization"]


def one(path: str, kind: str) -> dict:
    found = [d for d in docs(path) if d.get("kind") == kind]
    assert len(found) == 1, f"{path}: expected one {kind}"
    return found[0]


def deployments() -> dict[str, dict]:
    return {v: one(f"{v}/deployment.yaml", "Deployment") for v in ("cpu", "gpu")}


def container(dep: dict) -> dict:
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


def configmap_env() -> dict[str, str]:
    return one("base/configmap-settings.yaml", "ConfigMap")["data"]


def effective_env(dep: dict) -> dict[str, Any]:
    """What the worker container sees: the ConfigMap, then `env` on top (Kubernetes' precedence)."""
    env: dict[str, Any] = dict(configmap_env())
    for item in container(dep)["env"]:
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def topic_job_env() -> dict[str, str]:
    job = one("base/job-create-topics.yaml", "Job")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in c["env"]}


# --- one source ------------------------------------------------------------------------------------

def test_checked_in_manifests_equal_a_fresh_render() -> None:
    fresh = render.render()
    on_disk = {str(p.relative_to(K8S)): p.read_text() for p in K8S.rglob("*.yaml")}
    assert set(on_disk) == set(fresh), "files under deploy/k8s/ that render.py does not produce, or missing ones"
    stale = [p for p in fresh if fresh[p] != on_disk[p]]
    assert not stale, f"run `python deploy/k8s/render.py`: {stale} differ from a fresh render"
    res = subprocess.run([sys.executable, str(K8S / "render.py"), "--check"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr


def test_check_mode_catches_a_hand_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_dir = tmp_path / "k8s"
    for path, text in render.render().items():
        (copy_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (copy_dir / path).write_text(text)
    monkeypatch.setattr(render, "OUT", copy_dir)
    assert render.main(["--check"]) == 0
    edited = copy_dir / "base" / "configmap-settings.yaml"
    edited.write_text(edited.read_text().replace("fmlc.complaints", "fmlc.complaint"))
    assert render.main(["--check"]) == 1
    (copy_dir / "base" / "stray.yaml").write_text("kind: ConfigMap\n")
    render.main([])
    assert render.main(["--check"]) == 0 and not (copy_dir / "base" / "stray.yaml").exists()


def test_rules_are_the_prometheus_rules_and_files_are_their_sources() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
    assert one("base/prometheusrule.yaml", "PrometheusRule")["spec"]["groups"] == rules["groups"]
    alert_rules = one("base/configmap-alert-rules.yaml", "ConfigMap")["data"]["alert_rules.yaml"]
    assert alert_rules == (ROOT / "deploy" / "alert_rules.yaml").read_text(encoding="utf-8")
    script = one("base/configmap-create-topics.yaml", "ConfigMap")["data"]["create-topics.sh"]
    assert script == (ROOT / "deploy" / "kafka" / "create-topics.sh").read_text()


def test_no_drift_between_compose_manifests_and_worker_settings() -> None:
    from worker.settings import WorkerSettings

    fields = {f"FMLC_{name.upper()}" for name in WorkerSettings.model_fields}
    compose = resolved_compose()["services"]
    for variant, dep in deployments().items():
        env = effective_env(dep)
        unknown = {k for k in env if k.startswith("FMLC_")} - fields
        assert not unknown, f"{variant}: variables the worker does not read: {sorted(unknown)}"
        # Every value must be one the worker accepts (types, ranges, cross-field rules).
        plain = {k[5:].lower(): v for k, v in env.items() if isinstance(v, str) and k in fields}
        settings = WorkerSettings(**plain)
        service = compose["worker-gpu" if variant == "gpu" else "worker"]
        cenv = worker_env(service)
        # What compose and Kubernetes must agree on; addresses, paths and secrets differ by design.
        shared = ("FMLC_INPUT_TOPIC", "FMLC_OUTPUT_TOPIC", "FMLC_DLQ_TOPIC", "FMLC_GROUP_ID", "FMLC_METRICS_PORT",
                  "FMLC_BATCH_SIZE", "FMLC_MAX_WAIT_MS", "FMLC_SORT_WINDOW", "FMLC_ALERT_RULES",
                  "FMLC_CREATE_TOPICS", "FMLC_SHUTDOWN_TIMEOUT_S", "FMLC_MODEL_POLL_INTERVAL_S", "FMLC_DEVICE")
        for name in shared:
            if name in cenv or name in env:
                a = WorkerSettings(**{name[5:].lower(): cenv[name]}) if name in cenv else WorkerSettings()
                b = getattr(settings, name[5:].lower())
                assert getattr(a, name[5:].lower()) == b, f"{variant}: {name} compose {cenv.get(name)} != k8s {b}"
        tag = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", service["image"])
        assert container(dep)["image"] == tag, "the same image name and tag as docker-compose.yml"
    # The topic Job uses the broker image compose's kafka-init uses, and the same script.
    job = one("base/job-create-topics.yaml", "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == compose["kafka-init"]["image"]
    assert topic_job_env()["ALERT_RULES"] == configmap_env()["FMLC_ALERT_RULES"]


def test_drift_check_notices_a_renamed_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The drift test above would fail if the worker renamed a setting the manifests use."""
    from worker.settings import WorkerSettings

    fields = dict(WorkerSettings.model_fields)
    fields.pop("sort_window")
    monkeypatch.setattr(WorkerSettings, "model_fields", fields)
    with pytest.raises(AssertionError, match="sort_window"):
        render.worker_env(WorkerSettings())


# --- the Kubernetes API schema -----------------------------------------------------------------------

def test_core_manifests_validate_strictly() -> None:
    import kubernetes_validate

    core = [(p, d) for p, d in manifests() if not d["apiVersion"].startswith(CRD_GROUPS)]
    kinds = {d["kind"] for _, d in core}
    assert {"Deployment", "ConfigMap", "Job", "PodDisruptionBudget", "HorizontalPodAutoscaler",
            "PersistentVolumeClaim", "ServiceAccount", "Pod"} <= kinds
    for _, d in core:
        kubernetes_validate.validate(d, render.K8S_VERSION, strict=True)
    # The same check, as the issue names it: the command line, strict, every core-kind file.
    files = sorted({p for p, _ in core})
    res = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet",
                          "-k", render.K8S_VERSION, *files], cwd=K8S, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_strict_validation_rejects_a_misspelt_field() -> None:
    import kubernetes_validate

    dep = copy.deepcopy(deployments()["cpu"])
    container(dep)["readinesProbe"] = container(dep).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, render.K8S_VERSION, strict=True)


# --- custom resources: the fields the operators document ----------------------------------------------

# The Prometheus Operator's duration format (monitoring.coreos.com/v1 Duration).
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
LABEL_SELECTOR = {"type": "object", "additionalProperties": False, "properties": {
    "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
    "matchExpressions": {"type": "array"}}}
METADATA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}


def cr(api: str, kind: str, spec: dict) -> dict:
    return {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
            "properties": {"apiVersion": {"const": api}, "kind": {"const": kind}, "metadata": METADATA, "spec": spec}}


# KEDA 2.x, ScaledObject spec and the kafka scaler's trigger metadata (keda.sh/docs/2.x/scalers/apache-kafka).
KAFKA_METADATA = {"bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold",
                  "offsetResetPolicy", "allowIdleConsumers", "scaleToZeroOnInvalidOffset", "excludePersistentLag",
                  "limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions", "version",
                  "partitionLimitation", "sasl", "tls", "unsafeSsl"}
SCALED_OBJECT = cr("keda.sh/v1alpha1", "ScaledObject", {
    "type": "object", "required": ["scaleTargetRef", "triggers"], "additionalProperties": False, "properties": {
        "scaleTargetRef": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"},
            "envSourceContainerName": {"type": "string"}}},
        "pollingInterval": {"type": "integer", "minimum": 1},
        "cooldownPeriod": {"type": "integer", "minimum": 0},
        "initialCooldownPeriod": {"type": "integer", "minimum": 0},
        "idleReplicaCount": {"type": "integer", "minimum": 0},
        "minReplicaCount": {"type": "integer", "minimum": 0},
        "maxReplicaCount": {"type": "integer", "minimum": 1},
        "fallback": {"type": "object"},
        "advanced": {"type": "object", "additionalProperties": False, "properties": {
            "restoreToOriginalReplicaCount": {"type": "boolean"},
            "horizontalPodAutoscalerConfig": {"type": "object", "additionalProperties": False, "properties": {
                "name": {"type": "string"}, "behavior": {"type": "object"}}},
            "scalingModifiers": {"type": "object"}}},
        "triggers": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["type", "metadata"], "additionalProperties": False, "properties": {
                "type": {"const": "kafka"}, "name": {"type": "string"}, "useCachedMetrics": {"type": "boolean"},
                "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                "authenticationRef": {"type": "object", "required": ["name"]},
                # Trigger metadata is a map of strings: a bare `false` or 1000 is refused by KEDA.
                "metadata": {"type": "object", "required": ["bootstrapServers", "consumerGroup", "topic"],
                             "propertyNames": {"enum": sorted(KAFKA_METADATA)},
                             "additionalProperties": {"type": "string"},
                             "properties": {"offsetResetPolicy": {"enum": ["earliest", "latest"]},
                                            "allowIdleConsumers": {"enum": ["true", "false"]},
                                            "lagThreshold": {"pattern": "^[0-9]+$"}}}}}}}})
# Prometheus Operator monitoring.coreos.com/v1 PodMonitor and PrometheusRule.
POD_MONITOR = cr("monitoring.coreos.com/v1", "PodMonitor", {
    "type": "object", "required": ["selector", "podMetricsEndpoints"], "additionalProperties": False, "properties": {
        "jobLabel": {"type": "string"}, "podTargetLabels": {"type": "array", "items": {"type": "string"}},
        "selector": LABEL_SELECTOR,
        "namespaceSelector": {"type": "object", "properties": {"any": {"type": "boolean"},
                                                               "matchNames": {"type": "array"}}},
        "sampleLimit": {"type": "integer"}, "targetLimit": {"type": "integer"},
        "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "properties": {
                "port": {"type": "string"}, "portNumber": {"type": "integer"}, "path": {"type": "string"},
                "scheme": {"enum": ["http", "https"]}, "interval": {"type": "string", "pattern": DURATION},
                "scrapeTimeout": {"type": "string", "pattern": DURATION}, "honorLabels": {"type": "boolean"},
                "honorTimestamps": {"type": "boolean"}, "relabelings": {"type": "array"},
                "metricRelabelings": {"type": "array"}, "params": {"type": "object"},
                "filterRunning": {"type": "boolean"}, "enableHttp2": {"type": "boolean"}}}}}})
PROMETHEUS_RULE = cr("monitoring.coreos.com/v1", "PrometheusRule", {
    "type": "object", "required": ["groups"], "additionalProperties": False, "properties": {
        "groups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "rules"], "additionalProperties": False, "properties": {
                "name": {"type": "string", "minLength": 1}, "interval": {"type": "string", "pattern": DURATION},
                "query_offset": {"type": "string", "pattern": DURATION}, "limit": {"type": "integer"},
                "partial_response_strategy": {"type": "string"}, "labels": {"type": "object"},
                "rules": {"type": "array", "items": {
                    "type": "object", "required": ["expr"], "additionalProperties": False,
                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}], "properties": {
                        "alert": {"type": "string"}, "record": {"type": "string"},
                        "expr": {"type": ["string", "integer"]},
                        "for": {"type": "string", "pattern": DURATION},
                        "keep_firing_for": {"type": "string", "pattern": DURATION},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}}}})
# prometheus-adapter's discovery rule (docs/config.md of kubernetes-sigs/prometheus-adapter).
ADAPTER = {"type": "object", "required": ["externalRules"], "additionalProperties": False, "properties": {
    "externalRules": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["seriesQuery", "metricsQuery"], "additionalProperties": False, "properties": {
            "seriesQuery": {"type": "string"}, "seriesFilters": {"type": "array"},
            "resources": {"type": "object", "additionalProperties": False, "properties": {
                "overrides": {"type": "object"}, "template": {"type": "string"}, "namespaced": {"type": "boolean"}}},
            "name": {"type": "object", "additionalProperties": False, "properties": {
                "matches": {"type": "string"}, "as": {"type": "string"}}},
            "metricsQuery": {"type": "string"}}}}}}
CR_SCHEMAS = {"ScaledObject": SCALED_OBJECT, "PodMonitor": POD_MONITOR, "PrometheusRule": PROMETHEUS_RULE}


def test_custom_resources_use_the_documented_fields() -> None:
    import kubernetes_validate

    crs = [(p, d) for p, d in manifests() if d["apiVersion"].startswith(CRD_GROUPS)]
    assert sorted(d["kind"] for _, d in crs) == ["PodMonitor", "PrometheusRule", "ScaledObject"]
    for _, d in crs:
        jsonschema.validate(d, CR_SCHEMAS[d["kind"]])
    jsonschema.validate(docs("autoscaling/prometheus-adapter-rules.yaml")[0], ADAPTER)
    # KEDA hands `behavior` to the HPA it creates: it must be a valid autoscaling/v2 behavior.
    keda = one("autoscaling/keda-scaledobject.yaml", "ScaledObject")
    hpa = copy.deepcopy(one("autoscaling/hpa.yaml", "HorizontalPodAutoscaler"))
    hpa["spec"]["behavior"] = keda["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    kubernetes_validate.validate(hpa, render.K8S_VERSION, strict=True)


@pytest.mark.parametrize("kind, path, mutate", [
    ("ScaledObject", "autoscaling/keda-scaledobject.yaml",
     lambda d: d["spec"]["triggers"][0]["metadata"].update(allowIdleConsumers=False)),
    ("ScaledObject", "autoscaling/keda-scaledobject.yaml", lambda d: d["spec"].update(maxReplicas=3)),
    ("PodMonitor", "base/podmonitor.yaml", lambda d: d["spec"]["podMetricsEndpoints"][0].update(interval="15 s")),
    ("PodMonitor", "base/podmonitor.yaml", lambda d: d["spec"].update(endpoints=[])),
    ("PrometheusRule", "base/prometheusrule.yaml", lambda d: d["spec"]["groups"][0]["rules"][0].pop("alert")),
])
def test_custom_resource_checks_reject_mistakes(kind: str, path: str, mutate) -> None:
    d = copy.deepcopy(one(path, kind))
    mutate(d)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(d, CR_SCHEMAS[kind])


def test_adapter_query_is_valid_promql_over_the_contract_metric(tmp_path: Path) -> None:
    (rule,) = docs("autoscaling/prometheus-adapter-rules.yaml")[0]["externalRules"]
    hpa = one("autoscaling/hpa.yaml", "HorizontalPodAutoscaler")
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]
    assert rule["name"]["as"] == metric["name"] and re.fullmatch(rule["name"]["matches"], "fmlc_consumer_lag")
    assert rule["seriesQuery"].startswith("fmlc_consumer_lag{")
    # The adapter fills in the series and the HPA's selector; a filled-in query must parse.
    query = rule["metricsQuery"].replace("<<.Series>>", "fmlc_consumer_lag").replace(
        "<<.LabelMatchers>>", 'namespace="fmlc",topic="fmlc.complaints"')
    rules = tmp_path / "adapter.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": [{"record": "x:lag", "expr": query}]}]}))
    res = subprocess.run([tool("promtool"), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_kustomizations_list_files_that_exist() -> None:
    for path, ds in all_docs().items():
        for d in ds:
            if d.get("kind") == "Kustomization":
                for res in d["resources"]:
                    assert ((K8S / path).parent / res).exists(), f"{path}: {res}"
    base = docs("base/kustomization.yaml")[0]["resources"]
    assert sorted(base) == sorted(str(p.name) for p in (K8S / "base").glob("*.yaml") if p.name != "kustomization.yaml")


# --- properties ----------------------------------------------------------------------------------------

def test_probes_hit_the_endpoints_the_worker_serves() -> None:
    from prometheus_client import CollectorRegistry

    from worker.health import HealthServer

    for variant, dep in deployments().items():
        c = container(dep)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["metrics"] == int(effective_env(dep)["FMLC_METRICS_PORT"])
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
        probes = [c[k]["httpGet"] for k in ("livenessProbe", "readinessProbe", "startupProbe")]
        assert all(p["port"] in ports for p in probes), f"{variant}: a probe on a port the container does not name"
        # The worker's own HTTP server answers those paths (and not any path: /nothing is 404).
        server = HealthServer("127.0.0.1", 0, CollectorRegistry(), live=lambda: (True, {}),
                              ready=lambda: (False, {})).start()
        try:
            base = f"http://127.0.0.1:{server.port}"
            answers = {}
            for path in [p["path"] for p in probes] + ["/nothing"]:
                try:
                    answers[path] = urllib.request.urlopen(base + path, timeout=5).status
                except urllib.error.HTTPError as err:
                    answers[path] = err.code
        finally:
            server.stop()
        assert answers == {"/healthz": 200, "/readyz": 503, "/nothing": 404}
    monitor = one("base/podmonitor.yaml", "PodMonitor")
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"


def test_grace_period_outlasts_the_shutdown_timeout() -> None:
    for variant, dep in deployments().items():
        grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > float(effective_env(dep)["FMLC_SHUTDOWN_TIMEOUT_S"]), variant


def test_liveness_restarts_a_stalled_worker_and_spares_a_loading_one() -> None:
    for variant, dep in deployments().items():
        c = container(dep)
        live, startup = c["livenessProbe"], c["startupProbe"]
        stall = float(effective_env(dep)["FMLC_STALL_TIMEOUT_S"])
        # A stalled worker is restarted within a few minutes: the stall timeout, then the probe's failures.
        assert stall + live["periodSeconds"] * live["failureThreshold"] <= 120, variant
        # Liveness starts counting only after the startup probe passed (model loaded, HTTP up).
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, variant
        assert live["timeoutSeconds"] < live["periodSeconds"]


def test_instance_id_comes_from_the_pod_name() -> None:
    for variant, dep in deployments().items():
        env = {e["name"]: e for e in container(dep)["env"]}
        assert env["FMLC_INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, variant
        assert "FMLC_TRANSACTIONAL_ID" not in effective_env(dep), "a fixed id would be shared by every replica"
        # What the worker makes of it: group + pod name, so two pods never share a transactional id.
        from worker.settings import WorkerSettings

        plain = {k[5:].lower(): v for k, v in effective_env(dep).items() if isinstance(v, str)}
        ids = {WorkerSettings(**plain, instance_id=pod).effective_transactional_id()
               for pod in ("fmlc-worker-7d9c6-abcde", "fmlc-worker-7d9c6-fghij")}
        assert ids == {f"{plain['group_id']}-fmlc-worker-7d9c6-abcde", f"{plain['group_id']}-fmlc-worker-7d9c6-fghij"}


def test_secrets_are_referenced_never_inlined() -> None:
    from worker.settings import SECRET_FIELDS

    secret_vars = {f"FMLC_{n.upper()}" for n in SECRET_FIELDS} | {"FMLC_REDIS_URL", "FMLC_SASL_USERNAME"}
    for path, d in manifests():
        assert d["kind"] != "Secret", f"{path}: a Secret with values does not belong in the repository"
        text = json.dumps(d)
        assert "redis://" not in text and "password=" not in text.lower(), path
    assert not secret_vars & set(configmap_env()), "a secret setting in the ConfigMap"
    for variant, dep in deployments().items():
        env = {e["name"]: e for e in container(dep)["env"]}
        for name in secret_vars & set(env):
            assert "value" not in env[name], f"{variant}: {name} inlined"
            assert env[name]["valueFrom"]["secretKeyRef"]["name"] == render.SECRET
        assert "secretKeyRef" in json.dumps(env["FMLC_REDIS_URL"])
        assert not env["FMLC_REDIS_URL"]["valueFrom"]["secretKeyRef"].get("optional"), (
            "without the Secret the worker would fall back to a Redis on localhost")


def test_security_context_and_read_only_model() -> None:
    pods = [d["spec"]["template"]["spec"] if d["kind"] in ("Deployment", "Job") else d["spec"]
            for _, d in manifests() if d["kind"] in ("Deployment", "Job", "Pod")]
    assert len(pods) == 4
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert {"requests", "limits"} <= set(c["resources"])
    for variant, dep in deployments().items():
        c = container(dep)
        pod = dep["spec"]["template"]["spec"]
        model_path = effective_env(dep)["FMLC_MODEL_PATH"]
        mount = next(m for m in c["volumeMounts"] if model_path.startswith(m["mountPath"] + "/"))
        assert mount["readOnly"] is True and model_path.endswith("/current"), variant
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["persistentVolumeClaim"]["readOnly"] is True
        rules = next(m for m in c["volumeMounts"] if effective_env(dep)["FMLC_ALERT_RULES"].startswith(m["mountPath"]))
        assert next(v for v in pod["volumes"] if v["name"] == rules["name"])["configMap"]["name"] == render.RULES_CM


def test_gpu_variant_asks_for_a_gpu_node() -> None:
    gpu = deployments()["gpu"]
    pod = gpu["spec"]["template"]["spec"]
    assert container(gpu)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    env = effective_env(gpu)
    assert env["FMLC_DEVICE"] == "cuda" and int(env["FMLC_BATCH_SIZE"]) > int(configmap_env()["FMLC_BATCH_SIZE"])
    assert container(gpu)["image"].endswith("-cuda")
    cpu = deployments()["cpu"]
    assert "nvidia.com/gpu" not in container(cpu)["resources"]["limits"] and "nodeSelector" not in cpu["spec"][
        "template"]["spec"]


def test_rollouts_never_drop_below_the_running_replicas() -> None:
    pdb = one("base/pdb.yaml", "PodDisruptionBudget")
    for variant, dep in deployments().items():
        rolling = dep["spec"]["strategy"]["rollingUpdate"]
        assert dep["spec"]["strategy"]["type"] == "RollingUpdate" and rolling["maxUnavailable"] == 0, variant
        assert pdb["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        assert "replicas" not in dep["spec"], "the autoscaler owns the replica count; apply would reset it"
    for scaler, low in ((one("autoscaling/hpa.yaml", "HorizontalPodAutoscaler"), "minReplicas"),
                        (one("autoscaling/keda-scaledobject.yaml", "ScaledObject"), "minReplicaCount")):
        # A node drain may take one pod while another keeps consuming.
        assert scaler["spec"][low] > pdb["spec"]["maxUnavailable"]


def test_replicas_never_exceed_the_input_partitions() -> None:
    partitions = int(topic_job_env()["FMLC_PARTITIONS"])
    hpa = one("autoscaling/hpa.yaml", "HorizontalPodAutoscaler")
    keda = one("autoscaling/keda-scaledobject.yaml", "ScaledObject")
    assert hpa["spec"]["maxReplicas"] <= partitions
    assert keda["spec"]["maxReplicaCount"] <= partitions
    assert keda["spec"]["triggers"][0]["metadata"]["allowIdleConsumers"] == "false"
    assert hpa["spec"]["minReplicas"] == keda["spec"]["minReplicaCount"]
    # Both autoscalers aim at the same lag per replica, on the worker's own group and topic.
    lag = hpa["spec"]["metrics"][0]["external"]
    trigger = keda["spec"]["triggers"][0]["metadata"]
    assert lag["target"]["averageValue"] == trigger["lagThreshold"]
    env = configmap_env()
    assert lag["metric"]["selector"]["matchLabels"]["topic"] == env["FMLC_INPUT_TOPIC"] == trigger["topic"]
    assert trigger["consumerGroup"] == env["FMLC_GROUP_ID"]
    assert trigger["bootstrapServers"] == env["FMLC_BOOTSTRAP_SERVERS"] == topic_job_env()["BOOTSTRAP_SERVERS"]
    for target in (hpa["spec"]["scaleTargetRef"], keda["spec"]["scaleTargetRef"]):
        assert target["name"] == deployments()["cpu"]["metadata"]["name"]


def test_podmonitor_gives_the_job_label_the_alert_rules_select() -> None:
    monitor = one("base/podmonitor.yaml", "PodMonitor")
    for dep in deployments().values():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        job = labels[monitor["spec"]["jobLabel"]]
        rules = (ROOT / "deploy" / "prometheus" / "rules.yml").read_text()
        assert f'up{{job="{job}"}}' in rules


def test_create_topics_job_passes_replication_and_client_config(tmp_path: Path) -> None:
    stub = tmp_path / "kafka-topics.sh"
    calls = tmp_path / "calls"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    stub.chmod(0o755)
    props = tmp_path / "client.properties"
    props.write_text("security.protocol=SASL_SSL\n")
    env = {"PATH": "/usr/bin:/bin", "KAFKA_TOPICS": str(stub), **topic_job_env(),
           "ALERT_RULES": str(ROOT / "deploy" / "alert_rules.yaml"), "COMMAND_CONFIG": str(props)}
    res = subprocess.run(["sh", str(ROOT / "deploy" / "kafka" / "create-topics.sh")], env=env, capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    lines = calls.read_text().splitlines()
    creates = [line.split() for line in lines if "--create" in line]
    assert creates and all(a[a.index("--replication-factor") + 1] == env["FMLC_REPLICATION"] for a in creates)
    assert all(f"--command-config {props}" in line for line in lines)
    inputs = [a for a in creates if a[a.index("--topic") + 1] == configmap_env()["FMLC_INPUT_TOPIC"]]
    assert inputs[0][inputs[0].index("--partitions") + 1] == env["FMLC_PARTITIONS"]

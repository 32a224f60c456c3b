"""deploy/k8s: every manifest is valid Kubernetes and agrees with the code.

Validation is offline: kubernetes-validate ships the JSON schemas of each Kubernetes
version inside its package, and the network is blocked while it runs, so a schema
fetched at run time would fail the test instead of passing silently. Nothing here
skips: a validator that cannot run is a failure.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kv
from typer.main import get_command

from pipeline.bootstrap.settings import from_env
from pipeline.cli import app as cli_app
from pipeline.config import CONFIGMAP, SECRET, SOURCES, load_settings
from pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deploy" / "k8s"
# The newest Kubernetes the installed kubernetes-validate has schemas for (1.37.0).
KUBERNETES_VERSION = "1.37"
# The files whose quoted PIPELINE_* names are the variables the processes read.
ENV_READERS = (
    "pipeline/config.py",
    "pipeline/bootstrap/settings.py",
    "pipeline/app.py",
    "pipeline/security.py",
)
SCHEMALESS_KINDS = frozenset({"Kustomization"})
OWNER_SECRET = "pipeline-owner-secrets"

Manifest = dict[str, Any]


def _load(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> list[tuple[str, Manifest]]:
    return [
        (path.name, doc)
        for path in sorted(K8S.glob("*.yaml"))
        for doc in _load(path)
        if doc["kind"] not in SCHEMALESS_KINDS
    ]


MANIFESTS = _manifests()


def _one(kind: str, name: str) -> Manifest:
    found = [m for _, m in MANIFESTS if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name} in {K8S}, found {len(found)}"
    return found[0]


def _pod_specs() -> Iterator[tuple[str, Manifest]]:
    for _, m in MANIFESTS:
        if m["kind"] in {"StatefulSet", "Deployment", "Job"}:
            yield f"{m['kind']}/{m['metadata']['name']}", m["spec"]["template"]["spec"]


def _containers() -> Iterator[tuple[str, Manifest]]:
    for where, spec in _pod_specs():
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield f"{where}/{container['name']}", container


def _env(container: Manifest, name: str) -> Manifest:
    entries: list[Manifest] = [e for e in container.get("env", []) if e["name"] == name]
    assert len(entries) == 1, f"expected one env entry {name}, found {len(entries)}"
    return entries[0]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access during offline validation: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_the_validator_ships_the_schemas_of_the_pinned_version() -> None:
    shipped = {kv.major_minor(v) for v in kv.all_versions()}
    assert KUBERNETES_VERSION in shipped, (
        f"kubernetes-validate {kv.__version__} has no schemas for Kubernetes "
        f"{KUBERNETES_VERSION} (it has {sorted(shipped)}): upgrade it or change the pin"
    )


def test_the_manifests_cover_every_kind() -> None:
    kinds = {m["kind"] for _, m in MANIFESTS}
    expected = {"ConfigMap", "Secret", "Service", "PodDisruptionBudget", "Job", "NetworkPolicy"}
    assert kinds >= expected | {"StatefulSet", "Deployment"}


@pytest.mark.parametrize(
    "manifest",
    [m for _, m in MANIFESTS],
    ids=[f"{name}:{m['kind']}/{m['metadata']['name']}" for name, m in MANIFESTS],
)
@pytest.mark.usefixtures("no_network")
def test_manifest_is_valid_kubernetes_offline_and_strict(manifest: Manifest) -> None:
    try:
        version = kv.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kv.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"invalid against Kubernetes {exc.version}: {path}: {exc.message}")
    except (kv.SchemaNotFoundError, kv.VersionNotSupportedError, kv.InvalidSchemaError) as exc:
        pytest.fail(f"could not validate: {exc.message}")
    assert version == KUBERNETES_VERSION


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    (kustomization,) = _load(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # Applying the template would overwrite the real Secret with placeholders.
    assert set(kustomization["resources"]) == files - {"secret.yaml"}
    assert len(kustomization["resources"]) == len(set(kustomization["resources"]))
    images = {image["name"] for image in kustomization["images"]}
    used = {c["image"].split(":")[0].split("@")[0] for _, c in _containers()}
    assert used == images == {"pipeline"}


def test_every_component_label_selects_an_apply_step() -> None:
    # docs/operations.md applies the kustomization component by component.
    steps = {"config", "migrate", "stream", "worker"}
    for name, m in MANIFESTS:
        assert m["metadata"]["labels"]["app.kubernetes.io/component"] in steps, name


def test_statefulset_runs_the_reader_and_agents_with_a_volume_per_replica() -> None:
    sts = _one("StatefulSet", "pipeline")
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["run"]
    assert spec["replicas"] >= 2  # one reads, the others wait to take over the slot
    headless = _one("Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == spec["selector"]["matchLabels"]

    (claim,) = spec["volumeClaimTemplates"]
    data_dir = _env(container, "PIPELINE_DATA_DIR")["value"]
    assert data_dir == "/var/lib/pipeline"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == data_dir

    instance = _env(container, "PIPELINE_INSTANCE_ID")
    assert instance["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}

    (port,) = container["ports"]
    web_port = int(_one("ConfigMap", CONFIGMAP)["data"]["PIPELINE_WEB_PORT"])
    assert port["containerPort"] == web_port == 6066
    probes = {kind: container[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["port"] in (port["name"], port["containerPort"])

    terms = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms[0]["topologyKey"] == "kubernetes.io/hostname"
    assert pod["terminationGracePeriodSeconds"] >= 30


def test_worker_gets_time_to_finish_its_activities() -> None:
    deployment = _one("Deployment", "pipeline-worker")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["worker"]
    assert deployment["spec"]["replicas"] == 2
    grace = float(_one("ConfigMap", CONFIGMAP)["data"]["PIPELINE_WORKER_GRACEFUL_SHUTDOWN_S"])
    assert pod["terminationGracePeriodSeconds"] > grace


def test_migrate_job_runs_once() -> None:
    job = _one("Job", "pipeline-migrate")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["migrate"]
    assert pod["restartPolicy"] == "Never"


def test_every_container_command_is_a_cli_command() -> None:
    commands = set(get_command(cli_app).commands)  # type: ignore[attr-defined]
    for where, container in _containers():
        assert container["args"][0] in commands, f"{where}: `pipeline {container['args'][0]}`"


def test_pods_run_as_non_root_on_a_read_only_root_filesystem() -> None:
    for where, spec in _pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] == 10001, where  # the Dockerfile's user
    for where, container in _containers():
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, where
        assert security["allowPrivilegeEscalation"] is False, where
        assert "memory" in container["resources"]["limits"], where


def test_env_comes_only_from_the_pipeline_configmap_and_secret() -> None:
    for where, container in _containers():
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef") or source.get("secretRef")
            assert ref is not None, where
            expected = CONFIGMAP if "configMapRef" in source else SECRET
            assert ref["name"] == expected, where
        for entry in container.get("env", []):
            value_from = entry.get("valueFrom", {})
            if "configMapKeyRef" in value_from:
                assert value_from["configMapKeyRef"]["name"] == CONFIGMAP, where
            if "secretKeyRef" in value_from:
                # The schema owner's DSN is only the migrate Job's (docs/security.md).
                allowed = {SECRET, OWNER_SECRET} if "pipeline-migrate" in where else {SECRET}
                assert value_from["secretKeyRef"]["name"] in allowed, where
            assert set(value_from) <= {"configMapKeyRef", "secretKeyRef", "fieldRef"}, where
    assert {m["metadata"]["name"] for _, m in MANIFESTS if m["kind"] == "ConfigMap"} == {CONFIGMAP}
    assert {m["metadata"]["name"] for _, m in MANIFESTS if m["kind"] == "Secret"} == {
        SECRET,
        OWNER_SECRET,
    }


def _names_the_code_reads() -> set[str]:
    names: set[str] = set()
    for relative in ENV_READERS:
        names |= set(re.findall(r"[\"'](PIPELINE_[A-Z0-9_]+)[\"']", (REPO / relative).read_text()))
    return names


def test_every_variable_in_the_manifests_is_one_the_code_reads() -> None:
    read = _names_the_code_reads()
    assert {"PIPELINE_DATABASE_URL", "PIPELINE_INSTANCE_ID", "PIPELINE_SMTP_HOST"} <= read
    used = set(_one("ConfigMap", CONFIGMAP)["data"]) | set(_one("Secret", SECRET)["stringData"])
    for _, container in _containers():
        used |= {entry["name"] for entry in container.get("env", [])}
        for entry in container.get("env", []):
            key_ref = entry.get("valueFrom", {})
            for ref in (key_ref.get("configMapKeyRef"), key_ref.get("secretKeyRef")):
                if ref is not None:
                    used.add(ref["key"])
    assert used - read == set(), f"variables no code reads (renamed?): {sorted(used - read)}"


def _secret_names_per_the_code() -> set[str]:
    names = {name for name, source in SOURCES.items() if source.startswith("Secret")}
    try:
        from_env({"PIPELINE_DNS_PROVIDER": "cloudflare", "PIPELINE_SMTP_USERNAME": "u"})
    except ConfigError as exc:
        for line in str(exc).splitlines():
            if "(Secret)" in line:
                names.add(re.findall(r"PIPELINE_[A-Z0-9_]+", line)[0])
    else:
        pytest.fail("the worker accepted a configuration without its secrets")
    return names


def test_secrets_live_in_the_secret_and_nowhere_else() -> None:
    secrets = _secret_names_per_the_code()
    assert secrets >= {
        "PIPELINE_DATABASE_URL",
        "PIPELINE_CLOUDFLARE_API_TOKEN",
        "PIPELINE_SMTP_PASSWORD",
    }
    config = set(_one("ConfigMap", CONFIGMAP)["data"])
    secret = set(_one("Secret", SECRET)["stringData"])
    assert secrets <= secret
    assert config & secrets == set()
    # A name in both would be decided silently by the order of envFrom.
    assert config & secret == set()


def test_the_secret_templates_placeholders_are_refused_by_the_codes_validation() -> None:
    env = {**_one("ConfigMap", CONFIGMAP)["data"], **_one("Secret", SECRET)["stringData"]}
    with pytest.raises(ConfigError, match=r"PIPELINE_DATABASE_URL .*placeholder"):
        load_settings(env)


def _filled_in(values: dict[str, str]) -> dict[str, str]:
    """The template with its placeholders replaced, as an operator would."""
    return {k: re.sub(r"replace-(me|with-the-zone-id)", "s3cr3t", v) for k, v in values.items()}


def test_the_shipped_configuration_passes_the_codes_validation() -> None:
    env = _filled_in(
        {**_one("ConfigMap", CONFIGMAP)["data"], **_one("Secret", SECRET)["stringData"]}
    )
    settings = load_settings(env)  # a pooler DSN or a bad value would raise ConfigError
    assert settings.topic_replication_factor == 3
    assert settings.web_port == 6066
    worker = from_env(env)
    assert worker.temporal_address == settings.temporal_address
    assert worker.task_queue == settings.temporal_task_queue


# ---- issue 15 item 9: immutable images, per-pod metrics, a NetworkPolicy ----------------

IMMUTABLE_TAG = re.compile(r"^(\d+\.\d+\.\d+([.-][0-9A-Za-z.]+)?|[0-9a-f]{7,40})$")


def test_no_image_is_latest_and_the_pinned_tag_is_immutable() -> None:
    (kustomization,) = _load(K8S / "kustomization.yaml")
    (image,) = kustomization["images"]
    digest = str(image.get("digest", ""))
    tag = str(image.get("newTag", ""))
    assert digest or tag, "kustomization.yaml must pin the image (newTag or digest)"
    assert tag != "latest"
    if digest:
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), digest
    else:
        assert IMMUTABLE_TAG.match(tag), f"{tag!r} is not a version, a commit or a digest"
    for where, container in _containers():
        # The manifests leave the tag to the kustomization: never a tag of their own.
        assert container["image"] == "pipeline", where
        if container.get("imagePullPolicy", "IfNotPresent") == "IfNotPresent":
            assert "latest" not in container["image"], where


def test_the_web_port_follows_pipeline_web_port_everywhere() -> None:
    web_port = int(_one("ConfigMap", CONFIGMAP)["data"]["PIPELINE_WEB_PORT"])
    sts = _one("StatefulSet", "pipeline")
    template = sts["spec"]["template"]
    (container,) = template["spec"]["containers"]
    (port,) = container["ports"]
    assert port["containerPort"] == web_port
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(web_port)
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[kind]["httpGet"]["port"] == port["name"], kind
    for name in ("pipeline", "pipeline-metrics"):
        (service_port,) = _one("Service", name)["spec"]["ports"]
        assert service_port["targetPort"] == port["name"], name
        assert service_port["port"] == web_port, name


def test_metrics_are_scraped_per_pod_not_through_one_cluster_ip() -> None:
    for _, m in MANIFESTS:
        if m["kind"] == "Service":
            assert m["spec"].get("clusterIP") == "None", m["metadata"]["name"]
    metrics = _one("Service", "pipeline-metrics")
    assert (
        metrics["spec"]["selector"]
        == _one("StatefulSet", "pipeline")["spec"]["selector"]["matchLabels"]
    )


def test_network_policies_admit_only_the_web_port_of_the_stream_pods() -> None:
    stream = _one("NetworkPolicy", "pipeline-stream")
    assert (
        stream["spec"]["podSelector"]["matchLabels"]
        == _one("StatefulSet", "pipeline")["spec"]["selector"]["matchLabels"]
    )
    (rule,) = stream["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": "web"}]
    closed = _one("NetworkPolicy", "pipeline-no-ingress")
    assert closed["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in closed["spec"]  # no rule: nothing may connect
    values = {e["key"]: set(e["values"]) for e in closed["spec"]["podSelector"]["matchExpressions"]}
    assert values["app.kubernetes.io/component"] == {"worker", "migrate"}

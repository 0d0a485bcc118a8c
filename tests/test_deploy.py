"""Tests for deploy/: alert rules (promtool), dashboard, compose, Kubernetes,
Dockerfile, systemd unit and the gunicorn set-up, validated with real tools.

No Docker engine or Kubernetes cluster runs here: images are not built and
manifests are not applied. What is checked is everything short of that:
schemas, linters, promtool rule unit tests, and gunicorn with the deployment's
own config serving the real app on a loopback port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from apiserver import free_port
from compose_spec import PyCompose

from airctrl.config import Settings, load_settings
from airctrl.metrics import exported_sample_names

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "airctrl.json"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent

#: Series Prometheus makes itself; alert rules may use them, dashboards do not.
PROMETHEUS_BUILTIN = frozenset({"up"})

_PROMQL_WORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        "le",
    }
)


def metric_names_in(expr: str) -> set[str]:
    """Return the metric names a PromQL expression (or Grafana query) reads.

    Strings, label matchers, range selectors, grouping clauses, Grafana
    variables and numbers are removed first; what remains and is not a
    function call or a PromQL keyword is a metric name.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, is_call = match.group(1), match.group(2)
        if not is_call and word.lower() not in _PROMQL_WORDS:
            names.add(word)
    return names


def _run(
    *argv: str | Path, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- Prometheus ---------------------------------------------------------------------


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    result = _run("promtool", "test", "rules", "alerts_test.yml", cwd=PROMETHEUS)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        pytest.param(
            "rate(airctrl_frames_processed_total[5m])) < 10",
            "rate(airctrl_frames_processed_total[5m])) < 1",
            id="fps-threshold",
        ),
        pytest.param("          > 0.5\n", "          > 0.7\n", id="failure-ratio"),
        pytest.param(
            'state=~"lost|reconnecting|failed"', 'state=~"failed"', id="outage-states"
        ),
    ],
)
def test_promtool_tests_fail_when_a_rule_is_broken(
    tmp_path: Path, original: str, broken: str
) -> None:
    rules = (PROMETHEUS / "alerts.yml").read_text(encoding="utf-8")
    assert original in rules
    (tmp_path / "alerts.yml").write_text(
        rules.replace(original, broken, 1), encoding="utf-8"
    )
    shutil.copy(PROMETHEUS / "alerts_test.yml", tmp_path)

    result = _run("promtool", "test", "rules", "alerts_test.yml", cwd=tmp_path)

    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_prometheus_config_and_rules_pass_promtool_check() -> None:
    result = _run("promtool", "check", "config", "prometheus.yml", cwd=PROMETHEUS)

    assert result.returncode == 0, result.stdout + result.stderr


def _alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_alerts_cover_the_required_conditions() -> None:
    names = {rule["alert"] for rule in _alert_rules()}

    assert {
        "AirctrlLowFps",
        "AirctrlFaceDetectionFailing",
        "AirctrlLowConfidence",
        "AirctrlSourceDown",
    } <= names
    assert all(
        rule["labels"]["severity"] in {"warning", "critical"} for rule in _alert_rules()
    )


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        pytest.param(
            'sum by (source) (rate(airctrl_fps_typo{job=~"$job"}[5m])) < 10',
            {"airctrl_fps_typo"},
            id="typo-inside-functions",
        ),
        pytest.param(
            "histogram_quantile(0.95, sum by (le) (rate(a_bucket[5m]))) / b",
            {"a_bucket", "b"},
            id="two-names-grouping-dropped",
        ),
        pytest.param(
            'label_values(airctrl_x_total{job=~"$job"}, instance)',
            {"airctrl_x_total", "instance"},
            id="grafana-label-values",
        ),
        pytest.param(
            "x and on (source) min_over_time(y[5m]) == 1", {"x", "y"}, id="set-ops"
        ),
    ],
)
def test_metric_name_extraction_finds_every_name(expr: str, expected: set[str]) -> None:
    assert metric_names_in(expr) == expected


def test_every_metric_in_alert_rules_is_exported_by_the_code() -> None:
    exported = exported_sample_names() | PROMETHEUS_BUILTIN
    used = {name for rule in _alert_rules() for name in metric_names_in(rule["expr"])}

    assert used and used <= exported, sorted(used - exported)


# --- Grafana --------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _panel_queries(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def _variable_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            queries.append(
                re.sub(r",\s*\w+\)\s*$", ")", text)
            )  # drop the label argument
    return queries


def test_every_metric_in_the_dashboard_is_exported_by_the_code() -> None:
    dashboard = _dashboard()
    exported = exported_sample_names()
    used = {
        name
        for expr in _panel_queries(dashboard) + _variable_queries(dashboard)
        for name in metric_names_in(expr)
    }

    assert len(used) >= 10
    assert used <= exported, sorted(used - exported)


def test_dashboard_shows_each_required_topic() -> None:
    dashboard = _dashboard()
    text = " ".join(_panel_queries(dashboard))
    wanted = [
        "airctrl_frames_processed_total",  # FPS
        "airctrl_frames_per_second_bucket",  # slow stretches of FPS
        "airctrl_frame_processing_seconds_bucket",  # latency
        "airctrl_emotions_detected_total",  # emotions over time
        "airctrl_emotion_confidence_sum",  # confidence
        "airctrl_face_detection_failures_total",  # failures
        "airctrl_camera_connected",  # camera state
        "airctrl_http_requests_total",  # HTTP
        "airctrl_http_request_duration_seconds_bucket",
    ]

    assert [name for name in wanted if name not in text] == []


def test_dashboard_panels_have_unique_ids_and_use_the_datasource_variable() -> None:
    panels = _dashboard()["panels"]
    ids = [panel["id"] for panel in panels]

    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


def test_grafana_provisioning_matches_dashboard_and_compose_mounts() -> None:
    datasources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text(
            encoding="utf-8"
        )
    )
    providers = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/airctrl.yml").read_text(
            encoding="utf-8"
        )
    )
    compose = _compose()
    mounts = compose["services"]["grafana"]["volumes"]
    default_uid = next(
        v["current"]["value"]
        for v in _dashboard()["templating"]["list"]
        if v["name"] == "datasource"
    )

    assert datasources["datasources"][0]["uid"] == default_uid
    assert (
        f"./grafana/dashboards:{providers['providers'][0]['options']['path']}:ro"
        in mounts
    )
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


# --- every YAML file ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, id=str(p.relative_to(DEPLOY)))
        for p in sorted(DEPLOY.rglob("*.y*ml"))
    ],
)
def test_every_yaml_file_parses(path: Path) -> None:
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))

    assert documents and all(isinstance(doc, dict) for doc in documents)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(DEPLOY / "compose" / "config.yaml", id="compose-config"),
        pytest.param(K8S / "configmap.yaml", id="k8s-configmap"),
    ],
)
def test_deployment_settings_are_valid_airctrl_settings(
    path: Path, tmp_path: Path
) -> None:
    if path.name == "configmap.yaml":
        content = yaml.safe_load(path.read_text(encoding="utf-8"))["data"][
            "config.yaml"
        ]
        path = tmp_path / "config.yaml"
        path.write_text(content, encoding="utf-8")

    settings = load_settings(path, environ={})

    assert isinstance(settings, Settings)
    assert settings.server.host == "0.0.0.0" and settings.metrics.enabled


# --- Kubernetes -----------------------------------------------------------------------


def _k8s_documents() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
    ]


@pytest.mark.parametrize("version", ["1.29.0", kubernetes_validate.latest_version()])
def test_kubernetes_manifests_validate_strictly_against_schemas(version: str) -> None:
    for document in _k8s_documents():
        kubernetes_validate.validate(document, version, strict=True)


def test_kubernetes_validation_rejects_a_misspelt_field() -> None:
    deployment = next(
        d for d in _k8s_documents() if d["metadata"]["name"] == "airctrl-api"
    )
    deployment = json.loads(json.dumps(deployment))
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            deployment, kubernetes_validate.latest_version(), strict=True
        )


def _kinds() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in _k8s_documents()}


def test_kubernetes_set_has_api_redis_config_and_autoscaler() -> None:
    assert set(_kinds()) >= {
        ("Deployment", "airctrl-api"),
        ("Service", "airctrl-api"),
        ("ConfigMap", "airctrl-config"),
        ("HorizontalPodAutoscaler", "airctrl-api"),
        ("Deployment", "airctrl-redis"),
        ("Service", "airctrl-redis"),
    }


def test_api_pods_probe_health_and_readiness_and_set_resources() -> None:
    kinds = _kinds()
    pod = kinds[("Deployment", "airctrl-api")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(container["resources"]) == {"requests", "limits"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {
        "name": "PROMETHEUS_MULTIPROC_DIR",
        "value": "/tmp/airctrl-metrics",
    } in container["env"]


def test_selectors_and_references_match_between_manifests() -> None:
    kinds = _kinds()
    for name in ("airctrl-api", "airctrl-redis"):
        labels = kinds[("Deployment", name)]["spec"]["template"]["metadata"]["labels"]
        assert kinds[("Service", name)]["spec"]["selector"].items() <= labels.items()
    hpa = kinds[("HorizontalPodAutoscaler", "airctrl-api")]["spec"]
    volumes = kinds[("Deployment", "airctrl-api")]["spec"]["template"]["spec"][
        "volumes"
    ]

    assert ("Deployment", hpa["scaleTargetRef"]["name"]) in kinds
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert {"name": "airctrl-config"} == {
        "name": next(v["configMap"]["name"] for v in volumes if "configMap" in v)
    }
    config = yaml.safe_load(
        kinds[("ConfigMap", "airctrl-config")]["data"]["config.yaml"]
    )
    assert config["storage"]["redis_url"].startswith("redis://airctrl-redis:")


# --- Dockerfile -----------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    result = _run(
        BIN / "hadolint", "--failure-threshold", "info", DEPLOY / "Dockerfile"
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_instruction(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN cd /tmp && pip install x\n", encoding="utf-8"
    )

    assert _run(BIN / "hadolint", bad).returncode != 0


def test_dockerfile_is_slim_non_root_with_model_and_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    final_stage = text.rsplit("\nFROM ", 1)[1]
    user = re.search(r"^USER (\S+)", final_stage, re.MULTILINE)

    assert final_stage.startswith("python:3.11-slim")
    assert user is not None and user.group(1).split(":")[0] not in {"0", "root"}
    assert re.search(r"^RUN airctrl assets fetch$", final_stage, re.MULTILINE)
    assert "HEALTHCHECK" in final_stage and "/healthz" in final_stage
    assert final_stage.index("USER") < final_stage.index("RUN airctrl assets fetch")


# --- docker compose -------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    )
    return data


def test_compose_file_parses_under_the_compose_spec() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")

    compose = PyCompose.from_yaml(text)

    assert set(compose.service_names()) == {
        "api",
        "runner",
        "redis",
        "prometheus",
        "grafana",
    }


def test_compose_spec_parser_rejects_an_unknown_service_key() -> None:
    with pytest.raises(ValueError):
        PyCompose.from_yaml("services:\n  api:\n    image: x\n    helthcheck: {}\n")


def test_compose_references_resolve() -> None:
    compose = _compose()
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], (
                    f"{name} uses undeclared volume {source}"
                )

    assert (
        "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro"
        in services["prometheus"]["volumes"]
    )
    assert services["api"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (
        DEPLOY / services["api"]["build"]["context"] / "deploy" / "Dockerfile"
    ).exists()


# --- systemd --------------------------------------------------------------------------


def test_systemd_unit_verifies_and_restarts_on_failure(tmp_path: Path) -> None:
    text = (DEPLOY / "systemd" / "airctrl-run.service").read_text(encoding="utf-8")
    # verify checks the ExecStart binary exists: point it at this checkout's.
    local = tmp_path / "airctrl-run.service"
    local.write_text(
        text.replace("/opt/airctrl/venv/bin/airctrl", str(BIN / "airctrl")),
        encoding="utf-8",
    )

    result = _run("systemd-analyze", "verify", local)

    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    assert re.search(r"^Restart=on-failure$", text, re.MULTILINE)
    assert re.search(
        r"^ExecStart=\S+/airctrl .*\brun\b.*--headless", text, re.MULTILINE
    )


# --- gunicorn -------------------------------------------------------------------------


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.status, reply.read().decode()


@pytest.fixture()
def gunicorn_api(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """The API under gunicorn with deploy/gunicorn.conf.py, 2 workers, on loopback."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "server: {require_auth: false}\n"
        "storage: {backend: none}\n"
        "logging: {format: json}\n",
        encoding="utf-8",
    )
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale")  # must be cleared
    port = free_port()
    env = {
        **os.environ,
        "AIRCTRL_CONFIG": str(config),
        "AIRCTRL_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "--config", str(DEPLOY / "gunicorn.conf.py")],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}", metrics_dir, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(base: str, process: subprocess.Popen[bytes], workers: int) -> int:
    """Poll /healthz until every worker answered once; return the polls made."""
    deadline = time.monotonic() + 90
    polls = 0
    while time.monotonic() < deadline:
        assert process.poll() is None, "gunicorn exited"
        try:
            _get(base + "/healthz")
            polls += 1
        except OSError:
            time.sleep(0.3)
            continue
        ready = len([p for p in _worker_pids(process) if p])
        if ready >= workers:
            return polls
    raise AssertionError("gunicorn workers did not come up in 90 s")


def _worker_pids(process: subprocess.Popen[bytes]) -> list[int]:
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def _healthz_count(body: str) -> float:
    pattern = (
        r"^airctrl_http_requests_total"
        r'\{method="GET",route="/healthz",status="200"\} (\S+)$'
    )
    match = re.search(pattern, body, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _wait_count(base: str, expected: float) -> float:
    """Read the merged /healthz count until it reaches ``expected`` (or 10 s pass)."""
    deadline = time.monotonic() + 10
    count = 0.0
    while time.monotonic() < deadline:
        status, body = _get(base + "/metrics")
        assert status == 200
        count = _healthz_count(body)
        if count >= expected:
            break
        time.sleep(0.1)
    return count


def _writer_pids(metrics_dir: Path) -> set[int]:
    return {int(p.stem.split("_")[1]) for p in metrics_dir.glob("counter_*.db")}


@pytest.mark.slow
def test_gunicorn_workers_share_one_metrics_view_across_worker_restarts(
    gunicorn_api: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    base, metrics_dir, process = gunicorn_api
    polls = _wait_ready(base, process, workers=2)
    for _ in range(10):
        _get(base + "/healthz")
    # A worker counts a request just after answering it: wait for the count.
    assert _wait_count(base, polls + 10) == polls + 10
    served = _writer_pids(metrics_dir) & set(_worker_pids(process))
    assert not (metrics_dir / "counter_999999.db").exists()  # stale file cleared

    # Kill every worker that has answered, so the next answers come from a new
    # process: the merged count must include the dead workers' requests.
    for pid in served:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = _worker_pids(process)
        if len(pids) == 2 and not served & set(pids):
            break
        time.sleep(0.2)
    polls += _wait_ready(base, process, workers=2)
    for _ in range(10):
        _get(base + "/healthz")
    count = _wait_count(base, polls + 20)

    assert len(_worker_pids(process)) == 2 and not served & set(_worker_pids(process))
    assert len(_writer_pids(metrics_dir)) > len(served)  # a new process wrote too
    assert count == polls + 20


# --- docs --------------------------------------------------------------------------

DOCS = ROOT / "docs"


def _runbook_sections() -> dict[str, str]:
    text = (DOCS / "RUNBOOK.md").read_text(encoding="utf-8")
    parts = re.split(r"^## (\S+)\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("alert", sorted(rule["alert"] for rule in _alert_rules()))
def test_every_alert_has_a_runbook_section_saying_meaning_check_and_fix(
    alert: str,
) -> None:
    section = _runbook_sections().get(alert, "")
    rule = next(r for r in _alert_rules() if r["alert"] == alert)

    assert "**What it means.**" in section
    assert "**How to check.**" in section
    assert "**How to fix.**" in section
    assert rule["annotations"]["runbook"] == f"docs/RUNBOOK.md#{alert.lower()}"


def test_deployment_guide_says_plainly_that_no_docker_engine_ran_here() -> None:
    text = (DOCS / "DEPLOYMENT.md").read_text(encoding="utf-8")

    assert "no Docker engine" in text and "has **not** been built" in text


def test_settings_examples_in_the_deployment_guide_are_valid(tmp_path: Path) -> None:
    text = (DOCS / "DEPLOYMENT.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    assert blocks
    for number, block in enumerate(blocks):
        path = tmp_path / f"example{number}.yaml"
        path.write_text(block, encoding="utf-8")
        load_settings(path, environ={})


def test_every_exported_metric_is_described_in_the_runbook() -> None:
    from airctrl.metrics import REGISTRY

    text = (DOCS / "RUNBOOK.md").read_text(encoding="utf-8")
    families = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in REGISTRY.collect()
    }

    assert [name for name in sorted(families) if f"`{name}`" not in text] == []


def test_docker_build_context_keeps_every_file_the_dockerfile_copies() -> None:
    ignore = (
        (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    )
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copies = re.findall(
        r"^COPY (?!--from)(.+) \S+$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE
    )
    sources = [source for line in copies for source in line.split()]

    assert "*" in ignore  # everything else stays out of the context
    assert sources and [s for s in sources if s.rstrip("/") not in kept] == []
    assert all((ROOT / s).exists() for s in sources)


@pytest.mark.parametrize(
    ("content", "valid"),
    [
        pytest.param(None, True, id="our-compose-file"),
        pytest.param("services:\n  api:\n    image: x\n    helthcheck: {}\n", False,
                     id="misspelt-key-rejected"),
    ],
)  # fmt: skip
def test_compose_file_matches_the_compose_spec_json_schema(
    tmp_path: Path, content: str | None, valid: bool
) -> None:
    path = DEPLOY / "docker-compose.yml"
    if content is not None:
        path = tmp_path / "docker-compose.yml"
        path.write_text(content, encoding="utf-8")

    result = _run(
        BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", path
    )

    assert (result.returncode == 0) is valid, result.stdout + result.stderr

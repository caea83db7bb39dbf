"""The container alternative (GKE): `python -m gateway serve`, the Dockerfile and the Kubernetes manifest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from support import base_config, free_port, write_config

ROOT = Path(__file__).resolve().parents[2]


def _get(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_serve_answers_every_function_on_one_origin(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    config = write_config(tmp_path, base_config(database_url, public_url=f"http://127.0.0.1:{port}"))
    env = {**os.environ, "GATEWAY_CONFIG": str(config), "THREADS": "4"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline:
            try:
                status, _ = _get(base + "/readyz")
                break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
                time.sleep(0.2)
        assert status == 200
        for path, function in (
            ("/.well-known/oauth-authorization-server", "auth"),
            ("/v1/models", "messages"),
            ("/v1/organizations/spend_limits", "admin"),
            ("/_gateway/admin/readyz", "admin"),
            ("/_gateway/auth/healthz", "auth"),
        ):
            _, headers = _get(base + path)
            assert headers.get("x-gateway-function") == function, path
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_serve_refuses_an_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "gateway.yaml"
    bad.write_text("oidc: {}\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "9"],
        cwd=ROOT,
        env={**os.environ, "GATEWAY_CONFIG": str(bad)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "oidc.issuer" in result.stdout


def test_dockerfile_copies_what_exists_and_serves_the_one_origin() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    copies = re.findall(r"^COPY\s+(\S+)\s+\S+$", text, re.M)
    assert copies
    for source in copies:
        assert (ROOT / source).exists(), source
    assert {"requirements.txt", "common/", "functions/", "gateway/"} <= set(copies)
    assert 'CMD ["python", "-m", "gateway", "serve"]' in text
    assert re.search(r"^USER \d+", text, re.M), "the container must not run as root"


def test_kubernetes_manifest() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "gateway.yaml").read_text(encoding="utf-8")))
    by_kind = {doc["kind"]: doc for doc in docs}
    assert {"Deployment", "Service", "ServiceAccount", "Gateway", "HTTPRoute"} <= set(by_kind)
    account = by_kind["ServiceAccount"]
    assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].startswith("claude-gateway@")
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container.get("env", [])}
    assert "GATEWAY_CONFIG" in env and "THREADS" in env
    # Workload Identity only: no key files, no secrets mounted as credentials.
    text = yaml.safe_dump_all(docs)
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in text
    assert not any(v.get("secret") for v in pod.get("volumes", []))
    assert by_kind["Service"]["spec"]["selector"] == by_kind["Deployment"]["spec"]["selector"]["matchLabels"]
    assert by_kind["HealthCheckPolicy"]["spec"]["default"]["config"]["httpHealthCheck"]["requestPath"] == "/readyz"

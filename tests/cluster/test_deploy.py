"""deploy/ holds together: HAProxy accepts its config, the compose file's services are the ones the
proxy names, and the Kubernetes manifests probe the real endpoints and give a pod time to drain."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.cluster.proxy import DEPLOY_CONFIG, NAMES, haproxy_binary
from tests.support.procs import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"


def test_haproxy_accepts_the_shipped_config() -> None:
    done = subprocess.run([haproxy_binary(), "-c", "-f", str(DEPLOY_CONFIG)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr  # unresolvable compose names: warnings only


def test_compose_nodes_are_what_the_proxy_names() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "proxy", *NAMES} <= set(services)
    servers = re.findall(r"^\s+server (\S+) (\S+):(\d+)$", DEPLOY_CONFIG.read_text(), re.MULTILINE)
    assert {(name, host, port) for name, host, port in servers} == {(n, n, "8000") for n in NAMES}
    shared = None
    for name in NAMES:
        node = services[name]
        assert (
            node["build"]["dockerfile"] == "Dockerfile" and (DEPLOY / node["build"]["context"] / "Dockerfile").exists()
        )
        env = node["environment"]
        assert env["COZY_INTERNAL_URL"] == f"http://{name}:8000"  # where the others forward its calls
        storage = (env["DATABASE_URL"], env["REDIS_URL"])
        assert shared in (None, storage), "every node must share one PostgreSQL and one Redis"
        shared = storage
    assert "ENV COZY_HOST=0.0.0.0 COZY_PORT=8000" in (REPO_ROOT / "Dockerfile").read_text()
    mounts = services["proxy"]["volumes"]
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in mounts


def test_kubernetes_probes_and_drain() -> None:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    docs = [d for f in kustomization["resources"] for d in yaml.safe_load_all((DEPLOY / "k8s" / f).read_text())]
    kinds = {d["kind"]: d for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "Ingress", "PodDisruptionBudget"} <= set(kinds)
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
    assert refs == {kinds["ConfigMap"]["metadata"]["name"], "cozy-secrets"}
    # The pod gets preStop's sleep plus the server's own graceful shutdown plus the final flush.
    (sleep,) = [int(a) for a in container["lifecycle"]["preStop"]["exec"]["command"][1:]]
    serving = (REPO_ROOT / "cozy_http" / "serving.py").read_text()
    graceful = int(re.search(r"timeout_graceful_shutdown=(\d+)", serving)[1])
    flush = float(re.search(r"flush_on_stop_s[^\d]*([\d.]+)", (REPO_ROOT / "config" / "storage.yaml").read_text())[1])
    assert pod["terminationGracePeriodSeconds"] >= sleep + graceful + flush
    ports = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in kinds["Service"]["spec"]["ports"]} <= ports

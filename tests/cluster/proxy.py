"""A real HAProxy (Debian's `haproxy`) in front of test nodes, configured from deploy/haproxy.cfg.

The test config is the shipped one with only what a test needs changed: loopback addresses, fast
health checks (a killed node is out within half a second), no Docker DNS, and two test aids: every
response names the node that served it (`x-cozy-node`), and `x-cozy-test-node: <name>` pins a
request to one node (a call on node A and a text turn through node B). Routing rules (round robin
for HTTP, consistent hashing on `cozy_session_id` for WebSockets) are the shipped ones.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.procs import REPO_ROOT, ManagedProcess, free_port, start_process

DEPLOY_CONFIG = REPO_ROOT / "deploy" / "haproxy.cfg"
NODE_HEADER = "x-cozy-node"
PIN_HEADER = "x-cozy-test-node"
NAMES = ("cozy-a", "cozy-b")  # the server names in deploy/haproxy.cfg


def _sub(pattern: str, repl: str, text: str, count: int) -> str:
    """re.sub that insists on `count` matches: a changed deploy config must break loudly here."""
    out, n = re.subn(pattern, repl, text, flags=re.MULTILINE)
    assert n == count, f"deploy/haproxy.cfg: expected {count} match(es) of {pattern!r}, found {n}"
    return out


def proxy_config(port: int, nodes: dict[str, int]) -> str:
    """deploy/haproxy.cfg for 127.0.0.1:`port` in front of `nodes` ({server name: port})."""
    text = DEPLOY_CONFIG.read_text()
    text = _sub(r"^([ \t]+)maxconn \d+$", r"\1maxconn 2000", text, 1)  # within a test runner's FD limit
    text = _sub(r"^resolvers docker\n(?:[ \t]+.*\n)+", "", text, 1)
    text = _sub(r"^([ \t]+)default-server .*$", r"\1default-server check inter 250ms fall 1 rise 1", text, 1)
    text = _sub(r"^([ \t]+)bind :8080$", rf"\1bind 127.0.0.1:{port}", text, 1)
    for name, node_port in nodes.items():
        text = _sub(rf"^([ \t]+)server {name} {name}:8000$", rf"\1server {name} 127.0.0.1:{node_port}", text, 2)
    aids = [f"    http-response set-header {NODE_HEADER} %s"]
    aids += [f"    use-server {n} if {{ req.hdr({PIN_HEADER}) -m str {n} }}" for n in nodes]
    return _sub(r"^(backend \S+)$", "\\1\n" + "\n".join(aids), text, 2)


@dataclass
class Proxy:
    process: ManagedProcess
    root_url: str
    config: Path

    @property
    def ws_url(self) -> str:
        return self.root_url.replace("http://", "ws://")

    def stop(self) -> None:
        self.process.stop()


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    assert found, "haproxy is not installed (apt-get install haproxy; .ci/run installs it)"
    return found


def start_haproxy(nodes: dict[str, int], workdir: Path, timeout: float = 15) -> Proxy:
    """HAProxy in the foreground on a free port; returns once it routes to every node."""
    port = free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(proxy_config(port, nodes))
    binary = haproxy_binary()
    check = start_process([binary, "-c", "-f", str(config)], None)
    assert check.proc.wait(10) == 0, f"haproxy -c refused the test config:\n{check.output()}"
    check.stop()
    process = start_process([binary, "-db", "-f", str(config)], None)
    proxy = Proxy(process, f"http://127.0.0.1:{port}", config)
    try:
        wait_all_up(proxy, set(nodes), timeout)
    except BaseException:
        proxy.stop()
        raise
    return proxy


def wait_all_up(proxy: Proxy, names: set[str], timeout: float = 15) -> None:
    """Until round robin has answered from every node in `names` (the health checks passed)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while seen != names:
        assert proxy.process.proc.poll() is None, f"haproxy exited:\n{proxy.process.output()}"
        assert time.monotonic() < deadline, f"the proxy reached only {sorted(seen)}:\n{proxy.process.output()}"
        try:
            r = httpx.get(f"{proxy.root_url}/health", timeout=2)
            if r.status_code == 200:
                seen.add(r.headers[NODE_HEADER])
        except httpx.HTTPError:
            pass
        time.sleep(0.05)

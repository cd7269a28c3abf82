"""Checks of deploy/ that need no Docker engine.

- every Kubernetes manifest against the API schema (kubernetes-validate, strict); the
  ServiceMonitor CRD structurally; cross-references between them;
- compose.yaml: services, mounted files, ports that must agree with the front and Prometheus;
  `docker compose config -q` when that CLI plugin exists;
- the gateway configs and the dialplan ConfigMap through the gateway's own loaders;
- the Grafana dashboard queries only metrics the gateway exports;
- the Kamailio front: rendered from the front's template, `kamailio -c`, then a live run against
  two fake SIP nodes (dispatch, failover, 503 when no node is left, 403 for unknown sources,
  in-dialog routing).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.ops.kamailio_config import configmap_with, render_deploy_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KAMAILIO_CFG = DEPLOY / "kamailio" / "kamailio.cfg"
K8S_VERSION = "1.30.0"

# Metric families the gateway exports (counters gain _total, histograms _bucket/_sum/_count).
COUNTERS = {
    "gateway_calls", "gateway_invites_rejected", "gateway_dtmf_digits", "gateway_transfers",
    "gateway_rtp_frames", "gateway_playout_underruns", "gateway_dialplan_reload_errors",
    "gateway_worker_restarts", "gateway_front_bans", "gateway_front_requests_refused",
}
GAUGES = {"gateway_calls_active", "gateway_registration_up", "gateway_front_destination_up",
          "gateway_front_banned_sources"}
HISTOGRAMS = {"gateway_call_setup_seconds"}
SERIES = (
    GAUGES
    | {f"{name}_total" for name in COUNTERS}
    | {f"{name}{suffix}" for name in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
)
PROMQL_WORDS = {
    "sum", "avg", "min", "max", "count", "topk", "bottomk", "rate", "irate", "increase", "delta",
    "histogram_quantile", "clamp_min", "clamp_max", "abs", "absent", "changes", "resets", "time",
    "vector", "scalar", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
    "unless", "bool", "offset",
}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc
        for path in sorted(K8S.rglob("*.yaml")) for doc in _docs(path)
    }


def _dispatcher(text: str) -> list[tuple[str, dict[str, str]]]:
    """(uri, attrs) per destination line of a dispatcher.list."""
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            setid, uri, _flags, _priority, attrs = line.split()
            assert setid == "1", line
            out.append((uri, dict(item.split("=", 1) for item in attrs.split(";"))))
    return out


def _max_calls_built() -> int:
    text = (DEPLOY / "pjproject" / "config_site.h").read_text()
    return int(re.search(r"#define\s+PJSUA_MAX_CALLS\s+(\d+)", text).group(1))


# ---------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize("path", sorted(K8S.rglob("*.yaml")), ids=lambda p: str(p.relative_to(K8S)))
def test_k8s_manifest_is_valid(path: Path) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = _docs(path)
    assert docs
    for doc in docs:
        assert "namespace" not in doc["metadata"], "manifests stay namespace-agnostic"
        if doc["apiVersion"] == "monitoring.coreos.com/v1":
            _check_service_monitor(doc)
        else:
            kv.validate(doc, K8S_VERSION, strict=True)


def _check_service_monitor(doc: dict[str, Any]) -> None:
    assert doc["kind"] == "ServiceMonitor"
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    spec = doc["spec"]
    assert spec["selector"]["matchLabels"]
    assert spec["endpoints"]
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "relabelings",
                                 "metricRelabelings", "scheme", "honorLabels"}
        assert isinstance(endpoint["port"], str) and endpoint["path"].startswith("/")
        assert re.fullmatch(r"\d+[smh]", endpoint.get("interval", "30s"))


def test_k8s_gateway_drains_and_is_scraped() -> None:
    objs = _k8s_objects()
    sts = objs[("StatefulSet", "gateway")]
    service = objs[("Service", "gateway")]
    monitor = objs[("ServiceMonitor", "gateway")]
    config = yaml.safe_load(objs[("ConfigMap", "gateway-config")]["data"]["gateway.yaml"])
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]

    assert pod["terminationGracePeriodSeconds"] > config["drain_timeout"]
    assert "preStop" in container["lifecycle"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == config["metrics"]["port"]
    # Metrics have no authentication: bound to the node's address, never 0.0.0.0.
    assert config["metrics"]["address"] == "@HOST_IP@"
    env = {e["name"]: e for e in container["env"]}
    assert env["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    script = " ".join(container["args"])
    assert 's/@HOST_IP@/$HOST_IP/g' in script and "exec gateway run" in script
    assert ports["sip-udp"] == ports["sip-tcp"] == config["sip"]["port"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert pod.get("hostNetwork") is True  # RTP range on the node address (see gateway.yaml)

    assert service["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    for selector in (service["spec"]["selector"], sts["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    monitored = monitor["spec"]["selector"]["matchLabels"]
    assert monitored.items() <= service["metadata"]["labels"].items()
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports

    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
    assert set(mounts) <= set(volumes) | claims
    assert mounts["dialplans"]["mountPath"] == config["dialplans"]
    assert f"{mounts['config']['mountPath']}/gateway.yaml" in script
    assert ("ConfigMap", volumes["config"]["configMap"]["name"]) in objs
    assert ("ConfigMap", volumes["dialplans"]["configMap"]["name"]) in objs


def test_k8s_front_matches_repo_config_and_statefulset() -> None:
    objs = _k8s_objects()
    data = objs[("ConfigMap", "gateway-front")]["data"]
    assert data["kamailio.cfg"] == KAMAILIO_CFG.read_text(), (
        "deploy/k8s/front.yaml must carry deploy/kamailio/kamailio.cfg verbatim"
    )
    sts = objs[("StatefulSet", "gateway")]
    config = yaml.safe_load(objs[("ConfigMap", "gateway-config")]["data"]["gateway.yaml"])
    service = sts["spec"]["serviceName"]
    nodes = _dispatcher(data["dispatcher.list"])
    assert [uri for uri, _ in nodes] == [
        f"sip:{sts['metadata']['name']}-{i}.{service}:{config['sip']['port']}"
        for i in range(sts["spec"]["replicas"])
    ]
    assert len({attrs["duid"] for _, attrs in nodes}) == len(nodes)
    assert all(int(attrs["maxload"]) == config["calls_per_worker"] for _, attrs in nodes)
    front = objs[("Deployment", "gateway-front")]["spec"]["template"]["spec"]
    assert any(arg.startswith("CARRIER_NETS=") for arg in front["containers"][0]["args"])
    assert front["volumes"][0]["configMap"]["name"] == "gateway-front"


def _selects(policy: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    return policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_k8s_network_policies_open_each_port_to_its_peers_only() -> None:
    objs = _k8s_objects()
    gateway, front = objs[("NetworkPolicy", "gateway")], objs[("NetworkPolicy", "gateway-front")]
    sts = objs[("StatefulSet", "gateway")]
    front_pod = objs[("Deployment", "gateway-front")]["spec"]["template"]
    assert _selects(gateway, sts["spec"]["template"]["metadata"]["labels"])
    assert _selects(front, front_pod["metadata"]["labels"])
    assert not _selects(gateway, front_pod["metadata"]["labels"])
    for policy in (gateway, front):
        assert policy["spec"]["policyTypes"] == ["Ingress"]

    config = yaml.safe_load(objs[("ConfigMap", "gateway-config")]["data"]["gateway.yaml"])
    trunk_nets = {net for trunk in config["trunks"] for net in trunk["allow"]}
    args = front_pod["spec"]["containers"][0]["args"]
    carrier_nets = set(next(a for a in args if a.startswith("CARRIER_NETS="))
                       .split("=", 1)[1].strip('"').split(","))

    def rules(policy: dict[str, Any]) -> dict[tuple[int, str], list[dict[str, Any]] | None]:
        """(port, protocol) → the peers allowed to reach it (None: anyone)."""
        out: dict[tuple[int, str], list[dict[str, Any]] | None] = {}
        for rule in policy["spec"]["ingress"]:
            for port in rule["ports"]:
                out[(port["port"], port["protocol"])] = rule.get("from")
        return out

    worker = rules(gateway)
    sip, metrics = config["sip"]["port"], config["metrics"]["port"]
    for proto in ("UDP", "TCP"):
        assert {p["ipBlock"]["cidr"] for p in worker[(sip, proto)]} == trunk_nets
        edge = {p["ipBlock"]["cidr"] for p in rules(front)[(5060, proto)]}
        assert edge == carrier_nets | trunk_nets
    # Metrics only from the monitoring namespace; RTP (the configured range) from anyone.
    (peer,) = worker[(metrics, "TCP")]
    assert set(peer) == {"namespaceSelector"}
    rtp = next(p for r in gateway["spec"]["ingress"] for p in r["ports"] if "endPort" in p)
    start = config["sip"]["rtp_port_start"]
    assert (rtp["port"], rtp["endPort"]) == (start, start + config["sip"]["rtp_port_count"] - 1)
    assert [k for k, v in worker.items() if v is None] == [(start, "UDP")]


# ---------------------------------------------------------------- gateway configs


def _config_sources() -> Iterator[tuple[str, str]]:
    for path in (DEPLOY / "gateway.yaml", *sorted((DEPLOY / "compose").glob("*.yaml"))):
        yield str(path.relative_to(DEPLOY)), path.read_text()
    objs = _k8s_objects()
    yield "k8s/gateway-config.yaml", objs[("ConfigMap", "gateway-config")]["data"]["gateway.yaml"]


_CONFIGS = dict(_config_sources())


@pytest.mark.parametrize("name", list(_CONFIGS))
def test_gateway_config_loads(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = pytest.importorskip("gateway.config.settings")
    text = _CONFIGS[name]
    # Image paths → the repository's copies (what the Dockerfile puts there) and a scratch dir.
    for image_path, local in {
        "/etc/gateway/dialplans": ROOT / "dialplans",
        "/etc/gateway/codecs": ROOT / "codecs",
        "/var/lib/gateway": tmp_path / "lib",
        "/var/cache/gateway": tmp_path / "cache",
    }.items():
        text = text.replace(image_path, str(local))
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    monkeypatch.setenv("CARRIER_PASSWORD", "secret")
    settings = config.load_settings(path)
    assert 1 <= settings.calls_per_worker <= _max_calls_built()
    # /metrics has no authentication: loopback, or (k8s) the node's address put in at start.
    assert settings.metrics_address in ("127.0.0.1", "@HOST_IP@")


def test_k8s_dialplans_load(tmp_path: Path) -> None:
    dialplan = pytest.importorskip("gateway.dialplan")
    for key, text in _k8s_objects()[("ConfigMap", "gateway-dialplans")]["data"].items():
        (tmp_path / key).write_text(text)
    plans, errors = dialplan.load_dialplans(tmp_path)
    assert errors == []
    assert plans.default is not None


# ---------------------------------------------------------------- compose, Prometheus, image


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_references_and_ports() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"front", "node1", "node2", "prometheus", "grafana"}
    named_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in named_volumes, f"{name}: volume {source} not declared"

    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for group in job["static_configs"]
               for t in group["targets"]}
    front = _dispatcher((DEPLOY / "kamailio" / "dispatcher.list").read_text())
    rtp_ranges = []
    for name in ("node1", "node2"):
        node = services[name]
        mount = next(v for v in node["volumes"] if v.split(":")[1] == "/etc/gateway/gateway.yaml")
        config = yaml.safe_load((DEPLOY / mount.split(":")[0]).read_text())
        grace = int(node["stop_grace_period"].rstrip("s"))
        assert grace > config["drain_timeout"]
        assert f"127.0.0.1:{config['metrics']['port']}" in targets
        attrs = dict(front)[f"sip:127.0.0.1:{config['sip']['port']}"]
        assert int(attrs["maxload"]) == config["calls_per_worker"] <= _max_calls_built()
        start, count = config["sip"]["rtp_port_start"], config["sip"]["rtp_port_count"]
        rtp_ranges.append(range(start, start + count))
    assert not set(rtp_ranges[0]) & set(rtp_ranges[1]), "nodes on one host need distinct RTP ranges"

    # Nothing unauthenticated on a public address: Prometheus on loopback, Grafana on
    # GRAFANA_ADDR (loopback unless set).
    assert "--web.listen-address=127.0.0.1:9090" in services["prometheus"]["command"]
    assert services["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "${GRAFANA_ADDR:-127.0.0.1}"

    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/gateway.yaml").read_text())
    dashboards_dir = provider["providers"][0]["options"]["path"]
    assert any(v.endswith(f":{dashboards_dir}:ro") for v in services["grafana"]["volumes"])


def test_grafana_refuses_to_start_without_a_password() -> None:
    env = _compose()["services"]["grafana"]["environment"]
    # ${VAR:?message}: compose stops with the message when the variable is unset or empty.
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", env["GF_SECURITY_ADMIN_PASSWORD"])
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert not any("admin" == str(v).split(":-")[-1].rstrip("}") for v in env.values())


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return probe.returncode == 0


def test_docker_compose_config() -> None:
    if not _docker_compose_available():
        pytest.skip("docker compose CLI plugin not installed")
    compose = ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"]
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    refused = subprocess.run(compose, capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in refused.stderr
    result = subprocess.run(compose, capture_output=True, text=True, timeout=60,
                            env={**env, "GRAFANA_ADMIN_PASSWORD": "test-only"})
    assert result.returncode == 0, result.stderr


def test_k8s_scrape_config_alternative() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "k8s-scrape-config.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "endpoints"}]
    keeps = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert {"regex": "metrics", "action": "keep",
            "source_labels": ["__meta_kubernetes_endpoint_port_name"]} in keeps


def test_dockerfile_copies_existing_files() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    copies = re.findall(r"^COPY\s+(?!--)(.+)$", text, re.M)
    assert copies
    for line in copies:
        *sources, _dest = line.split()
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert re.search(r"^EXPOSE .*5060/udp.*5060/tcp.*9100/tcp", text, re.M)
    assert "--no-deps" in text and "pjsua2-*.whl" in text


# ---------------------------------------------------------------- Grafana


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    words = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr)
    return {w for w in words if w not in PROMQL_WORDS}


def test_dashboard_queries_known_metrics_only() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "gateway.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        match = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["definition"])
        assert match, variable["definition"]
        exprs.append(match.group(1))
    used: set[str] = set()
    for expr in exprs:
        names = _metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= SERIES, f"{expr!r} uses unknown {names - SERIES}"
        used |= names
    # Every family listed for the dashboard has a panel.
    families = {re.sub(r"(_total|_bucket|_sum|_count)$", "", n) for n in used}
    assert families >= (COUNTERS | GAUGES | HISTOGRAMS)
    datasource_uid = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )["datasources"][0]["uid"]
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {datasource_uid}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- Kamailio front

def test_kamailio_cfg_is_the_front_template_rendered_for_the_deploy() -> None:
    """deploy/kamailio/kamailio.cfg (and its copy in the front's ConfigMap) is written by
    `python -m gateway.ops.front --render-deploy`: one template for both fronts."""
    rendered = render_deploy_config()
    assert KAMAILIO_CFG.read_text() == rendered, (
        "deploy/kamailio/kamailio.cfg is not the rendered template: "
        "run python -m gateway.ops.front --render-deploy"
    )
    manifest = (K8S / "front.yaml").read_text()
    assert configmap_with(manifest, rendered) == manifest


kamailio_required = pytest.mark.skipif(
    shutil.which("kamailio") is None, reason="kamailio not installed"
)


def _defines(tmp: Path, dispatcher_list: Path, carrier_nets: str) -> list[str]:
    return [
        "-A", f'DISPATCHER_LIST="{dispatcher_list}"',
        "-A", f'CTL_SOCKET="unix:{tmp}/kamailio_ctl"',
        "-A", f'CARRIER_NETS="{carrier_nets}"',
    ]


@kamailio_required
@pytest.mark.parametrize("extra", [[], ["-A", "DROP_UNKNOWN_SOURCES"]], ids=["reject", "drop"])
def test_kamailio_cfg_syntax(tmp_path: Path, extra: list[str]) -> None:
    result = subprocess.run(
        ["kamailio", "-c", "-f", str(KAMAILIO_CFG),
         *_defines(tmp_path, DEPLOY / "kamailio" / "dispatcher.list", "198.51.100.0/24"), *extra],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "config file ok" in result.stderr


def _parse(data: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = data.decode().split("\r\n\r\n", 1)[0].split("\r\n")
    return lines[0], [(k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:])]


def _header(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name.lower()]


class FakeNode(threading.Thread):
    """A gateway node as the front sees it: answers OPTIONS, INVITE with answer(ruri)."""

    def __init__(self, answer: Callable[[str], int]) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.seen: list[tuple[str, str, str]] = []  # (method, request URI, Call-ID)

    def run(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                return
            start, headers = _parse(data)
            if start.startswith("SIP/2.0"):
                continue
            method, ruri = start.split()[:2]
            if method != "OPTIONS":
                self.seen.append((method, ruri, _header(headers, "Call-ID")[0]))
            if method == "ACK":
                continue
            code = 200
            if method == "INVITE":
                self.sock.sendto(self._reply(headers, 100), addr)
                code = self.answer(ruri)
            self.sock.sendto(self._reply(headers, code), addr)

    def _reply(self, headers: list[tuple[str, str]], code: int) -> bytes:
        out = [f"SIP/2.0 {code} Fake"]
        for key, value in headers:
            low = key.lower()
            if low in ("via", "from", "call-id", "cseq") or (low == "record-route" and code == 200):
                out.append(f"{key}: {value}")
            elif low == "to":
                tag = ";tag=node" if code > 100 and "tag=" not in value else ""
                out.append(f"To: {value}{tag}")
        if code == 200:
            out.append(f"Contact: <sip:gw@127.0.0.1:{self.port}>")
        return "\r\n".join([*out, "Content-Length: 0", "", ""]).encode()


class Caller:
    def __init__(self, host: str, front: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.front = front

    def send(self, method: str, ruri: str, call_id: str, cseq: int, *extra: str) -> None:
        host, port = self.sock.getsockname()
        in_dialog = method in ("ACK", "BYE")
        lines = [
            f"{method} {ruri} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{call_id}-{cseq}-{method};rport",
            "Max-Forwards: 70",
            f"From: <sip:carrier@{host}>;tag=carrier",
            f"To: <{ruri}>" + (";tag=node" if in_dialog else ""),
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {'INVITE' if method == 'ACK' else method}",
            f"Contact: <sip:carrier@{host}:{port}>",
            *extra, "Content-Length: 0", "", "",
        ]
        self.sock.sendto("\r\n".join(lines).encode(), self.front)

    def final(self, wait: float = 10.0) -> tuple[int | None, list[tuple[str, str]]]:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                data, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            start, headers = _parse(data)
            if start.startswith("SIP/2.0") and int(start.split()[1]) >= 200:
                return int(start.split()[1]), headers
        return None, []


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@kamailio_required
def test_kamailio_front_dispatches_and_fails_over(tmp_path: Path) -> None:
    # Node A is always full (503); node B answers, except "busy" numbers (486).
    node_a = FakeNode(lambda ruri: 503)
    node_b = FakeNode(lambda ruri: 486 if "busy" in ruri else 200)
    for node in (node_a, node_b):
        node.start()
    listing = tmp_path / "dispatcher.list"
    listing.write_text(
        f"1 sip:127.0.0.1:{node_a.port} 8 0 duid=a;maxload=10\n"
        f"1 sip:127.0.0.1:{node_b.port} 8 0 duid=b;maxload=10\n"
    )
    port = _free_udp_port()
    front = ("127.0.0.1", port)
    proc = subprocess.Popen(
        ["kamailio", "-DD", "-E", "-m", "64", "-M", "8", "-n", "2", "-f", str(KAMAILIO_CFG),
         "-Y", str(tmp_path), "-l", f"udp:127.0.0.1:{port}",
         *_defines(tmp_path, listing, "127.0.0.1/32")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    caller = Caller("127.0.0.1", front)
    try:
        for attempt in range(50):  # OPTIONS to the front itself: 200 once it is up
            caller.send("OPTIONS", f"sip:127.0.0.1:{port}", f"ping{attempt}", 1)
            code, _ = caller.final(wait=0.2)
            if code is not None:
                break
        assert code == 200

        # A call from the carrier network reaches a node that answers, whichever is tried first.
        ruri = f"sip:+15550100@127.0.0.1:{port}"
        caller.send("INVITE", ruri, "call-1", 1)
        code, headers = caller.final()
        assert code == 200
        record_route = [r.strip() for v in _header(headers, "Record-Route") for r in v.split(",")]
        assert record_route and f"127.0.0.1:{port}" in record_route[0]
        contact = _header(headers, "Contact")[0].strip("<>")
        assert contact == f"sip:gw@127.0.0.1:{node_b.port}"
        route = "Route: " + ", ".join(reversed(record_route))
        caller.send("ACK", contact, "call-1", 1, route)
        caller.send("BYE", contact, "call-1", 2, route)
        assert caller.final()[0] == 200  # BYE went through the front to node B and back
        assert ("BYE", contact, "call-1") in node_b.seen

        # Both nodes refuse: each is tried once, then the carrier gets 503.
        caller.send("INVITE", f"sip:busy@127.0.0.1:{port}", "call-2", 1)
        assert caller.final()[0] == 503
        busy = ("INVITE", f"sip:busy@127.0.0.1:{port}", "call-2")
        assert node_a.seen.count(busy) == 1 and node_b.seen.count(busy) == 1

        # A source outside CARRIER_NETS is refused before any node sees it.
        stranger = Caller("127.0.0.2", front)
        stranger.send("INVITE", f"sip:+15550100@127.0.0.1:{port}", "call-3", 1)
        assert stranger.final()[0] == 403
        time.sleep(0.2)
        assert not [seen for node in (node_a, node_b) for seen in node.seen if seen[2] == "call-3"]

        # A stranger flooding is banned: answered no more, while the carrier still is.
        for n in range(60):
            stranger.send("INVITE", f"sip:+15550100@127.0.0.1:{port}", f"flood-{n}", 1)
        time.sleep(0.5)
        while stranger.final(wait=0.3)[0] is not None:
            pass  # the 403s sent before the ban
        stranger.send("OPTIONS", f"sip:127.0.0.1:{port}", "after-ban", 1)
        assert stranger.final(wait=1.0)[0] is None
        caller.send("OPTIONS", f"sip:127.0.0.1:{port}", "carrier-after-ban", 1)
        code, headers = caller.final()
        while code is not None and _header(headers, "Call-ID") != ["carrier-after-ban"]:
            code, headers = caller.final()  # retransmissions of the unACKed 503 above
        assert code == 200
        assert not [seen for node in (node_a, node_b) for seen in node.seen
                    if seen[2].startswith("flood-")]
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0].decode(errors="replace")
        for node in (node_a, node_b):
            node.sock.close()
    # Errors while serving count; the teardown after SIGTERM logs some noise of its own.
    serving = re.split(r"handle_sigs\(\)|signal 15 received", output, maxsplit=1)[0]
    assert not re.search(r" (ERROR|CRITICAL|ALERT|BUG): ", serving), serving[-3000:]
    assert len(re.findall(r"FRONT ban src=127\.0\.0\.2 seconds=300", serving)) == 1

"""The Prometheus alerting rules in examples/prometheus, checked three ways.

1. `promtool check rules` accepts the rules file.
2. `promtool test rules` runs its unit tests (meshaudit-alerts.test.yaml): each alert fires on
   the series in trouble and stays quiet on the healthy ones; every alert has a case where it
   fires.
3. Every metric the rules name is one a real Envoy running meshaudit prints on its admin
   `/stats/prometheus` — as plain Envoy (envoy/sidecar.yaml) and as an Istio-shaped sidecar (the
   WasmPlugin over ECDS, Istio's default stats inclusion list and `cluster_name` tag plus the
   inclusion prefixes the README tells you to add) — so no rule can watch a misspelled metric.

promtool is Debian's `prometheus` package (`make sysdeps`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

import testkit

EXAMPLE = testkit.REPO / "examples" / "prometheus"
RULES = EXAMPLE / "meshaudit-alerts.yaml"
RULE_TESTS = EXAMPLE / "meshaudit-alerts.test.yaml"

# Istio's sidecar bootstrap (tools/packaging/common/envoy_bootstrap.json): the default stats
# inclusion list, and its tag for cluster stats.
ISTIO_DEFAULT_INCLUSION = (
    [{"prefix": p} for p in ("reporter=", "cluster_manager", "listener_manager", "server", "cluster.xds-grpc", "wasm")]
    + [{"suffix": s} for s in ("rbac.allowed", "rbac.denied", "shadow_allowed", "shadow_denied")]
    + [{"prefix": "component"}]
)
ISTIO_CLUSTER_NAME_TAG = {"tag_name": "cluster_name", "regex": r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)"}
# What examples/prometheus/README.md has you add with sidecar.istio.io/statsInclusionPrefixes.
README_INCLUSION_PREFIXES = [
    "extension_config_discovery",
    "cluster.outbound|4318||otel-collector.observability.svc.cluster.local",
]

FUNCTIONS = {
    "increase", "rate", "histogram_quantile", "max_over_time", "sum", "by", "without", "and", "or",
    "unless", "on", "ignoring",
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: `make sysdeps` installs Debian's prometheus package", pytrace=False)
    return path


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


# --- 1 and 2: promtool --------------------------------------------------------------------------


def test_promtool_accepts_the_rules():
    proc = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"SUCCESS: {len(rules())} rules found" in out, out


def test_promtool_unit_tests_pass_and_cover_every_alert():
    proc = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name], cwd=EXAMPLE, capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "SUCCESS" in out and "FAILED" not in out, out

    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {r["alert"] for r in rules()}
    assert alerts - fired == set(), "alerts no unit test shows firing"
    assert fired <= alerts, "unit tests of alerts that do not exist"


# --- 3: the names the rules use, in a real Envoy ------------------------------------------------

SELECTOR = re.compile(r"(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)?\s*(?P<matchers>\{[^}]*\})?\s*\[")
MATCHER = re.compile(r'(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"')


def selectors(expr: str) -> list[tuple[str | None, dict[str, tuple[str, str]]]]:
    """The range-vector selectors of a PromQL expression (every rule here reads counters and
    gauges through range functions, or a plain gauge): (metric name or None, {label: (op, value)})."""
    found = []
    for m in SELECTOR.finditer(expr):
        name = m.group("name")
        if name in FUNCTIONS:
            continue
        matchers = {}
        if m.group("matchers"):
            for mm in MATCHER.finditer(m.group("matchers")):
                value = mm.group("value").encode().decode("unicode_escape")
                matchers[mm.group("label")] = (mm.group("op"), value)
        found.append((name, matchers))
    # Instant selectors of gauges, e.g. `meshaudit_buffered_bytes > ...`.
    for m in re.finditer(r"(?:^|[\s(])(?P<name>meshaudit_[a-z_]+)\s*(?:>|<|==|$)", expr):
        found.append((m.group("name"), {}))
    return found


SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)\{(?P<labels>.*)\} \S+$")
LABEL = re.compile(r'(?P<k>[A-Za-z_][A-Za-z0-9_]*)="(?P<v>(?:[^"\\]|\\.)*)"')


def scrape(envoy: testkit.Envoy) -> list[tuple[str, dict[str, str]]]:
    with urllib.request.urlopen(envoy.admin_url + "/stats/prometheus", timeout=5) as resp:
        text = resp.read().decode()
    out = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            out.append((m.group("name"), {l.group("k"): l.group("v") for l in LABEL.finditer(m.group("labels"))}))
    return out


def matches(sample: tuple[str, dict[str, str]], name: str | None, matchers: dict) -> bool:
    sname, labels = sample
    if name is not None and sname != name:
        return False
    for label, (op, value) in matchers.items():
        actual = sname if label == "__name__" else labels.get(label, "")
        hit = re.fullmatch(value, actual) is not None if op in ("=~", "!~") else actual == value
        if hit == op.startswith("!"):
            return False
    return True


def unmatched(samples, wanted) -> list[str]:
    return [f"{n or ''}{m or ''}" for n, m in wanted if not any(matches(s, n, m) for s in samples)]


class IstioStatsSidecar(testkit.IstioSidecar):
    """The Istio-shaped sidecar with Istio's stats configuration: the default inclusion list
    plus `extra_prefixes` (what sidecar.istio.io/statsInclusionPrefixes adds), and the
    `cluster_name` tag (Istio turns Envoy's default tags off)."""

    def __init__(self, *args, extra_prefixes: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.extra_prefixes = extra_prefixes

    def render(self, collector_port: int) -> Path:
        path = super().render(collector_port)
        cfg = yaml.safe_load(path.read_text())
        cfg["stats_config"] = {
            "use_all_default_tags": False,
            "stats_tags": [ISTIO_CLUSTER_NAME_TAG],
            "stats_matcher": {"inclusion_list": {
                "patterns": ISTIO_DEFAULT_INCLUSION + [{"prefix": p} for p in self.extra_prefixes],
            }},
        }
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path


def wanted_selectors() -> list:
    """Each rule's selectors (named, with matchers)."""
    return [sel for rule in rules() for sel in selectors(rule["expr"])]


def test_selector_parser_sees_every_metric():
    wanted = wanted_selectors()
    names = {n for n, _ in wanted}
    # One of each kind of rule, so the parser cannot silently find nothing.
    assert {"meshaudit_events_dropped", "meshaudit_buffered_bytes", "envoy_cluster_upstream_rq_time_bucket",
            "meshaudit_checkpoints"} <= names, names
    assert any(m.get("__name__") for _, m in wanted), "the ECDS rule's __name__ matcher"


@pytest.fixture(scope="module")
def scrapes(tmp_path_factory, wasm, pki, run_id) -> dict[str, list]:
    """/stats/prometheus of plain Envoy (envoy/sidecar.yaml, meshaudit as a filter, some
    traffic) and of the Istio-shaped sidecar (the WasmPlugin over ECDS, Istio's stats
    configuration with the README's inclusion prefixes, one rejected update)."""
    tmp = tmp_path_factory.mktemp("alerts")
    stack = testkit.Stack(tmp / "plain", kind=testkit.SIDECAR, wasm=wasm, pki=pki,
                          plugin_config_overrides=testkit.TEST_PLUGIN_CONFIG)
    with testkit.running(stack):
        for i in range(3):
            assert stack.request(f"/alerts/{run_id}/{i}").status == 200
        stack.wait_settled()
        plain = scrape(stack.envoy)

    doc = testkit.istio_manifest(testkit.REPO / "istio" / "wasmplugin-http.yaml", "WasmPlugin", "meshaudit-http")
    sc = IstioStatsSidecar(tmp / "istio", doc, wasm=wasm, pki=pki, host_env={"MESHAUDIT_HASH_KEY": "k" * 32},
                           extra_prefixes=README_INCLUSION_PREFIXES)
    with sc:
        sc.wait_ecds("update_success", 1)
        assert sc.request(f"/alerts/{run_id}/istio").status == 200
        sc.wait_records(lambda r: r.attr("url.path") == f"/alerts/{run_id}/istio")
        sc.push({**doc["spec"]["pluginConfig"], "no_such_field": 1})
        sc.wait_ecds("update_rejected", 1)
        istio = scrape(sc.envoy)
    return {"plain": plain, "istio": istio}


def test_every_metric_the_rules_use_is_in_envoys_prometheus_output(scrapes):
    wanted = wanted_selectors()
    plain, istio = scrapes["plain"], scrapes["istio"]
    # Plain Envoy has no ECDS and tags clusters envoy_cluster_name; the Istio-shaped sidecar
    # tags them cluster_name.
    plain_wanted = [(n, m) for n, m in wanted if "cluster_name" not in m and "__name__" not in m]
    assert unmatched(plain, plain_wanted) == [], "named by the rules, not printed by plain Envoy"
    names = {n for n, _ in plain}
    assert "meshaudit_events_sent" in names and "wasmcustom_meshaudit_events_sent" not in names

    istio_wanted = [(n, m) for n, m in wanted if "envoy_cluster_name" not in m]
    assert unmatched(istio, istio_wanted) == [], "named by the rules, not printed by the Istio-shaped sidecar"
    rejected = [s for s in istio if s[0].endswith("_update_rejected") and "meshaudit" in s[0]]
    assert [(s[0], s[1]) for s in rejected] == [
        ("envoy_extension_config_discovery_http_filter_payments_meshaudit_http_update_rejected", {})
    ], rejected


def test_checkpoint_metric_is_published(scrapes):
    """The counter MeshauditCheckpointsStopped watches is one the filter publishes."""
    names = {n for n, _ in scrapes["plain"]}
    assert "meshaudit_checkpoints" in names


def test_istio_default_inclusion_keeps_meshaudit_metrics_but_not_ecds(tmp_path, wasm, pki):
    """What the README says about Istio: its default `wasm` prefix already includes
    wasmcustom.meshaudit.*; ECDS and collector-cluster stats need the inclusion prefixes."""
    doc = testkit.istio_manifest(testkit.REPO / "istio" / "wasmplugin-http.yaml", "WasmPlugin", "meshaudit-http")
    sc = IstioStatsSidecar(tmp_path, doc, wasm=wasm, pki=pki, host_env={"MESHAUDIT_HASH_KEY": "k" * 32},
                           extra_prefixes=[])
    with sc:
        testkit.wait_for(lambda: sc.request("/ready-check").status == 200, 30, 0.1, "the sidecar serving")
        names = {n for n, _ in scrape(sc.envoy)}
    assert "meshaudit_events_captured" in names and "meshaudit_buffered_bytes" in names
    assert not any(n.startswith("envoy_extension_config_discovery_") for n in names)
    assert "envoy_cluster_upstream_rq_time_bucket" not in names

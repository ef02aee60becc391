"""The Istio Wasm OCI image of meshaudit (`make oci`, tests/oci/build_image.py).

- Reproducible: two builds of the same module give byte-identical blobs and the same manifest
  digest (the value of WasmPlugin.spec.sha256); another module gives another digest.
- The "compat" variant Istio's agent reads: one `application/vnd.oci.image.layer.v1.tar+gzip`
  layer holding exactly `plugin.wasm` (the built module's bytes), the manifest annotation
  `module.wasm.image/variant: compat`, descriptors whose digests and sizes are right.
- Through a real registry: skopeo pushes the layout to the CNCF distribution registry (Debian
  `docker-registry`) on 127.0.0.1, the registry serves the manifest under the same digest, and
  a pull (by tag and by digest) into a new layout gives back the same module.

skopeo and docker-registry come from Debian (`make sysdeps`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

import pytest

import testkit

BUILD = testkit.REPO / "tests" / "oci" / "build_image.py"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"


def cargo_version() -> str:
    m = re.search(r'^version = "([^"]+)"', (testkit.REPO / "Cargo.toml").read_text(), re.M)
    assert m, "no version in Cargo.toml"
    return m.group(1)


def build(wasm: Path, out: Path, tag: str = "0.1.0") -> str:
    proc = subprocess.run(
        [sys.executable, str(BUILD), "--wasm", str(wasm), "--out", str(out), "--tag", tag],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"^WasmPlugin\.spec\.sha256: ([0-9a-f]{64})$", proc.stdout, re.M)
    assert m, proc.stdout
    return m.group(1)


def blob(layout: Path, digest: str) -> bytes:
    algo, _, hexd = digest.partition(":")
    assert algo == "sha256", digest
    data = (layout / "blobs" / "sha256" / hexd).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hexd, f"blob {digest} does not match its digest"
    return data


def manifest_of(layout: Path, tag: str) -> tuple[str, dict]:
    """(manifest digest, manifest) that the layout's index names `tag`."""
    index = json.loads((layout / "index.json").read_text())
    found = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    assert len(found) == 1, index
    digest = found[0]["digest"]
    raw = blob(layout, digest)
    assert len(raw) == found[0]["size"]
    return digest.removeprefix("sha256:"), json.loads(raw)


def plugin_wasm(layout: Path, tag: str) -> bytes:
    """plugin.wasm as Istio's agent extracts it from the compat image (the last layer)."""
    _, manifest = manifest_of(layout, tag)
    layer = manifest["layers"][-1]
    assert layer["mediaType"] == LAYER_TYPE
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layout, layer["digest"])))) as tar:
        member = tar.getmember("plugin.wasm")
        return tar.extractfile(member).read()


# ---------------------------------------------------------------------------------------------


def test_two_builds_give_the_same_manifest_digest(wasm, tmp_path):
    d1 = build(wasm, tmp_path / "a")
    d2 = build(wasm, tmp_path / "b")
    assert d1 == d2
    files = lambda root: sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())  # noqa: E731
    assert files(tmp_path / "a") == files(tmp_path / "b")
    for rel in files(tmp_path / "a"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert (tmp_path / "a" / "manifest-digest").read_text().strip() == d1
    # The digest follows the content: another module, another digest.
    other = tmp_path / "other.wasm"
    other.write_bytes(wasm.read_bytes() + b"\0")
    assert build(other, tmp_path / "c") != d1


def test_image_is_the_istio_compat_variant(wasm, tmp_path):
    layout = tmp_path / "layout"
    digest = build(wasm, layout, tag="9.9.9")
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    got_digest, manifest = manifest_of(layout, "9.9.9")
    assert got_digest == digest
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == MANIFEST_TYPE
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    assert len(manifest["layers"]) == 1
    layer_desc = manifest["layers"][0]
    assert layer_desc["mediaType"] == LAYER_TYPE
    layer = blob(layout, layer_desc["digest"])
    assert len(layer) == layer_desc["size"]
    # gzip -n: no file name, no timestamp
    assert layer[:3] == b"\x1f\x8b\x08" and layer[3] & 0x08 == 0 and layer[4:8] == b"\0\0\0\0"
    tar_bytes = gzip.decompress(layer)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["plugin.wasm"]
        m = members[0]
        assert m.isreg() and m.mode == 0o644 and (m.uid, m.gid, m.mtime) == (0, 0, 0)
        assert tar.extractfile(m).read() == wasm.read_bytes()
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    assert manifest["config"]["mediaType"] == CONFIG_TYPE
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]}
    assert plugin_wasm(layout, "9.9.9") == wasm.read_bytes()


def test_make_oci_prints_the_digest_of_the_built_module(wasm, tmp_path):
    """...and writes it, with the image reference, where the Kustomize base takes it
    (istio/kustomize/base/image.env by default; a temporary file here, so the test leaves the
    checkout as it was)."""
    out = tmp_path / "make-oci"
    env_file = tmp_path / "image.env"
    proc = subprocess.run(
        ["make", "--no-print-directory", "oci", f"OCI_DIR={out}", f"WASM={wasm}",
         "OCI_IMAGE=registry.test:5000/platform/meshaudit", f"OCI_KUSTOMIZE_ENV={env_file}"],
        cwd=testkit.REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"WasmPlugin\.spec\.sha256: ([0-9a-f]{64})", proc.stdout)
    assert m, proc.stdout
    assert m.group(1) == build(wasm, tmp_path / "direct", tag=cargo_version())
    assert manifest_of(out, cargo_version())[0] == m.group(1)
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#"))
    assert values == {"url": f"oci://registry.test:5000/platform/meshaudit:{cargo_version()}", "sha256": m.group(1)}
    assert f"docker://registry.test:5000/platform/meshaudit:{cargo_version()}" in proc.stdout


def test_istio_manifests_reference_the_image_make_oci_tags():
    """url tags follow Cargo's version (what `make oci` tags), sha256 has the CRD's form."""
    version = cargo_version()
    seen = 0
    for path in sorted(testkit.ISTIO_DIR.glob("*.yaml")):
        for doc in testkit.istio_manifests(path):
            if doc["kind"] not in ("WasmPlugin", "TrafficExtension"):
                continue
            w = testkit.istio_plugin(doc).wasm
            assert re.fullmatch(r"oci://[a-z0-9.-]+(:\d+)?/([a-z0-9._-]+/)*meshaudit:" + re.escape(version), w["url"]), w["url"]
            assert re.fullmatch(r"[0-9a-f]{64}", w["sha256"]), w["sha256"]
            seen += 1
    assert seen == 4


# ---------------------------------------------------------------------------------------------
# Through a real registry
# ---------------------------------------------------------------------------------------------


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found: `make sysdeps` installs it (Debian package {name})", pytrace=False)
    return path


class Registry(testkit.Process):
    """The CNCF distribution registry (Debian docker-registry) on 127.0.0.1, storage in a
    temporary directory, no auth, plain HTTP."""

    name = "docker-registry"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir / "registry.log", cwd=workdir)
        self.dir = workdir
        self.port = testkit.free_port()
        self.config = workdir / "config.yml"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def spawn(self):
        (self.dir / "storage").mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'storage'}\n"
            f"http:\n  addr: {self.host}\n"
        )
        return super().spawn()

    def command(self) -> list[str]:
        return [_tool("docker-registry"), "serve", str(self.config)]

    def is_ready(self) -> bool:
        try:
            return testkit.http_get(f"http://{self.host}/v2/", timeout=1.0)[0] == 200
        except OSError:
            return False

    def waiting_for(self) -> str:
        return f"registry on {self.host}"

    def log_tails(self) -> str:
        return self.log_path.read_text()[-2000:]

    def manifest(self, repo: str, ref: str) -> tuple[str, bytes]:
        req = urllib.request.Request(f"http://{self.host}/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_TYPE})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.headers["Docker-Content-Digest"], resp.read()


def skopeo(tmp_path: Path, *args: str) -> str:
    policy = tmp_path / "policy.json"
    if not policy.exists():
        policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    proc = subprocess.run(
        [_tool("skopeo"), "--policy", str(policy), *args], capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"skopeo {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def test_push_to_a_registry_and_pull_back(wasm, tmp_path):
    tag = cargo_version()
    layout = tmp_path / "built"
    digest = build(wasm, layout, tag=tag)
    registry = Registry(tmp_path / "registry").start()
    try:
        ref = f"docker://{registry.host}/platform/meshaudit"
        skopeo(tmp_path, "copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{layout}:{tag}", f"{ref}:{tag}")

        # The registry serves the manifest under the digest `make oci` printed (what Istio
        # compares WasmPlugin.spec.sha256 with), byte for byte.
        served_digest, raw = registry.manifest("platform/meshaudit", tag)
        assert served_digest == f"sha256:{digest}"
        assert hashlib.sha256(raw).hexdigest() == digest
        assert raw == blob(layout, f"sha256:{digest}")
        assert hashlib.sha256(skopeo(tmp_path, "inspect", "--raw", "--tls-verify=false", f"{ref}:{tag}").encode()).hexdigest() == digest

        # Pull back, by tag and by digest, into new layouts.
        for name, src in (("by-tag", f"{ref}:{tag}"), ("by-digest", f"{ref}@sha256:{digest}")):
            pulled = tmp_path / name
            skopeo(tmp_path, "copy", "--preserve-digests", "--src-tls-verify=false", src, f"oci:{pulled}:{tag}")
            got_digest, manifest = manifest_of(pulled, tag)
            assert got_digest == digest, name
            assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
            assert plugin_wasm(pulled, tag) == wasm.read_bytes(), name
    finally:
        registry.stop()

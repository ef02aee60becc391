#!/usr/bin/env python3
"""Build meshaudit.wasm into an Istio-compatible Wasm OCI image, as an OCI image layout.

    python3 tests/oci/build_image.py --wasm target/wasm32-wasip1/release/meshaudit.wasm \
        --out target/oci/meshaudit --tag 0.1.0

The image is the "compat" variant of the Wasm image specification that Istio's agent fetches
(pkg/wasm/imagefetcher.go): one layer, `application/vnd.oci.image.layer.v1.tar+gzip`, holding
`plugin.wasm`, and the manifest annotation `module.wasm.image/variant: compat`.

It is reproducible: the same module gives byte-identical blobs and so the same manifest digest.
The layer is made by GNU tar (`--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner`,
mode 0644, GNU format) piped to `gzip -n -9` (no name, no timestamp); the config, the manifest
and index.json are compact JSON with sorted keys and no timestamps.

Prints the manifest digest (what `WasmPlugin.spec.sha256` takes, without `sha256:`) and writes
it to OUT/manifest-digest. With `--kustomize-env FILE --image REGISTRY/REPOSITORY` it also
writes the image reference and the digest to FILE, the one place the Kustomize base
(istio/kustomize/base/image.env) takes them from: `make oci` does. Only the standard library,
GNU tar and gzip are needed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
VARIANT_ANNOTATION = "module.wasm.image/variant"
PLUGIN_FILE = "plugin.wasm"
# What istio/kustomize/base/image.env holds until `make oci` writes a digest: not 64 hex digits,
# so the WasmPlugin CRD (spec.sha256: `^[a-f0-9]{64}$`) refuses a rendered overlay that still has it.
DIGEST_PLACEHOLDER = "run-make-oci-to-write-the-digest"
IMAGE_ENV_HEADER = """\
# The meshaudit image every overlay of istio/kustomize loads: the one place it is set.
# istio/kustomize/base/kustomization.yaml copies `url` into spec.url and `sha256` into
# spec.sha256 of each WasmPlugin. Written by `make oci` (tests/oci/build_image.py
# --kustomize-env), with the manifest digest of the image it built: the same module gives the
# same file. Set the registry with `make oci OCI_IMAGE=REGISTRY/REPOSITORY`. Until then `sha256`
# is a placeholder that the API server refuses (the CRD wants 64 hex digits).
"""


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def layer_tar(wasm: Path) -> bytes:
    """The uncompressed layer: a tar holding only `plugin.wasm`, made deterministic."""
    with tempfile.TemporaryDirectory(prefix="meshaudit-oci-") as tmp:
        staged = Path(tmp) / PLUGIN_FILE
        shutil.copyfile(wasm, staged)
        staged.chmod(0o644)
        return subprocess.run(
            [
                "tar",
                "--create",
                "--file=-",
                "--format=gnu",
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mode=a=r,u+w",
                f"--directory={tmp}",
                PLUGIN_FILE,
            ],
            check=True,
            capture_output=True,
        ).stdout


def gzip_n(data: bytes) -> bytes:
    return subprocess.run(["gzip", "-n", "-9", "-c"], input=data, check=True, capture_output=True).stdout


def build(wasm: Path, out: Path, tag: str, version: str, source: str | None) -> str:
    module = wasm.read_bytes()
    if module[:4] != b"\0asm":
        raise SystemExit(f"{wasm} is not a WebAssembly module")
    tar = layer_tar(wasm)
    layer = gzip_n(tar)
    config = canonical_json(
        {
            "architecture": "wasm",
            "os": "wasip1",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha256_hex(tar)}"]},
        }
    )
    annotations = {
        VARIANT_ANNOTATION: "compat",
        "org.opencontainers.image.title": "meshaudit",
        "org.opencontainers.image.version": version,
    }
    if source:
        annotations["org.opencontainers.image.source"] = source
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": f"sha256:{sha256_hex(config)}", "size": len(config)},
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": f"sha256:{sha256_hex(layer)}", "size": len(layer)}],
            "annotations": annotations,
        }
    )
    digest = sha256_hex(manifest)
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": MANIFEST_MEDIA_TYPE,
                    "digest": f"sha256:{digest}",
                    "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": tag},
                }
            ],
        }
    )

    if out.exists():
        shutil.rmtree(out)
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in (layer, config, manifest):
        (blobs / sha256_hex(blob)).write_bytes(blob)
    (out / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_bytes(index)
    (out / "manifest-digest").write_text(digest + "\n")
    return digest


def image_env(url: str, sha256: str) -> str:
    """The text of istio/kustomize/base/image.env for an image URL and its manifest digest."""
    return f"{IMAGE_ENV_HEADER}url={url}\nsha256={sha256}\n"


def image_url(image: str, tag: str) -> str:
    """oci://REGISTRY/REPOSITORY:TAG, from REGISTRY/REPOSITORY (no scheme, no tag, no digest)."""
    last = image.rsplit("/", 1)[-1]
    if "://" in image or "/" not in image or ":" in last or "@" in image or not image.strip() or " " in image:
        raise SystemExit(f"--image {image!r}: want REGISTRY/REPOSITORY, without scheme, tag or digest")
    return f"oci://{image}:{tag}"


def write_image_env(path: Path, url: str, digest: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(image_env(url, digest))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wasm", type=Path, required=True, help="the built module")
    p.add_argument("--out", type=Path, required=True, help="OCI image layout directory (replaced)")
    p.add_argument("--tag", required=True, help="tag in the layout (org.opencontainers.image.ref.name)")
    p.add_argument("--version", help="org.opencontainers.image.version (default: the tag)")
    p.add_argument("--source", help="org.opencontainers.image.source annotation (optional)")
    p.add_argument("--image", help="REGISTRY/REPOSITORY the image is pushed to (for --kustomize-env)")
    p.add_argument("--kustomize-env", type=Path,
                   help="write url=oci://IMAGE:TAG and sha256=DIGEST here (istio/kustomize/base/image.env)")
    args = p.parse_args(argv)
    if bool(args.image) != bool(args.kustomize_env):
        p.error("--image and --kustomize-env go together")
    url = image_url(args.image, args.tag) if args.image else None
    if not args.wasm.is_file():
        print(f"{args.wasm} not found: build it first (make wasm)", file=sys.stderr)
        return 1
    digest = build(args.wasm, args.out, args.tag, args.version or args.tag, args.source)
    print(f"OCI image layout: {args.out} (tag {args.tag})")
    print(f"manifest digest: sha256:{digest}")
    print(f"WasmPlugin.spec.sha256: {digest}")
    if args.kustomize_env:
        write_image_env(args.kustomize_env, url, digest)
        print(f"Kustomize image: {args.kustomize_env} (url={url})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

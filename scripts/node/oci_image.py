"""Pack one static binary as a single-layer OCI image archive (an `oci-archive:` for skopeo, an import
for `ctr images import`).

Why not buildah: the local node needs its pause image on a machine that can pull nothing, and tests
need a tiny probe image; both are one static file. Writing the OCI layout directly touches no
container storage, needs no daemon, and gives the same digest for the same binary every time.

    python3 scripts/node/oci_image.py --binary BIN --path /pause --name registry.k8s.io/pause:3.10 -o OUT.tar
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(binary: Path, path_in_image: str) -> bytes:
    """An uncompressed tar holding the binary at `path_in_image`, owned by root, mode 0755, mtime 0."""
    buf = io.BytesIO()
    data = binary.read_bytes()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(path_in_image.lstrip("/"))
        info.size = len(data)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def build(binary: Path, path_in_image: str, name: str, out: Path, args: list[str]) -> str:
    """Write the archive; return the manifest digest."""
    layer_tar = _layer(binary, path_in_image)
    layer_gz = gzip.compress(layer_tar, compresslevel=9, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": [path_in_image], "Cmd": args or None, "User": "0:0"},
            "rootfs": {"type": "layers", "diff_ids": [_sha256(layer_tar)]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _sha256(layer_gz), "size": len(layer_gz)}],
        },
        sort_keys=True,
    ).encode()
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": _sha256(manifest),
                    "size": len(manifest),
                    # containerd's importer names the image from the first, skopeo's oci-archive by the 2nd.
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        },
        sort_keys=True,
    ).encode()
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tar, "index.json", index)
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for blob in (config, manifest, layer_gz):
            _add(tar, "blobs/sha256/" + _sha256(blob).split(":", 1)[1], blob)
    tmp.replace(out)
    return _sha256(manifest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, required=True, help="static executable to pack")
    parser.add_argument("--path", required=True, help="its path inside the image (the entrypoint)")
    parser.add_argument("--name", required=True, help="image reference, e.g. registry.k8s.io/pause:3.10")
    parser.add_argument("-o", "--output", type=Path, required=True, help="archive to write")
    parser.add_argument("args", nargs="*", help="default arguments (the image's Cmd)")
    ns = parser.parse_args()
    print(build(ns.binary, ns.path, ns.name, ns.output, ns.args))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Root filesystem tarballs -> an OCI layout holding one multi-platform index, the way Docker's
official `debian` image is made: one gzip layer per platform, a config with os, architecture,
variant, Env PATH and Cmd ["bash"], an image index over the platforms. Independent of rcross (its
tests read images rcross did not write); skopeo pushes the result.

    oci_layout.py OUT_DIR REF_NAME ARCH[/VARIANT]=TARBALL ...

/dev keeps only its directory: device nodes and the links mmdebstrap makes there are the
runtime's to create (Docker's images have an empty /dev). Prints a JSON summary: the index
digest and, per platform, its manifest and layer digests.
"""

import datetime
import gzip
import hashlib
import json
import os
import sys
import tarfile

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


class HashingWriter:
    """Passes writes on to `out` (if any), hashing and counting them."""

    def __init__(self, out=None):
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def flush(self):
        if self.out is not None:
            self.out.flush()

    def digest(self):
        return "sha256:" + self.sha.hexdigest()


def blob_path(out_dir, digest):
    return os.path.join(out_dir, "blobs", "sha256", digest.split(":", 1)[1])


def add_blob(out_dir, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(blob_path(out_dir, digest), "wb") as f:
        f.write(data)
    return {"digest": digest, "size": len(data)}


def keep(member):
    name = member.name[2:] if member.name.startswith("./") else member.name
    return not name.startswith("dev/")


def write_layer(out_dir, tarball):
    """The tarball minus /dev's contents, gzip-compressed (reproducibly: no name, mtime 0)."""
    tmp = os.path.join(out_dir, "blobs", "sha256", "layer.tmp")
    with open(tmp, "wb") as raw:
        compressed = HashingWriter(raw)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=6, mtime=0, filename="") as gz:
            uncompressed = HashingWriter(gz)
            with tarfile.open(tarball, "r|") as src, tarfile.open(
                fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT
            ) as dst:
                for member in src:
                    if not keep(member):
                        continue
                    dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    layer = {"mediaType": OCI_LAYER_GZIP, "digest": compressed.digest(), "size": compressed.size}
    os.replace(tmp, blob_path(out_dir, layer["digest"]))
    return layer, uncompressed.digest()


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    out_dir, ref_name = argv[1], argv[2]
    os.makedirs(os.path.join(out_dir, "blobs", "sha256"), exist_ok=True)
    summary = {"platforms": []}
    descriptors = []
    for spec in argv[3:]:
        platform, tarball = spec.split("=", 1)
        arch, _, variant = platform.partition("/")
        created = datetime.datetime.fromtimestamp(
            int(os.stat(tarball).st_mtime), datetime.timezone.utc
        ).strftime("%Y-%m-%dT%H:%M:%SZ")
        layer, diff_id = write_layer(out_dir, tarball)
        image_platform = {"architecture": arch, "os": "linux"}
        if variant:
            image_platform["variant"] = variant
        config = dict(image_platform)
        config.update(
            {
                "created": created,
                "config": {"Env": [PATH], "Cmd": ["bash"]},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                "history": [
                    {
                        "created": created,
                        "created_by": "# mmdebstrap --variant=minbase bookworm (rcross tests, "
                        + os.path.basename(tarball)
                        + ")",
                    }
                ],
            }
        )
        config_blob = add_blob(out_dir, json.dumps(config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": dict(mediaType=OCI_CONFIG, **config_blob),
            "layers": [layer],
        }
        manifest_blob = add_blob(out_dir, json.dumps(manifest, sort_keys=True).encode())
        descriptors.append(dict(mediaType=OCI_MANIFEST, platform=image_platform, **manifest_blob))
        summary["platforms"].append(
            {
                "platform": "linux/" + platform,
                "manifest": manifest_blob["digest"],
                "layer": layer["digest"],
                "diff_id": diff_id,
            }
        )
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    index_blob = add_blob(out_dir, json.dumps(index, sort_keys=True).encode())
    top = {
        "schemaVersion": 2,
        "manifests": [
            dict(
                mediaType=OCI_INDEX,
                annotations={"org.opencontainers.image.ref.name": ref_name},
                **index_blob,
            )
        ],
    }
    with open(os.path.join(out_dir, "index.json"), "w") as f:
        json.dump(top, f)
    with open(os.path.join(out_dir, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    summary["index"] = index_blob["digest"]
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f)
    print(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv)

#!/usr/bin/env bash
# Build Phoenix's container images without a Docker engine and ship them to a registry.
#
#   scripts/images.sh build [NAME...]    # NAME: auth, operator, redis (default: all three)
#   scripts/images.sh push [REGISTRY]    # copy the built images to REGISTRY (default: the local
#                                        # registry of scripts/registry.sh, started if needed)
#   scripts/images.sh sizes              # compressed and unpacked size of each built image
#   scripts/images.sh refs               # the image references the chart and the CRD default to
#
# How (docs/images.md): the Debian bases are made here from Debian packages with mmdebstrap (no
# base image can be pulled), cached as root filesystems keyed by their package lists; each image is
# one `buildah bud` (runc, offline: --network none) that installs the hash-locked wheels and the
# product wheel from read-only mounts. Each built image is saved as an OCI archive in $OUT.
#
# Environment:
#   PHOENIX_CACHE            cache root (default ~/.cache/phoenix); bases, wheels and archives live
#                            under $PHOENIX_CACHE/images, never in the repo
#   PHOENIX_IMAGE_REPO       repository prefix of the references (default: the chart's default,
#                            ghcr.io/phoenix-dev); the tag is always the version
#   PHOENIX_IMAGES_FORCE=1   rebuild even when an image of the same inputs exists
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
CACHE="${PHOENIX_CACHE:-$HOME/.cache/phoenix}/images"
OUT="$CACHE/oci"
WHEELS="$CACHE/wheels"
SUITE=bookworm
REPO_PREFIX="${PHOENIX_IMAGE_REPO:-ghcr.io/phoenix-dev}"
ALL=(auth operator redis)

log() { printf '[images] %s (%ss)\n' "$*" "$SECONDS" >&2; }
die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

version() { tr -d ' \n' < "$ROOT/VERSION"; }
# The commit an image is built from; "-dirty" when its folders hold uncommitted changes.
revision() {  # NAME
  local rev paths=("images/$1") d
  rev="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
  d="$(dist_dir "$1")"; [ -z "$d" ] || paths+=("$d")
  [ -z "$(git -C "$ROOT" status --porcelain -- "${paths[@]}" 2>/dev/null)" ] || rev="$rev-dirty"
  echo "$rev"
}
source_url() { sed -n 's/^home: *//p' "$ROOT/helm/phoenix-operator/Chart.yaml"; }

# ---------------------------------------------------------------- what each image is made of
# dist NAME: the product distribution's folder (empty for redis, which carries no Python).
dist_dir() { case "$1" in auth) echo auth_service ;; operator) echo operator ;; *) echo "" ;; esac; }
dist_name() { case "$1" in auth) echo phoenix_auth ;; operator) echo phoenix_operator ;; esac; }
lock_file() { echo "$ROOT/$(dist_dir "$1")/requirements.lock"; }
base_of() { case "$1" in redis) echo redis ;; *) echo python ;; esac; }
ref() { echo "$REPO_PREFIX/phoenix-$1:$(version)"; }

# Debian packages of each base (Essential packages come with the `essential` variant).
base_packages() { case "$1" in python) echo "python3,ca-certificates" ;; redis) echo "redis-server" ;; esac; }
base_ref() { echo "localhost/phoenix/$1-base:$SUITE"; }

# ---------------------------------------------------------------- tools
need_tools() {
  local want=()
  command -v buildah >/dev/null || want+=(buildah)
  command -v skopeo >/dev/null || want+=(skopeo)
  command -v mmdebstrap >/dev/null || want+=(mmdebstrap)
  command -v runc >/dev/null || want+=(runc)
  if [ ${#want[@]} -gt 0 ]; then
    log "installing ${want[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${want[@]}" >/dev/null \
      || { as_root apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
           as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${want[@]}" >/dev/null; }
  fi
}

# crun (podman's default) cannot set rlimits here and refuses hybrid cgroups: always runc, with
# limits it may set.
BUILDAH_RUN=(--runtime runc --ulimit nofile=20000:20000 --ulimit nproc=32768:32768)

image_label() {  # IMAGE LABEL → value, or empty when the image is absent
  buildah inspect --type image --format "{{index .ImageAnnotations \"$2\"}}{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null || true
}

# ---------------------------------------------------------------- bases
ensure_base() {  # python | redis
  local kind="$1" pkgs key tar
  pkgs="$(base_packages "$kind")"
  key="$(printf '%s %s essential merged-usr nodoc' "$SUITE" "$pkgs" | sha256sum | cut -c1-16)"
  if [ "$(image_label "$(base_ref "$kind")" dev.phoenix.base-key)" = "$key" ]; then
    return
  fi
  tar="$CACHE/rootfs-$kind-$SUITE-$key.tar"
  if [ ! -s "$tar" ]; then
    log "base $kind: mmdebstrap $SUITE ($pkgs), ~40 s"
    mkdir -p "$CACHE"
    # essential + merged /usr without the usrmerge package (it alone pulls in ~45 MB of perl);
    # no docs, man pages or locales.
    as_root mmdebstrap --mode=root --variant=essential --include="$pkgs" \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      "$SUITE" "$tar.tmp" >"$CACHE/mmdebstrap-$kind.log" 2>&1 \
      || { tail -n 30 "$CACHE/mmdebstrap-$kind.log" >&2; die "mmdebstrap failed (log: $CACHE/mmdebstrap-$kind.log)"; }
    mv "$tar.tmp" "$tar"
  fi
  log "base $kind: importing into buildah as $(base_ref "$kind")"
  local c
  c="$(buildah from scratch)"
  buildah add --quiet "$c" "$tar" / >/dev/null
  buildah config --label "dev.phoenix.base-key=$key" --env PATH=/usr/sbin:/usr/bin:/sbin:/bin "$c"
  buildah commit --quiet --rm "$c" "$(base_ref "$kind")" >/dev/null
}

# ---------------------------------------------------------------- wheels
installer_wheel() { sed -n 's/^pip==\([^ ]*\) .*/pip-\1-py3-none-any.whl/p' "$ROOT/images/installer.lock"; }

fetch_wheels() {  # NAME: the locked wheels (hash-checked) into the shared wheel cache
  mkdir -p "$WHEELS"
  local py="${PHOENIX_PYTHON:-python3}"
  # The images' Python: CPython 3.11 on glibc 2.36 (bookworm). pip does not widen a manylinux_2_36
  # platform to the older manylinux tags that glibc also runs, so every one is listed.
  local plats=() v
  for v in $(seq 36 -1 5); do plats+=(--platform "manylinux_2_${v}_x86_64"); done
  plats+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
  log "$1: locked wheels (cached in $WHEELS)"
  "$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes "${plats[@]}" --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    -d "$WHEELS" -r "$(lock_file "$1")" -r "$ROOT/images/installer.lock" >&2
}

build_dist() {  # NAME → path of the product wheel
  local dir="$CACHE/dist/$1" src="$CACHE/src/$1" py="${PHOENIX_PYTHON:-python3}"
  rm -rf "$dir" "$src"; mkdir -p "$dir" "$src"
  # Built from a copy (links such as VERSION resolved), so setuptools leaves no build/ in the repo.
  tar -C "$ROOT/$(dist_dir "$1")" --exclude=__pycache__ --exclude='*.egg-info' --exclude=build -chf - . | tar -C "$src" -xf -
  "$py" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$dir" "$src" >&2
  ls "$dir"/*.whl
}

# Hash of everything an image is built from, so an unchanged image is not rebuilt.
inputs_hash() {
  local name="$1" dir
  dir="$(dist_dir "$name")"
  {
    echo "$(version) $(revision "$name")"
    buildah inspect --type image --format '{{.FromImageID}}' "$(base_ref "$(base_of "$name")")"
    sha256sum "$ROOT/images/$name/Containerfile" "$ROOT/images/installer.lock" "$ROOT/images/install-python-app.sh"
    if [ -n "$dir" ]; then
      sha256sum "$(lock_file "$name")"
      (cd "$ROOT/$dir" && find . -type f -not -path '*/__pycache__/*' -not -path '*.egg-info*' -print0 \
        | sort -z | xargs -0 sha256sum)
    fi
  } | sha256sum | cut -c1-16
}

# ---------------------------------------------------------------- build
build_one() {
  local name="$1" image inputs t0=$SECONDS
  image="$(ref "$name")"
  ensure_base "$(base_of "$name")"
  inputs="$(inputs_hash "$name")"
  if [ "${PHOENIX_IMAGES_FORCE:-0}" != 1 ] && [ "$(image_label "$image" dev.phoenix.inputs)" = "$inputs" ] \
    && [ -s "$OUT/phoenix-$name.tar" ]; then
    log "$name: $image is up to date"
    return
  fi
  local mounts=()
  if [ -n "$(dist_dir "$name")" ]; then
    fetch_wheels "$name"
    local whl
    whl="$(build_dist "$name")"
    mounts=(-v "$ROOT/images:/build:ro" -v "$WHEELS:/wheels:ro" -v "$(dirname "$whl"):/dist:ro"
            -v "$(dirname "$(lock_file "$name")"):/lock:ro")
  fi
  log "$name: buildah bud → $image"
  buildah bud --quiet "${BUILDAH_RUN[@]}" --network none --pull-never \
    "${mounts[@]}" \
    --build-arg "VERSION=$(version)" --build-arg "REVISION=$(revision "$name")" \
    --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" --build-arg "SOURCE=$(source_url)" \
    --build-arg "PIP_WHEEL=$(installer_wheel)" \
    --label "dev.phoenix.inputs=$inputs" \
    -f "$ROOT/images/$name/Containerfile" -t "$image" "$ROOT/images/$name" >/dev/null
  mkdir -p "$OUT"
  rm -f "$OUT/phoenix-$name.tar"
  buildah push --quiet "$image" "oci-archive:$OUT/phoenix-$name.tar:$image" >/dev/null
  log "$name: built in $((SECONDS - t0))s; OCI archive $OUT/phoenix-$name.tar"
}

cmd_build() {
  need_tools
  local names=("$@")
  [ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
  for n in "${names[@]}"; do
    case " ${ALL[*]} " in *" $n "*) ;; *) die "unknown image '$n' (one of: ${ALL[*]})" ;; esac
    build_one "$n"
  done
}

# ---------------------------------------------------------------- push
cmd_push() {
  need_tools
  local dest="${1:-}" tls=()
  if [ -z "$dest" ]; then
    bash "$HERE/registry.sh" up >&2
    dest="$(bash "$HERE/registry.sh" addr)"
  fi
  case "$dest" in localhost:*|127.0.0.1:*) tls=(--dest-tls-verify=false) ;; esac
  for n in "${ALL[@]}"; do
    [ -s "$OUT/phoenix-$n.tar" ] || die "no archive for $n: run '$0 build' first"
    local image path
    image="$(ref "$n")"
    path="${image#*/}"  # drop the registry host, keep the repository path and tag
    skopeo copy --quiet "${tls[@]}" "oci-archive:$OUT/phoenix-$n.tar" "docker://$dest/$path" >&2
    log "pushed $dest/$path"
  done
}

# ---------------------------------------------------------------- sizes
# Compressed = the gzip'd layers a registry stores and a node pulls; unpacked = the layers' tar size
# on the node's disk. Both read from the OCI archive (skopeo compresses a copy to measure it).
cmd_sizes() {
  need_tools
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  printf '| image | compressed | unpacked |\n|---|---|---|\n'
  for n in "${ALL[@]}"; do
    [ -s "$OUT/phoenix-$n.tar" ] || continue
    skopeo copy --quiet --dest-compress "oci-archive:$OUT/phoenix-$n.tar" "dir:$tmp/$n" >/dev/null
    python3 - "$tmp/$n" "$(ref "$n")" <<'PY'
import gzip, json, os, sys
d, ref = sys.argv[1:]
manifest = json.load(open(os.path.join(d, "manifest.json")))
compressed = sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"]
unpacked = 0
for layer in manifest["layers"]:
    with gzip.open(os.path.join(d, layer["digest"].split(":", 1)[1])) as f:
        while chunk := f.read(1 << 20):
            unpacked += len(chunk)
print(f"| `{ref}` | {compressed / 1e6:.1f} MB | {unpacked / 1e6:.1f} MB |")
PY
  done
}

cmd_refs() { for n in "${ALL[@]}"; do ref "$n"; done; }

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  push) shift; cmd_push "$@" ;;
  sizes) cmd_sizes ;;
  refs) cmd_refs ;;
  *) echo "usage: $0 build [auth|operator|redis ...] | push [REGISTRY] | sizes | refs" >&2; exit 2 ;;
esac

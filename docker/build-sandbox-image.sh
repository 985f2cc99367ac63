#!/usr/bin/env bash
# Builds the images under docker/ without any image registry, reusing what is already built:
#
#   1. agenthub-debian:bookworm, the base: reused when present; else debian:bookworm-slim with
#      python3, pip and git added (when a registry answers); else a Debian root filesystem made by
#      debootstrap (or taken from $AGENTHUB_ROOTFS) and `docker import`ed.
#   2. The wheels of the sandbox tools (ruff, pytest, bandit), fetched on the host with pip for
#      the base image's Python and glibc: nothing is installed from the network inside a build.
#   3. agenthub-sandbox:<recipe hash> and :latest. The hash covers the Dockerfile, the wheel set
#      and the base image ID, so an unchanged recipe is reused and a changed one rebuilt.
#   With --app, also agenthub-app:latest (web + worker; docker/app/Dockerfile). With
#   --rebuild-base, the base is made anew (and so the sandbox image rebuilt) even if present.
#
# Progress goes to stderr; stdout gets the image ID of each image, one a line (sandbox, then
# app). Used by `make sandbox-image` and .ci/run; see docker/README.md.
#
# Environment: AGENTHUB_ROOTFS (an existing root filesystem to import instead of debootstrapping),
# DEBIAN_MIRROR (default http://deb.debian.org/debian), PULL_TIMEOUT (seconds, default 60).
set -euo pipefail

cd "$(dirname "$0")/.."

BASE=agenthub-debian:bookworm
SANDBOX=agenthub-sandbox
APP=agenthub-app
SANDBOX_PACKAGES=(ruff pytest bandit)
DEBIAN_PACKAGES=python3,python3-pip,git,ca-certificates,bash,coreutils
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PULL_TIMEOUT=${PULL_TIMEOUT:-60}

build_app=0
rebuild_base=0
for arg in "$@"; do
  case "$arg" in
    --app) build_app=1 ;;
    --rebuild-base) rebuild_base=1 ;; # e.g. for Debian's security updates
    *) echo "usage: $0 [--app] [--rebuild-base]" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*" >&2; }
run() { printf '+ %s\n' "$*" >&2; "$@"; }
timed() { # timed LABEL COMMAND...: runs it and says how long it took
  local label=$1 start=$SECONDS
  shift
  "$@"
  say "$label took $((SECONDS - start)) s"
}

if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
PIP=("$PYTHON" -m pip)

docker info >/dev/null 2>&1 || { echo "error: the Docker Engine does not answer (docker info)" >&2; exit 1; }

rootfs_ready() { # a finished debootstrap leaves python3 and no debootstrap/ work directory
  [ -x "$1/usr/bin/python3" ] && [ -x "$1/usr/bin/git" ] && [ ! -d "$1/debootstrap" ]
}

import_rootfs() {
  # Left out: apt's caches and lists (a derived image runs apt-get update first), manuals,
  # translations and changelogs; the copyright files stay.
  say "importing $1 as $BASE"
  tar -C "$1" --numeric-owner \
    --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/lib/apt/lists/*' \
    --exclude='./usr/share/man/*' --exclude='./usr/share/info/*' \
    --exclude='./usr/share/locale/*' --exclude='./usr/share/doc/*/changelog*' \
    --exclude='./usr/share/doc/*/NEWS*' --exclude='./debootstrap' \
    -c . |
    docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["/bin/bash"]' \
      --message "debootstrap --variant=minbase --include=$DEBIAN_PACKAGES bookworm" \
      - "$BASE" >/dev/null
}

ROOTFS_TMP=
cleanup() {
  if [ -n "$ROOTFS_TMP" ]; then
    # debootstrap mounts /proc and /sys inside while it works: never let rm cross into them.
    umount -l "$ROOTFS_TMP/proc" "$ROOTFS_TMP/sys" 2>/dev/null || true
    rm -rf --one-file-system "$ROOTFS_TMP"
  fi
}
trap cleanup EXIT

debootstrap_base() {
  local log=/var/tmp/agenthub-debootstrap.log
  ROOTFS_TMP=$(mktemp -d /var/tmp/agenthub-rootfs.XXXXXX)
  say "debootstrap log: $log"
  run debootstrap --variant=minbase --include="$DEBIAN_PACKAGES" bookworm "$ROOTFS_TMP" \
    "$DEBIAN_MIRROR" >"$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
  import_rootfs "$ROOTFS_TMP"
}

ensure_base() {
  if [ "$rebuild_base" = 0 ] && docker image inspect "$BASE" >/dev/null 2>&1; then
    say "reusing $BASE"
  elif run timeout "$PULL_TIMEOUT" docker pull -q debian:bookworm-slim >&2; then
    printf 'FROM debian:bookworm-slim\nRUN %s && %s && %s\n' \
      'apt-get update' \
      "apt-get install -y --no-install-recommends ${DEBIAN_PACKAGES//,/ }" \
      'rm -rf /var/lib/apt/lists/*' |
      run docker build -q --force-rm -t "$BASE" - >&2
  elif [ -n "${AGENTHUB_ROOTFS:-}" ] && rootfs_ready "$AGENTHUB_ROOTFS"; then
    say "no registry: using the root filesystem in AGENTHUB_ROOTFS=$AGENTHUB_ROOTFS"
    import_rootfs "$AGENTHUB_ROOTFS"
  else
    say "no registry: building a Debian bookworm root filesystem with debootstrap"
    debootstrap_base
  fi
}

# pip's view of the base image: its Python version, and every manylinux tag its glibc accepts.
target_flags() {
  local glibc arch
  read -r TARGET_PYTHON glibc arch < <(docker run --rm --network none "$BASE" python3 -c \
    'import platform, sys; print("%d.%d" % sys.version_info[:2], platform.libc_ver()[1].split(".")[1], platform.machine())')
  TARGET=(--only-binary=:all: --python-version "$TARGET_PYTHON" --implementation cp)
  for ((minor = glibc; minor >= 17; minor--)); do
    TARGET+=(--platform "manylinux_2_${minor}_$arch")
  done
  TARGET+=(--platform "manylinux2014_$arch" --platform any)
}

# fill_wheels DIR PIP-COMMAND... DIR-OPTION: DIR ends up holding exactly the wheels the command
# resolves now (pip's cache makes a repeat cheap), so the recipe hash changes only when a version
# does. Offline, the wheels already there are kept.
fill_wheels() {
  local dir=$1 tmp
  shift
  tmp=$(mktemp -d)
  if ! run "$@" "$tmp"; then
    rm -rf "$tmp"
    if compgen -G "$dir/*.whl" >/dev/null; then
      say "warning: pip failed (no index reachable?); keeping the wheels already in $dir"
      return 0
    fi
    echo "error: pip could not fetch the wheels for $dir" >&2
    exit 1
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$tmp"/*.whl "$dir"/
  rm -rf "$tmp"
  say "$(find "$dir" -name '*.whl' | wc -l) wheels in $dir ($(du -sh "$dir" | cut -f1))"
}

# complete_wheels DIR REQUIREMENT...: pip on the host evaluates environment markers for the host's
# Python, not the base's (redis wants async-timeout below Python 3.11.3: Debian has 3.11.2). So
# the base's own pip resolves against DIR, offline, and whatever it misses is fetched on the host.
complete_wheels() {
  local dir=$1 out missing round
  shift
  for round in 1 2 3 4 5; do
    if out=$(docker run --rm --network none -v "$PWD/$dir:/wheels:ro" "$BASE" python3 -m pip \
      install --dry-run --ignore-installed --no-index --find-links /wheels --quiet \
      --break-system-packages --root-user-action=ignore --disable-pip-version-check "$@" 2>&1); then
      return 0
    fi
    missing=$(sed -nE 's/.*No matching distribution found for ([^;]+).*/\1/p' <<<"$out" | head -1)
    if [ -z "$missing" ]; then
      printf '%s\n' "$out" >&2
      echo "error: the base image's pip cannot install the wheels in $dir" >&2
      exit 1
    fi
    say "the base image also needs $missing (round $round)"
    run "${PIP[@]}" download --quiet "${TARGET[@]}" --find-links "$dir" --dest "$dir" "$missing"
  done
  echo "error: the wheels in $dir are still incomplete after $round rounds" >&2
  exit 1
}

recipe_hash() {
  {
    docker image inspect -f '{{.Id}}' "$BASE"
    cat docker/sandbox/Dockerfile
    find docker/sandbox/wheels -name "*.whl" -printf "%f\n" | LC_ALL=C sort
  } | sha256sum | cut -c1-12
}

build_sandbox() {
  local tag
  tag=$(recipe_hash)
  if docker image inspect "$SANDBOX:$tag" >/dev/null 2>&1; then
    say "reusing $SANDBOX:$tag (the recipe is unchanged)"
  else
    # --network none: the build installs from the wheels only; a step that reaches out fails.
    timed "docker build $SANDBOX:$tag" run docker build --force-rm --network none \
      --label "agenthub.sandbox.recipe=$tag" -t "$SANDBOX:$tag" docker/sandbox >&2
  fi
  run docker tag "$SANDBOX:$tag" "$SANDBOX:latest"
  say "$SANDBOX:$tag is $(docker image inspect -f '{{.Size}}' "$SANDBOX:$tag" | numfmt --to=iec-i --suffix=B)"
  docker image inspect -f '{{.Id}}' "$SANDBOX:$tag"
}

build_app() {
  local deps=() host_python
  # Some of the app's dependencies are published as source only (http-ece, py-vapid), which
  # `pip download --platform` refuses: the host builds them with `pip wheel`, so its Python must
  # be the base image's (its binary wheels must suit the base's glibc too; the build says if not).
  host_python=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if [ "$host_python" != "$TARGET_PYTHON" ]; then
    echo "error: the app's wheels need Python $TARGET_PYTHON on the host (found $host_python)" >&2
    exit 1
  fi
  mapfile -t deps < <("$PYTHON" -c 'import tomllib
for dep in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]: print(dep)')
  timed "wheel download (app)" fill_wheels docker/app/wheels \
    "${PIP[@]}" wheel --quiet "${deps[@]}" --wheel-dir
  complete_wheels docker/app/wheels "${deps[@]}"
  # The context is the repository root, but only the files git knows (tracked or not ignored)
  # and the wheels: not .venv, .git or the data directory.
  say "building $APP:latest"
  {
    git ls-files -z --cached --others --exclude-standard
    find docker/app/wheels -name '*.whl' -print0
  } | tar --null --ignore-failed-read -T - -c |
    timed "docker build $APP" run docker build --force-rm --network none -t "$APP:latest" \
      -f docker/app/Dockerfile - >&2
  say "$APP:latest is $(docker image inspect -f '{{.Size}}' "$APP:latest" | numfmt --to=iec-i --suffix=B)"
  docker image inspect -f '{{.Id}}' "$APP:latest"
}

timed "base image" ensure_base
target_flags
timed "wheel download (sandbox)" fill_wheels docker/sandbox/wheels \
  "${PIP[@]}" download --quiet "${TARGET[@]}" "${SANDBOX_PACKAGES[@]}" --dest
complete_wheels docker/sandbox/wheels "${SANDBOX_PACKAGES[@]}"
build_sandbox
if [ "$build_app" = 1 ]; then build_app; fi

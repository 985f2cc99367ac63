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
# DEBIAN_MIRROR (default http://deb.debian.org/debian), PULL_TIMEOUT (seconds, default 60). The
# steps are docker/lib.sh's, which build-openhands-image.sh shares.
set -euo pipefail

cd "$(dirname "$0")/.."

SUITE=bookworm
BASE=agenthub-debian:$SUITE
SANDBOX=agenthub-sandbox
APP=agenthub-app
SANDBOX_PACKAGES=(ruff pytest bandit)
DEBIAN_PACKAGES=python3,python3-pip,git,ca-certificates,bash,coreutils
ROOTFS=${AGENTHUB_ROOTFS:-}

build_app=0
rebuild_base=0
for arg in "$@"; do
  case "$arg" in
    --app) build_app=1 ;;
    --rebuild-base) rebuild_base=1 ;; # e.g. for Debian's security updates
    *) echo "usage: $0 [--app] [--rebuild-base]" >&2; exit 2 ;;
  esac
done

source docker/lib.sh

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
build_image "$SANDBOX" docker/sandbox
if [ "$build_app" = 1 ]; then build_app; fi

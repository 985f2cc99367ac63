#!/usr/bin/env bash
# Builds the OpenHands agent's sandbox image without any image registry, reusing what is built:
#
#   1. agenthub-debian:trixie, the base (Debian 13: its Python is 3.13, which the OpenHands SDK
#      needs, Debian 12's 3.11 being too old): reused when present; else debian:trixie-slim with
#      the packages added (when a registry answers); else a root filesystem made by debootstrap
#      (or taken from $AGENTHUB_TRIXIE_ROOTFS) and `docker import`ed.
#   2. The wheels of docker/openhands/requirements.txt, fetched on the host with pip for the base
#      image's Python and glibc (packages published as sources only are built into wheels on the
#      host), then checked with the base image's own pip, offline.
#   3. agenthub-sandbox-openhands:<recipe hash> and :latest, built with --network none. The hash
#      covers the base image ID, every file of docker/openhands but the wheels, and the wheel names.
#   With --rebuild-base, the base is made anew (and so the image rebuilt) even if present.
#
# Progress goes to stderr, the image ID to stdout. See docker/openhands/Dockerfile for how the
# image is run. Environment: AGENTHUB_TRIXIE_ROOTFS, DEBIAN_MIRROR (default
# http://deb.debian.org/debian), PULL_TIMEOUT (seconds, default 60). The steps are docker/lib.sh's,
# which build-sandbox-image.sh shares. `make agent-images` runs it where a Docker Engine runs.
set -euo pipefail

cd "$(dirname "$0")/.."

SUITE=trixie
BASE=agenthub-debian:$SUITE
IMAGE=agenthub-sandbox-openhands
CONTEXT=docker/openhands
# tmux: the terminal tool's preferred backend (it falls back to a plain subprocess without).
DEBIAN_PACKAGES=python3,python3-pip,git,ca-certificates,bash,coreutils,tmux
ROOTFS=${AGENTHUB_TRIXIE_ROOTFS:-}

rebuild_base=0
for arg in "$@"; do
  case "$arg" in
    --rebuild-base) rebuild_base=1 ;;
    *) echo "usage: $0 [--rebuild-base]" >&2; exit 2 ;;
  esac
done

source docker/lib.sh

start=$SECONDS
timed "base image" ensure_base
target_flags
timed "wheel download" fill_wheels "$CONTEXT/wheels" \
  "${PIP[@]}" download --quiet "${TARGET[@]}" -r "$CONTEXT/requirements.txt" --dest
complete_wheels "$CONTEXT/wheels" -r "/context/$CONTEXT/requirements.txt"
build_image "$IMAGE" "$CONTEXT"
say "all done in $((SECONDS - start)) s"

# Shared by the image build scripts (build-sandbox-image.sh, build-openhands-image.sh), sourced
# after they set:
#
#   SUITE            the Debian release of the base image (bookworm, trixie)
#   BASE             its tag (agenthub-debian:$SUITE)
#   DEBIAN_PACKAGES  what the base has, comma-separated
#   ROOTFS           an existing root filesystem to import instead of debootstrapping (or empty)
#   rebuild_base     1 to make the base anew even if present
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), PULL_TIMEOUT (seconds,
# default 60). Progress goes to stderr; stdout is left for the image IDs.

DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PULL_TIMEOUT=${PULL_TIMEOUT:-60}

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
      --message "debootstrap --variant=minbase --include=$DEBIAN_PACKAGES $SUITE" \
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
  local log=/var/tmp/agenthub-debootstrap-$SUITE.log
  ROOTFS_TMP=$(mktemp -d "/var/tmp/agenthub-rootfs-$SUITE.XXXXXX")
  say "debootstrap log: $log"
  run debootstrap --variant=minbase --include="$DEBIAN_PACKAGES" "$SUITE" "$ROOTFS_TMP" \
    "$DEBIAN_MIRROR" >"$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
  import_rootfs "$ROOTFS_TMP"
}

# The base: reused when present; else debian:$SUITE-slim with the packages added (when a
# registry answers); else $ROOTFS or a root filesystem made by debootstrap, `docker import`ed.
ensure_base() {
  if [ "$rebuild_base" = 0 ] && docker image inspect "$BASE" >/dev/null 2>&1; then
    say "reusing $BASE"
  elif run timeout "$PULL_TIMEOUT" docker pull -q "debian:$SUITE-slim" >&2; then
    printf 'FROM debian:%s-slim\nRUN %s && %s && %s\n' "$SUITE" \
      'apt-get update' \
      "apt-get install -y --no-install-recommends ${DEBIAN_PACKAGES//,/ }" \
      'rm -rf /var/lib/apt/lists/*' |
      run docker build -q --force-rm -t "$BASE" - >&2
  elif [ -n "$ROOTFS" ] && rootfs_ready "$ROOTFS"; then
    say "no registry: using the root filesystem in $ROOTFS"
    import_rootfs "$ROOTFS"
  else
    say "no registry: building a Debian $SUITE root filesystem with debootstrap"
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

# missing_from PIP-OUTPUT: the requirement pip could not find.
missing_from() {
  sed -nE 's/.*No matching distribution found for ([^ ;]+).*/\1/p' <<<"$1" | head -1
}

# fill_wheels DIR PIP-COMMAND... DIR-OPTION: DIR ends up holding exactly the wheels the command
# resolves now (pip's cache makes a repeat cheap), so the recipe hash changes only when a version
# does. A package published as sources only is built into a wheel on the host and the command
# tried again: fine for pure Python ones; a compiled one would fail complete_wheels' offline
# check. Offline, the wheels already in DIR are kept.
fill_wheels() {
  local dir=$1 tmp out missing round
  shift
  tmp=$(mktemp -d)
  printf '+ %s\n' "$* $tmp" >&2
  for round in 1 2 3 4 5 6; do
    if out=$("$@" "$tmp" --find-links "$tmp" 2>&1); then
      rm -rf "$dir"
      mkdir -p "$dir"
      cp "$tmp"/*.whl "$dir"/
      rm -rf "$tmp"
      say "$(find "$dir" -name '*.whl' | wc -l) wheels in $dir ($(du -sh "$dir" | cut -f1))"
      return 0
    fi
    missing=$(missing_from "$out")
    if [ -z "$missing" ] || ! run "${PIP[@]}" wheel --quiet --no-deps --wheel-dir "$tmp" \
      "$missing" >&2; then
      break
    fi
    say "built $missing from its sources (round $round)"
  done
  grep -v '^WARNING: Location' <<<"$out" >&2 || true
  rm -rf "$tmp"
  if compgen -G "$dir/*.whl" >/dev/null; then
    say "warning: pip failed (no index reachable?); keeping the wheels already in $dir"
    return 0
  fi
  echo "error: pip could not fetch the wheels for $dir" >&2
  exit 1
}

# complete_wheels DIR PIP-INSTALL-ARGS...: pip on the host evaluates environment markers for the
# host's Python, not the base's (redis wants async-timeout below Python 3.11.3: Debian 12 has
# 3.11.2). So the base's own pip resolves against DIR, offline, and whatever it misses is
# fetched on the host. DIR is at /wheels and the build context at /context inside.
complete_wheels() {
  local dir=$1 out missing round
  shift
  for round in 1 2 3 4 5; do
    if out=$(docker run --rm --network none -v "$PWD/$dir:/wheels:ro" -v "$PWD:/context:ro" \
      "$BASE" python3 -m pip install --dry-run --ignore-installed --no-index \
      --find-links /wheels --quiet --break-system-packages --root-user-action=ignore \
      --disable-pip-version-check "$@" 2>&1); then
      return 0
    fi
    missing=$(missing_from "$out")
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

# build_image IMAGE CONTEXT: IMAGE:<recipe hash> and IMAGE:latest from CONTEXT, reused when the
# recipe is unchanged. The hash covers the base image's ID, every file of CONTEXT but its wheels,
# and the wheels' names. Prints the image's ID.
build_image() {
  local image=$1 context=$2 tag
  tag=$(
    {
      docker image inspect -f '{{.Id}}' "$BASE"
      find "$context" -path "$context/wheels" -prune -o -type f -print | LC_ALL=C sort |
        xargs sha256sum
      find "$context/wheels" -name "*.whl" -printf "%f\n" | LC_ALL=C sort
    } | sha256sum | cut -c1-12
  )
  if docker image inspect "$image:$tag" >/dev/null 2>&1; then
    say "reusing $image:$tag (the recipe is unchanged)"
  else
    # --network none: the build installs from the wheels only; a step that reaches out fails.
    timed "docker build $image:$tag" run docker build --force-rm --network none \
      --label "agenthub.sandbox.recipe=$tag" -t "$image:$tag" "$context" >&2
  fi
  run docker tag "$image:$tag" "$image:latest"
  say "$image:$tag is $(docker image inspect -f '{{.Size}}' "$image:$tag" | numfmt --to=iec-i --suffix=B)"
  docker image inspect -f '{{.Id}}' "$image:$tag"
}

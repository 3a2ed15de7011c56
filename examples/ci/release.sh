#!/bin/sh
# The release pipeline of a project, as steps any CI can call (the GitHub Actions and GitLab CI
# recipes next to this file call nothing else; tests/ci_recipes.rs runs them against a local
# registry). Replaces docker/setup-qemu-action, setup-buildx-action, login-action,
# metadata-action and build-push-action on a machine that has no Docker at all.
#
#   release.sh setup               register the QEMU handlers the build needs (runs sudo)
#   release.sh login               log in to $REGISTRY as $REGISTRY_USER, password from
#                                  $REGISTRY_PASSWORD (through stdin, never an argument)
#   release.sh tags                show what a build of this checkout is tagged (rcross tags)
#   release.sh build               build every platform and push under the computed tags
#   release.sh platform PLATFORM   build one platform and push it by digest: the digest file
#                                  goes to $DIGESTS_DIR (for a matrix of native runners)
#   release.sh join                merge the digests in $DIGESTS_DIR into one index under the
#                                  computed tags (the matrix's last job)
#
# Settings (environment; GitLab's and GitHub's own variables are used when these are unset):
#   IMAGE            REGISTRY/REPO to push to ($CI_REGISTRY_IMAGE on GitLab,
#                    ghcr.io/$GITHUB_REPOSITORY on GitHub)
#   REGISTRY         the registry to log in to (default: IMAGE's first part)
#   REGISTRY_USER / REGISTRY_PASSWORD   ($CI_REGISTRY_USER / $CI_REGISTRY_PASSWORD on GitLab)
#   PLATFORMS        comma-separated (default: rcross.toml's)
#   PROJECT_DIR      the directory holding rcross.toml (default .)
#   EMULATED         platforms `setup` registers handlers for (default linux/arm64,linux/arm/v7)
#   DIGESTS_DIR      where `platform` writes and `join` reads digest files (default digests)
#   RCROSS           the rcross program (default: rcross on PATH)
#   DEFAULT_BRANCH   the branch whose builds are also tagged `edge` (default $CI_DEFAULT_BRANCH,
#                    else main)
#   TAG_FLAGS        tag policy flags (default: --edge --default-branch $DEFAULT_BRANCH, and
#                    --build-number auto when GITHUB_RUN_NUMBER or CI_PIPELINE_IID is set)
set -eu

RCROSS=${RCROSS:-rcross}
PROJECT_DIR=${PROJECT_DIR:-.}
DIGESTS_DIR=${DIGESTS_DIR:-digests}
if [ -z "${TAG_FLAGS+set}" ]; then
  TAG_FLAGS="--edge --default-branch ${DEFAULT_BRANCH:-${CI_DEFAULT_BRANCH:-main}}"
  if [ -n "${GITHUB_RUN_NUMBER:-}${CI_PIPELINE_IID:-}" ]; then
    TAG_FLAGS="$TAG_FLAGS --build-number auto"
  fi
fi

if [ -z "${IMAGE:-}" ]; then
  if [ -n "${CI_REGISTRY_IMAGE:-}" ]; then
    IMAGE=$CI_REGISTRY_IMAGE
  elif [ -n "${GITHUB_REPOSITORY:-}" ]; then
    IMAGE=ghcr.io/$(printf '%s' "$GITHUB_REPOSITORY" | tr '[:upper:]' '[:lower:]')
  fi
fi
REGISTRY=${REGISTRY:-${CI_REGISTRY:-${IMAGE%%/*}}}
REGISTRY_USER=${REGISTRY_USER:-${CI_REGISTRY_USER:-${GITHUB_ACTOR:-}}}
REGISTRY_PASSWORD=${REGISTRY_PASSWORD:-${CI_REGISTRY_PASSWORD:-}}

need() {
  if [ -z "$2" ]; then
    echo "release.sh: $1 is not set" >&2
    exit 2
  fi
}

platform_flags() {
  if [ -n "${PLATFORMS:-}" ]; then
    printf -- '--platform %s' "$PLATFORMS"
  fi
}

step=${1:-}
[ $# -gt 0 ] && shift
case "$step" in
setup)
  # Root is needed to register binfmt_misc handlers; rcross keeps its own PATH lookup.
  sudo "$(command -v "$RCROSS")" setup --platform "${EMULATED:-linux/arm64,linux/arm/v7}"
  ;;
login)
  need REGISTRY "$REGISTRY"
  need REGISTRY_USER "$REGISTRY_USER"
  need REGISTRY_PASSWORD "$REGISTRY_PASSWORD"
  printf '%s' "$REGISTRY_PASSWORD" | "$RCROSS" login "$REGISTRY" -u "$REGISTRY_USER" --password-stdin
  ;;
tags)
  need IMAGE "${IMAGE:-}"
  # shellcheck disable=SC2086 # TAG_FLAGS is a list of flags
  "$RCROSS" tags "$PROJECT_DIR" --image "$IMAGE" $TAG_FLAGS
  ;;
build)
  need IMAGE "${IMAGE:-}"
  # shellcheck disable=SC2046,SC2086
  "$RCROSS" build "$PROJECT_DIR" $(platform_flags) --image "$IMAGE" $TAG_FLAGS \
    --push --metadata-file image.json
  ;;
platform)
  need IMAGE "${IMAGE:-}"
  platform=${1:?usage: release.sh platform PLATFORM}
  slug=$(printf '%s' "$platform" | tr '/' '-')
  mkdir -p "$DIGESTS_DIR"
  # A staging tag per commit and platform: the registry is where the matrix meets; the
  # index the join job makes is what gets the real tags.
  commit=$(git -C "$PROJECT_DIR" rev-parse --short=12 HEAD)
  "$RCROSS" build "$PROJECT_DIR" --platform "$platform" --no-git-tags \
    -t "$IMAGE:stage-$commit-$slug" --push --digest-file "$DIGESTS_DIR/$slug.txt"
  ;;
join)
  need IMAGE "${IMAGE:-}"
  sources=""
  for f in "$DIGESTS_DIR"/*.txt; do
    [ -f "$f" ] || { echo "release.sh: no digest files in $DIGESTS_DIR" >&2; exit 2; }
    # Line 1 is the index digest, line 2 REGISTRY/REPO@DIGEST.
    sources="$sources $(sed -n 2p "$f")"
  done
  tag_args=""
  # shellcheck disable=SC2086
  for ref in $("$RCROSS" tags "$PROJECT_DIR" --image "$IMAGE" $TAG_FLAGS); do
    tag_args="$tag_args -t $ref"
  done
  # shellcheck disable=SC2086
  "$RCROSS" manifest create $tag_args $sources
  ;;
*)
  echo "usage: release.sh setup|login|tags|build|platform PLATFORM|join" >&2
  exit 2
  ;;
esac

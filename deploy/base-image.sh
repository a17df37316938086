#!/bin/sh
# Makes the image that the platform's and PostgreSQL's Containerfiles start FROM, from Debian's own
# packages, for a machine that reaches no container registry (where one is reachable, build with
# --build-arg BASE=<an image with Python 3.11.4 or later, its venv module and apt> instead). Needs
# root and debootstrap; takes one to two minutes.
#   deploy/base-image.sh [IMAGE]   (default localhost/modelrunner-base:trixie)
set -eu
image=${1:-localhost/modelrunner-base:trixie}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# Trixie, not bookworm: bookworm's Python 3.11.2 predates tarfile's extraction filters (3.11.4),
# which modelrunner unpacks model snapshots with. git: the datasets kept in git repositories.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,git \
  trixie "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The downloaded packages and indexes would only make the image 110 MB bigger.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | podman import - "$image"

#!/bin/sh
# Make the offline base image and the wheelhouse, for machines where no image registry is
# reachable. Idempotent: each step is skipped when its output already exists (and, for the wheels,
# was made for the same requirements).
#   services/base/build.sh            -> image mlplatform-base:bookworm, services/base/wheelhouse/*.whl
# Needs: debootstrap and a running Docker engine (root). Takes about 40 s + 10 s here.
# Users with a registry skip this and build with their usual BASE_IMAGE.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
image=${BASE_IMAGE_NAME:-mlplatform-base:bookworm}
python=${PYTHON:-python3}

# The wheelhouse is stamped with the requirements it was made for: a changed pin downloads again.
stamp="$here/wheelhouse/.requirements.sha256"
want=$(cat "$root/services/api/requirements.txt" "$root/services/mlflow/requirements.txt" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ "${REBUILD_WHEELS:-0}" = 1 ]; then
    echo "wheelhouse: downloading wheels for the service images"
    "$python" -m pip download --quiet --only-binary=:all: --python-version 3.11 \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_34_x86_64 --platform linux_x86_64 --platform any \
        -d "$here/wheelhouse" -r "$root/services/api/requirements.txt" -r "$root/services/mlflow/requirements.txt"
    echo "$want" > "$stamp"
fi

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "base image: $image present"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "base image: install debootstrap (apt-get install -y debootstrap)" >&2; exit 1; }
rootfs=$(mktemp -d /tmp/mlplatform-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT INT TERM
echo "base image: debootstrap bookworm into $rootfs"
debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,curl,ca-certificates,postgresql-15 \
    bookworm "$rootfs" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' - "$image"
echo "base image: $image built"

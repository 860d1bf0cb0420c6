//go:build tools

// Package tools pins etcd's server module, whose root package is the etcd
// program (scripts/cluster-build.sh builds it); a module of its own so that
// etcd's dependency versions do not move kube-apiserver's.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)

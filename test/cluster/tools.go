//go:build tools

// Package tools pins the upstream control-plane programs that test/cluster
// builds (scripts/cluster-build.sh); it is never compiled on its own.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)

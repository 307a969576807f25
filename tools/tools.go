//go:build tools

// Package tools pins the test-only commands that Debian does not package:
// containerd 2.x (the newest release line) and crictl from cri-tools.
// scripts/go-tools.sh builds them; the end-to-end tests drive them.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)

//go:build tools

// Package tools pins containerd 2.0, the one 2.x release line whose CRI
// plugin still pulls images itself: from 2.1 on, CRI pulls go through the
// transfer service, which reads hosts.toml on a different code path. One
// go.mod holds one containerd version, hence this module of its own.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)

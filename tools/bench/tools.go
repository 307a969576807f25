//go:build tools

// Package tools pins the registry peers and sync tools the WAN benchmark
// (scripts/bench-wan.sh) compares wharf with. Nothing here is compiled into
// wharf; scripts/bench-tools.sh builds the commands into a cache folder.
package tools

import (
	_ "github.com/distribution/distribution/v3/cmd/registry"
	_ "github.com/google/go-containerregistry/cmd/crane"
	_ "github.com/regclient/regclient/cmd/regsync"
)

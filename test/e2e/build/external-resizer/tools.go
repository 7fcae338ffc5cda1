//go:build tools

// Package tools records the command's package as a dependency so that go.sum
// holds every line the build needs.
package tools

import _ "github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer"

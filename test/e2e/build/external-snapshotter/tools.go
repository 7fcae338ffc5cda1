//go:build tools

// Package tools records the commands' packages as dependencies so that
// go.sum holds every line the build needs.
package tools

import (
	_ "github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter"
	_ "github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller"
)

//go:build tools

// Package tools records the etcd server main package as a dependency so that
// go.sum holds every line the build needs.
package tools

import _ "go.etcd.io/etcd/server/v3"

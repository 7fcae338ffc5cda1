//go:build tools

// Package tools records helm's main package as a dependency so that go.sum
// holds every line the build needs.
package tools

import _ "helm.sh/helm/v4/cmd/helm"

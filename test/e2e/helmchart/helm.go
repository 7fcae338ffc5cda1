// Package helmchart runs the helm command on dirvol's chart (charts/dirvol)
// as users run it, reads what helm template renders, and compares rendered
// objects field by field with another render (deploy/'s kustomizations).
package helmchart

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Helm runs one helm binary. Its configuration, cache and data directories
// are under Home, so no repository, plugin or registry login of the user's
// takes part and nothing is written to $HOME.
type Helm struct {
	// Bin is the helm binary (binaries.EnsureHelm).
	Bin string
	// Home holds helm's config, cache and data directories.
	Home string
	// Kubeconfig is passed as --kubeconfig to the commands that reach a
	// cluster (install, uninstall, list, get).
	Kubeconfig string
}

// Error is a helm command that failed: its arguments and what it wrote to
// standard error, which is what a user would read.
type Error struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("helm %s: %v: %s", strings.Join(e.Args, " "), e.Err, strings.TrimSpace(e.Stderr))
}

func (e *Error) Unwrap() error { return e.Err }

// Run runs helm with args and returns its standard output; a failure is an
// *Error.
func (h Helm) Run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, h.Bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(h.Home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(h.Home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(h.Home, "data"),
	)
	if h.Kubeconfig != "" {
		cmd.Env = append(cmd.Env, "KUBECONFIG="+h.Kubeconfig)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &Error{Args: args, Stderr: stderr.String(), Err: err}
	}
	return stdout.Bytes(), nil
}

// Template renders chart as `helm template <release> <chart> args...` and
// returns the objects, in helm's order.
func (h Helm) Template(ctx context.Context, release, chart string, args ...string) ([]*unstructured.Unstructured, error) {
	out, err := h.Run(ctx, append([]string{"template", release, chart}, args...)...)
	if err != nil {
		return nil, err
	}
	return Parse(out)
}

// Parse reads a stream of YAML documents (helm template's output, helm get
// manifest's) into objects, skipping empty documents.
func Parse(b []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("parse %q: %w", firstLines(doc), err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

func firstLines(b []byte) string {
	lines := strings.SplitN(string(b), "\n", 4)
	return strings.Join(lines[:min(3, len(lines))], "\n")
}

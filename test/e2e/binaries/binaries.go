// Package binaries builds the pinned control-plane and sidecar binaries the
// e2e cluster runs, from the Go module proxy, and caches them in a directory
// keyed by their versions so that only the first run pays for the build.
//
// Each binary is built from a small module under test/e2e/build/<module>
// whose go.mod pins the upstream release (and copies the replace directives
// that stop upstream from being `go install`ed).
package binaries

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Versions of the upstream releases. They must match the build modules'
// go.mod files; the cache key also hashes those files, so a change there
// alone is enough to trigger a rebuild.
const (
	KubernetesVersion  = "v1.37.2"
	EtcdVersion        = "v3.6.16"
	ProvisionerVersion = "v6.3.0"
	SnapshotterVersion = "v8.7.0"
	ResizerVersion     = "v2.3.0"
	HelmVersion        = "v4.3.2"
)

// Binary names, as the harness looks them up in a Set.
const (
	Etcd                  = "etcd"
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
	CSIProvisioner        = "csi-provisioner"
	CSISnapshotter        = "csi-snapshotter"
	SnapshotController    = "snapshot-controller"
	Kubelet               = "kubelet"
	Kubectl               = "kubectl"
	CSIResizer            = "csi-resizer"
	// helm, for the chart tests (lint, template) and the chart's
	// install on a real node.
	Helm = "helm"

	// The Kubernetes external storage suite (make conformance): the
	// suite's test binary, the ginkgo runner, and agnhost for the suite's
	// images.
	StorageSuite = "storage-e2e.test"
	Ginkgo       = "ginkgo"
	Agnhost      = "agnhost"
)

// component is one binary: the build module it comes from, its main
// package and the link flags that stamp its version.
type component struct {
	name    string
	module  string // directory under test/e2e/build
	pkg     string
	ldflags string
}

// test reports whether c is a package's test binary (go test -c), which
// its name says by ending in .test, as go test names them.
func (c component) test() bool { return strings.HasSuffix(c.name, ".test") }

// kubeLDFlags stamp the version the way Kubernetes' own build does; without
// them the components report v0.0.0-master and version skew checks get
// confused.
var kubeLDFlags = strings.Join([]string{
	"-X k8s.io/component-base/version.gitVersion=" + KubernetesVersion,
	"-X k8s.io/component-base/version.gitMajor=1",
	"-X k8s.io/component-base/version.gitMinor=37",
	"-X k8s.io/component-base/version.gitTreeState=clean",
}, " ")

// components lists the binaries in build order: the smaller ones first, so a
// broken module setup shows up early.
var components = []component{
	{Etcd, "etcd", "go.etcd.io/etcd/server/v3", ""},
	{KubeScheduler, "kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler", kubeLDFlags},
	{KubeControllerManager, "kubernetes", "k8s.io/kubernetes/cmd/kube-controller-manager", kubeLDFlags},
	{KubeAPIServer, "kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver", kubeLDFlags},
	{CSIProvisioner, "external-provisioner", "github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner", "-X main.version=" + ProvisionerVersion},
	{CSISnapshotter, "external-snapshotter", "github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter", "-X main.version=" + SnapshotterVersion},
	{SnapshotController, "external-snapshotter", "github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller", "-X main.version=" + SnapshotterVersion},
	// The real node's kubelet: last, so the control plane's packages it
	// shares are already compiled.
	{Kubelet, "kubernetes", "k8s.io/kubernetes/cmd/kubelet", kubeLDFlags},
	// kubectl, for the real node's tests of kubectl exec and logs (and
	// the storage conformance suite, which runs it).
	{Kubectl, "kubernetes", "k8s.io/kubernetes/cmd/kubectl", kubeLDFlags},
	{CSIResizer, "external-resizer", "github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer", "-X main.version=" + ResizerVersion},
	helmComponent,
}

// helmComponent is helm, stamped with its release as upstream's Makefile
// stamps it (helm version, and the chart's kubeVersion checks, read it).
var helmComponent = component{Helm, "helm", "helm.sh/helm/v4/cmd/helm", "-X helm.sh/helm/v4/internal/version.version=" + HelmVersion}

// conformanceComponents are what `make conformance` adds to components:
// built only on demand (EnsureConformance), since the other tests need none
// of them.
var conformanceComponents = []component{
	// The storage side of upstream's e2e.test only (see
	// build/kubernetes/storagesuite): a fraction of the whole e2e.test's
	// compile time.
	{StorageSuite, "kubernetes", "github.com/dirvol/dirvol/test/e2e/build/kubernetes/storagesuite", kubeLDFlags},
	{Ginkgo, "kubernetes", "github.com/onsi/ginkgo/v2/ginkgo", ""},
	// agnhost, the program of the suite's host-exec and exec pods, at
	// the version manifest.go of the same release names.
	{Agnhost, "kubernetes", "k8s.io/kubernetes/test/images/agnhost", ""},
}

// Set maps a binary name to its path.
type Set map[string]string

// Path returns the path of the named binary.
func (s Set) Path(name string) string { return s[name] }

// DefaultCacheDir is ${DIRVOL_E2E_CACHE:-$HOME/.cache/dirvol-e2e}.
func DefaultCacheDir() (string, error) {
	if dir := os.Getenv("DIRVOL_E2E_CACHE"); dir != "" {
		return dir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no DIRVOL_E2E_CACHE and no home directory for the binary cache: %w", err)
	}
	return filepath.Join(home, ".cache", "dirvol-e2e"), nil
}

// Key names the cache directory: the versions, readable, plus a hash of the
// build modules' go.mod and go.sum and the link flags, so any change to how
// a binary is built lands in a fresh directory.
func Key(buildRoot string) (string, error) {
	h := sha256.New()
	seen := map[string]bool{}
	for _, c := range append(components, conformanceComponents...) {
		fmt.Fprintf(h, "%s %s %s\n", c.name, c.pkg, c.ldflags)
		if seen[c.module] {
			continue
		}
		seen[c.module] = true
		for _, f := range []string{"go.mod", "go.sum"} {
			b, err := os.ReadFile(filepath.Join(buildRoot, c.module, f))
			if err != nil {
				return "", fmt.Errorf("build module %s: %w", c.module, err)
			}
			h.Write(b)
		}
	}
	return fmt.Sprintf("k8s-%s_etcd-%s_prov-%s_snap-%s_resizer-%s_helm-%s_%s", KubernetesVersion, EtcdVersion,
		ProvisionerVersion, SnapshotterVersion, ResizerVersion, HelmVersion, hex.EncodeToString(h.Sum(nil))[:12]), nil
}

// Ensure returns the binaries, building those not yet in
// <cacheDir>/<key>/bin. buildRoot is test/e2e/build. Progress and the time
// each build took go to log. Concurrent callers (parallel test packages)
// serialize on a lock file, so each binary is built once.
func Ensure(ctx context.Context, buildRoot, cacheDir string, log io.Writer) (Set, error) {
	return ensure(ctx, buildRoot, cacheDir, components, log)
}

// EnsureHelm is Ensure for helm alone, in the same cache directory: the
// chart tests need no cluster, so a cold machine builds nothing else for
// them.
func EnsureHelm(ctx context.Context, buildRoot, cacheDir string, log io.Writer) (string, error) {
	set, err := ensure(ctx, buildRoot, cacheDir, []component{helmComponent}, log)
	if err != nil {
		return "", err
	}
	return set.Path(Helm), nil
}

// EnsureConformance is Ensure for the binaries of the external storage
// suite (conformanceComponents), in the same cache directory.
func EnsureConformance(ctx context.Context, buildRoot, cacheDir string, log io.Writer) (Set, error) {
	return ensure(ctx, buildRoot, cacheDir, conformanceComponents, log)
}

func ensure(ctx context.Context, buildRoot, cacheDir string, list []component, log io.Writer) (Set, error) {
	key, err := Key(buildRoot)
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(cacheDir, key, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lock(filepath.Join(cacheDir, key, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	set := Set{}
	for _, c := range list {
		out := filepath.Join(bin, c.name)
		set[c.name] = out
		if _, err := os.Stat(out); err == nil {
			continue
		}
		start := time.Now()
		fmt.Fprintf(log, "e2e: building %s (%s) into %s; a cold build of all of them takes about 25 minutes on 2 cores\n", c.name, c.pkg, bin)
		if err := build(ctx, filepath.Join(buildRoot, c.module), c, out, log); err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "e2e: built %s in %s\n", c.name, time.Since(start).Round(time.Second))
	}
	return set, nil
}

// build runs go build into a temporary name and renames it into place, so a
// build cut short never leaves a binary that looks complete.
func build(ctx context.Context, dir string, c component, out string, log io.Writer) error {
	tmp := out + ".tmp"
	args := []string{"build", "-trimpath", "-o", tmp}
	if c.test() {
		// The suite is vetted where it is developed, not at every build.
		args = []string{"test", "-c", "-vet=off", "-trimpath", "-o", tmp}
	}
	if c.ldflags != "" {
		args = append(args, "-ldflags", c.ldflags)
	}
	args = append(args, c.pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	// The build modules pin everything in their own go.mod and go.sum:
	// -mod=readonly makes a missing line an error instead of an edit. They
	// sit inside dirvol's git tree, whose state has nothing to do with the
	// binaries: -buildvcs=false keeps it out of them.
	cmd.Env = append(os.Environ(), "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=readonly -buildvcs=false"))
	cmd.Stdout = log
	cmd.Stderr = log
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("go build %s in %s: %w", c.pkg, dir, err)
	}
	return os.Rename(tmp, out)
}

// lock takes an exclusive flock on path, waiting for another builder.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// ModuleRoot returns the directory of the test/e2e module, found by walking
// up from the working directory (go test runs each package in its own
// directory) to the go.mod that declares it.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/dirvol/dirvol/test/e2e\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the github.com/dirvol/dirvol/test/e2e module")
		}
		dir = parent
	}
}

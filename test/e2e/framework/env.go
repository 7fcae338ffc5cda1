// Package framework is what the e2e tests and the benchmark share: the
// cluster they run against (the local control plane of package cluster, or
// an existing cluster such as kind through E2E_KUBECONFIG), and helpers that
// create objects and wait for what Kubernetes and dirvol do with them.
package framework

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dirvol/dirvol/test/e2e/binaries"
	"github.com/dirvol/dirvol/test/e2e/cluster"
	"github.com/dirvol/dirvol/test/e2e/images"
	"github.com/dirvol/dirvol/test/e2e/manifests"
	"github.com/dirvol/dirvol/test/e2e/netns"
	"github.com/dirvol/dirvol/test/e2e/nodedisk"
)

// Environment variables the tests read.
const (
	// EnvKubeconfig points the tests at an existing cluster with dirvol
	// installed from deploy/ (make e2e-kind sets it); unset, they build and
	// start the local control plane.
	EnvKubeconfig = "E2E_KUBECONFIG"
	// EnvDataDir is the driver's data directory on the nodes of an existing
	// cluster (default /var/lib/dirvol, as in deploy/).
	EnvDataDir = "E2E_DATA_DIR"
	// EnvKeep keeps the local cluster's run directory (logs, data dirs)
	// after the run.
	EnvKeep = "E2E_KEEP"
)

// DriverName is the CSI driver name deploy/ installs.
const DriverName = "dirvol.csi.dev"

// ErrSkip wraps the reason the cluster cannot be built on this machine.
var ErrSkip = errors.New("cannot build the e2e cluster here")

// Env is the cluster under test.
type Env struct {
	Config  *rest.Config
	Kube    kubernetes.Interface
	Snap    snapclient.Interface
	Applier *manifests.Applier
	Disk    nodedisk.NodeDisk
	// Nodes are the names of the nodes that run dirvol.
	Nodes []string
	// Namespace is where dirvol runs and publishes CSIStorageCapacity.
	Namespace string
	// DeployDir is the repository's deploy/.
	DeployDir string
	// Local is set for the local control plane (nil for a kubeconfig).
	Local *cluster.Cluster
	// Kubeconfig is the file kubectl uses; KubectlPath the kubectl binary
	// (the harness's build on the local cluster, kubectl on PATH
	// otherwise).
	Kubeconfig, KubectlPath string
	// Chart is the helm release that installed dirvol on the real node
	// (Options.Chart), with its helm pointed at the cluster; nil otherwise.
	Chart *cluster.ChartInstall
	// AuditLog is the local kube-apiserver's audit log (Options.AuditLog),
	// empty without one.
	AuditLog string
}

// Supports reports whether dirvol advertises the controller capability:
// asked over the driver's socket on the local cluster; on an existing
// cluster, CREATE_DELETE_SNAPSHOT and CLONE_VOLUME (which land together) are
// taken as advertised when the csi-snapshotter sidecar is running, since it
// exits at start without them.
func (e *Env) Supports(ctx context.Context, c csi.ControllerServiceCapability_RPC_Type) bool {
	if e.Local != nil {
		return e.Local.Supports(c)
	}
	switch c {
	case csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT, csi.ControllerServiceCapability_RPC_CLONE_VOLUME:
		pods, err := e.Kube.CoreV1().Pods(e.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, p := range pods.Items {
			for _, s := range p.Status.ContainerStatuses {
				if s.Name == "csi-snapshotter" && s.Ready {
					return true
				}
			}
		}
		return false
	}
	return true
}

// Diagnose returns what helps explain a failure: components that crashed,
// and the tails of the logs of the components named (all when none).
func (e *Env) Diagnose(lines int, names ...string) string {
	if e.Local == nil {
		return "(existing cluster: see the dirvol-node pods' logs)"
	}
	var b strings.Builder
	if err := e.Local.Check(); err != nil {
		fmt.Fprintf(&b, "crashed components:\n%v\n", err)
	}
	b.WriteString(e.Local.Tails(lines, names...))
	return b.String()
}

// Options configure Setup.
type Options struct {
	// Nodes of the local cluster (ignored with E2E_KUBECONFIG).
	Nodes []cluster.NodeOptions
	// Log receives progress lines (binary builds, component starts).
	Log io.Writer
	// RealNode adds a node run by a real kubelet and containerd, named
	// RealNodeName (local cluster only). The process must have entered the
	// tests' network namespace (netns.Enter).
	RealNode bool
	// Deploy installs deploy/ on the real node, as shipped but for the
	// image references (the dirvol image built as `make image` does,
	// the sidecars from the harness's binaries); dirvol's tests then run
	// there.
	Deploy bool
	// Chart, with Deploy, installs dirvol with `helm install` of
	// charts/dirvol instead, with --set overrides of the same image
	// references (Env.Chart).
	Chart bool
	// Images are more docker archives the real node imports before the
	// kubelet starts (a test suite's images).
	Images []string
	// AuditLog has the local cluster's kube-apiserver write an audit log of
	// every request (Env.AuditLog), for counting requests per client.
	AuditLog bool
}

// RealNodeName is the real node's name.
const RealNodeName = "real-0"

// RealNodeDataDir is dirvol's data dir on the real node: deploy/'s hostPath.
const RealNodeDataDir = "/var/lib/dirvol"

// DeployedKustomization is the kustomization of deploy/ the real node runs
// (through the image overlay): base plus the btrfs image pool, so that
// sizes are enforced and the dirvol-btrfs class exists.
const DeployedKustomization = "overlays/image-pool"

// Setup returns the cluster under test and a function that tears it down.
// With E2E_KUBECONFIG it connects to that cluster; otherwise it builds the
// binaries (cached) and dirvol, and starts a local cluster. An error
// wrapping ErrSkip means this machine cannot run the local cluster.
func Setup(ctx context.Context, opts Options) (*Env, func(), error) {
	root, err := binaries.ModuleRoot()
	if err != nil {
		return nil, nil, err
	}
	deployDir := filepath.Join(root, "..", "..", "deploy")
	if kc := os.Getenv(EnvKubeconfig); kc != "" {
		e, err := existing(ctx, kc, deployDir)
		return e, func() {}, err
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if os.Geteuid() != 0 {
		return nil, nil, fmt.Errorf("%w: the local cluster needs root (tmpfs disks for the nodes, dirvol's mounts); run as root or set %s", ErrSkip, EnvKubeconfig)
	}
	if _, err := exec.LookPath("go"); err != nil {
		return nil, nil, fmt.Errorf("%w: no go command to build the control plane", ErrSkip)
	}
	cache, err := binaries.DefaultCacheDir()
	if err != nil {
		return nil, nil, err
	}
	bins, err := binaries.Ensure(ctx, filepath.Join(root, "build"), cache, opts.Log)
	if err != nil {
		return nil, nil, err
	}
	crdDir, err := snapshotCRDDir(ctx, root)
	if err != nil {
		return nil, nil, err
	}
	removeStaleRunDirs(realNodeLock(cache))
	dir, err := newRunDir()
	if err != nil {
		return nil, nil, err
	}
	driver, err := cluster.BuildDriver(ctx, filepath.Join(root, "..", ".."), dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	keep := os.Getenv(EnvKeep) != ""
	var real *cluster.RealNodeOptions
	if opts.RealNode {
		if real, err = realNode(ctx, root, dir, cache, bins, opts.Deploy, opts.Chart, opts.Log); err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
		real.Images = append(real.Images, opts.Images...)
	}
	var auditLog string
	if opts.AuditLog {
		auditLog = filepath.Join(dir, "audit.log")
	}
	c, err := cluster.Start(ctx, cluster.Options{
		Nodes: opts.Nodes, Dir: dir, Bins: bins, Driver: driver,
		DeployDir: deployDir, SnapshotCRDDir: crdDir, Log: opts.Log, Keep: keep,
		RealNode: real, AuditLog: auditLog,
	})
	if err != nil {
		return nil, nil, err
	}
	stop := func() {
		c.Stop(keep)
		if keep {
			fmt.Fprintf(opts.Log, "e2e: kept %s (%s set)\n", dir, EnvKeep)
		}
	}
	e := &Env{Config: c.RESTConfig, Kube: c.Kube, Applier: c.Applier, Namespace: c.Namespace, DeployDir: deployDir, Local: c,
		Kubeconfig: c.Kubeconfig, KubectlPath: bins.Path(binaries.Kubectl), AuditLog: auditLog}
	disk := nodedisk.Local{}
	for _, n := range c.Nodes {
		e.Nodes = append(e.Nodes, n.Name)
		disk[n.Name] = n.DataDir
	}
	if c.Real != nil && c.Real.DriverPod != "" {
		e.Nodes = append(e.Nodes, c.Real.Name)
		disk[c.Real.Name] = RealNodeDataDir
	}
	e.Disk = disk
	if real != nil && real.Chart != nil {
		ci := *real.Chart
		ci.Helm.Kubeconfig = c.Kubeconfig
		e.Chart = &ci
	}
	if e.Snap, err = snapclient.NewForConfig(c.RESTConfig); err != nil {
		stop()
		return nil, nil, err
	}
	if len(e.Nodes) == 0 {
		return e, stop, nil
	}
	if err := e.WaitCapacities(ctx, cluster.StartTimeout); err != nil {
		err = fmt.Errorf("%w\n%s", err, e.Diagnose(20, "csi-provisioner"))
		stop()
		return nil, nil, err
	}
	return e, stop, nil
}

// existing connects to the cluster of kubeconfig, where deploy/ is
// installed: nodes are those with a dirvol CSINode entry, disks are reached
// with docker exec (kind's nodes are containers named after the node).
func existing(ctx context.Context, kubeconfig, deployDir string) (*Env, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 200, 400
	e := &Env{Config: cfg, Namespace: "dirvol", DeployDir: deployDir, Kubeconfig: kubeconfig, KubectlPath: "kubectl"}
	if e.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if e.Snap, err = snapclient.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if e.Applier, err = manifests.NewApplier(cfg); err != nil {
		return nil, err
	}
	dataDir := os.Getenv(EnvDataDir)
	if dataDir == "" {
		dataDir = "/var/lib/dirvol"
	}
	e.Disk = nodedisk.DockerExec{DataDir: dataDir}
	csiNodes, err := e.Kube.StorageV1().CSINodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, n := range csiNodes.Items {
		for _, d := range n.Spec.Drivers {
			if d.Name == DriverName {
				e.Nodes = append(e.Nodes, n.Name)
			}
		}
	}
	if len(e.Nodes) == 0 {
		return nil, fmt.Errorf("no node of the cluster in %s has driver %s registered (is deploy/ installed?)", kubeconfig, DriverName)
	}
	// The StorageClasses the tests use are deploy/base's; install them in
	// case the cluster has only an overlay that renamed or dropped some.
	if err := e.InstallStorageClasses(ctx); err != nil {
		return nil, err
	}
	return e, e.WaitCapacities(ctx, cluster.StartTimeout)
}

// InstallStorageClasses applies deploy/base's StorageClasses and
// VolumeAttributesClasses.
func (e *Env) InstallStorageClasses(ctx context.Context) error {
	objs, err := manifests.Render(filepath.Join(e.DeployDir, "base"))
	if err != nil {
		return err
	}
	for _, kind := range []string{"StorageClass", "VolumeAttributesClass"} {
		for _, o := range manifests.Select(objs, kind) {
			if err := e.Applier.Apply(ctx, o, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// snapshotCRDDir finds external-snapshotter's client/config/crd in the module
// cache, at the version this module requires.
func snapshotCRDDir(ctx context.Context, root string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/kubernetes-csi/external-snapshotter/client/v8")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locate the snapshot CRDs: go list -m: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd")
	if _, err := os.Stat(filepath.Join(dir, "kustomization.yaml")); err != nil {
		return "", fmt.Errorf("snapshot CRDs: %w", err)
	}
	return dir, nil
}

// realNode writes the images the real node runs (pause, busybox) into the
// run directory and describes the node.
func realNode(ctx context.Context, moduleRoot, dir, cache string, bins binaries.Set, deploy, chart bool, log io.Writer) (*cluster.RealNodeOptions, error) {
	if !netns.Inside() {
		return nil, errors.New("a real node runs only inside the tests' network namespace: call netns.Enter in TestMain")
	}
	imgDir := filepath.Join(dir, "images")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return nil, err
	}
	pause, busybox := filepath.Join(imgDir, "pause.tar"), filepath.Join(imgDir, "busybox.tar")
	if err := images.Pause(ctx, pause, moduleRoot); err != nil {
		return nil, err
	}
	if err := images.Busybox(ctx, busybox, "/bin/busybox"); err != nil {
		return nil, err
	}
	o := &cluster.RealNodeOptions{
		Name: RealNodeName, IP: netns.NodeIP,
		Images: []string{pause, busybox}, PauseImage: images.PauseRef,
		LockFile: realNodeLock(cache),
	}
	if !deploy {
		return o, nil
	}
	repoRoot := filepath.Join(moduleRoot, "..", "..")
	begin := time.Now()
	driverImage := filepath.Join(imgDir, "dirvol.tar")
	if err := buildDriverImage(ctx, repoRoot, driverImage, log); err != nil {
		return nil, err
	}
	sidecars, err := sidecarImages(ctx, filepath.Join(repoRoot, "deploy"), imgDir, bins, driverContainer)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "e2e: images for deploy/ written in %s\n", time.Since(begin).Round(time.Millisecond))
	o.Images = append(o.Images, driverImage)
	var overlay []manifests.Image
	for _, s := range sidecars {
		o.Images = append(o.Images, s.archive)
		overlay = append(overlay, s.entry)
	}
	if chart {
		o.Chart = chartInstall(repoRoot, dir, bins, sidecars)
		return o, nil
	}
	o.Deploy = filepath.Join(dir, "deploy-overlay")
	if _, err := manifests.Overlay(o.Deploy, filepath.Join(repoRoot, "deploy", DeployedKustomization), overlay); err != nil {
		return nil, err
	}
	return o, nil
}

// realNodeLock is the file real nodes on this host serialize on.
func realNodeLock(cache string) string { return filepath.Join(cache, "real-node.lock") }

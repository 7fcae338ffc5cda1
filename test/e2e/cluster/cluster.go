// Package cluster runs a Kubernetes control plane built from source (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler) on loopback, with
// N kubelet-less nodes, each with its own dirvol process and the sidecars of
// deploy/'s DaemonSet. Pods on those get scheduled but never run, which is
// all that WaitForFirstConsumer provisioning, reclaim and capacity need.
// Optionally one real node (containerd and a kubelet, realnode.go) runs pods
// for real; the cluster then lives in a network namespace of the tests'.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dirvol/dirvol/test/e2e/binaries"
	"github.com/dirvol/dirvol/test/e2e/manifests"
)

// StartTimeout bounds how long one component may take to become ready.
const StartTimeout = 2 * time.Minute

// NodeOptions describes one node.
type NodeOptions struct {
	Name string
	// DiskBytes, when positive, gives the node a disk (data dir) of that
	// size, a tmpfs; otherwise the data dir is on the run directory's
	// filesystem.
	DiskBytes int64
	// Pods is how many pods the node takes (its pods capacity); 0 means
	// 500, room for the benchmark's default 100 on one node.
	Pods int
}

// Options configure a Cluster.
type Options struct {
	Nodes []NodeOptions
	// Dir is the run directory: certificates, etcd data, logs, node data
	// dirs. Stop removes it.
	Dir string
	// Bins are the control-plane and sidecar binaries.
	Bins binaries.Set
	// Driver is the dirvol binary (BuildDriver).
	Driver string
	// DeployDir is the repository's deploy/ directory: the sidecars run
	// with the arguments of its DaemonSet, and its CSIDriver and
	// StorageClasses are installed.
	DeployDir string
	// SnapshotCRDDir holds the VolumeSnapshot CRDs with a kustomization
	// (external-snapshotter's client/config/crd).
	SnapshotCRDDir string
	// Log receives progress lines.
	Log io.Writer
	// Keep leaves Dir in place when the cluster stops (or fails to start).
	Keep bool
	// RealNode, when set, adds a node run by a real kubelet and
	// containerd. The process must be inside the tests' network namespace
	// (package netns): kube-apiserver then listens on every address of
	// that namespace, port 443, so pods reach it at the kubernetes
	// Service's ClusterIP.
	RealNode *RealNodeOptions
	// AuditLog, when set, is the file kube-apiserver writes an audit
	// record of every request to (watches aside, metadata only), so a
	// benchmark can count requests per client (user agent).
	AuditLog string
}

// Node is one kubelet-less node and its node plugin.
type Node struct {
	Name string
	// DataDir is the driver's --data-dir on this host.
	DataDir string
	Socket  string

	info                                      DriverInfo
	pods                                      int  // pods capacity
	disk                                      bool // a tmpfs is mounted on DataDir
	driver, provisioner, snapshotter, resizer *process
}

// Info returns what the driver reported at registration.
func (n *Node) Info() DriverInfo { return n.info }

// Cluster is a running test cluster.
type Cluster struct {
	Kubeconfig string
	RESTConfig *rest.Config
	Kube       kubernetes.Interface
	Applier    *manifests.Applier
	Nodes      []*Node
	// Namespace is the namespace of deploy/'s node plugin, where the
	// provisioners publish CSIStorageCapacity objects.
	Namespace string
	// Real is the real node (Options.RealNode), nil without one.
	Real *RealNode

	opts    Options
	dir     string
	pki     *pki
	ports   ports
	bins    binaries.Set
	base    []*unstructured.Unstructured // rendered deploy/base
	etcdURL string
	apiURL  string

	kcm *process // stopped first when draining the real node

	mu    sync.Mutex
	procs []*process
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

// Start brings the cluster up. On error everything started so far is
// stopped again, and the error carries the tails of the logs.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	c := &Cluster{opts: opts, dir: opts.Dir, bins: opts.Bins}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\nlast lines of the logs:\n%s", err, c.Tails(15))
			c.Stop(opts.Keep)
		}
	}()
	if err := os.MkdirAll(filepath.Join(c.dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	if o := opts.RealNode; o != nil {
		if err := c.lockRealNode(ctx, *o); err != nil {
			return nil, err
		}
	}
	if c.base, err = manifests.Render(filepath.Join(opts.DeployDir, "base")); err != nil {
		return nil, err
	}
	c.Namespace = "dirvol"
	if ns := manifests.Select(c.base, "Namespace"); len(ns) == 1 {
		c.Namespace = ns[0].GetName()
	}
	var apiIPs []net.IP
	if opts.RealNode != nil {
		apiIPs = append(apiIPs, net.ParseIP(opts.RealNode.IP))
	}
	if c.pki, err = newPKI(filepath.Join(c.dir, "pki"), apiIPs...); err != nil {
		return nil, err
	}
	begin := time.Now()
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"etcd", c.startEtcd},
		{"kube-apiserver", c.startAPIServer},
		{"clients", c.connect},
		{"kube-controller-manager", c.startControllerManager},
		{"kube-scheduler", c.startScheduler},
		{installBaseStep, c.installBase},
		{"snapshot CRDs and snapshot-controller", c.installSnapshots},
	}
	for _, s := range steps {
		if s.name == installBaseStep && opts.RealNode != nil && opts.RealNode.Chart != nil {
			// The chart installs them, and helm refuses to take over
			// objects it did not make.
			continue
		}
		if err := s.fn(ctx); err != nil {
			return nil, fmt.Errorf("start %s: %w", s.name, err)
		}
		fmt.Fprintf(opts.Log, "e2e: %s up after %s\n", s.name, time.Since(begin).Round(time.Millisecond))
	}
	for _, no := range opts.Nodes {
		if err := c.addNode(ctx, no); err != nil {
			return nil, fmt.Errorf("node %s: %w", no.Name, err)
		}
	}
	if o := opts.RealNode; o != nil {
		if err := c.startRealNode(ctx, *o); err != nil {
			return nil, fmt.Errorf("real node %s: %w", o.Name, err)
		}
		fmt.Fprintf(opts.Log, "e2e: real node %s Ready after %s\n", o.Name, time.Since(begin).Round(time.Millisecond))
	}
	hbCtx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	c.wg.Go(func() { c.heartbeats(hbCtx) })
	fmt.Fprintf(opts.Log, "e2e: cluster with %d node(s) up after %s\n", len(c.Nodes), time.Since(begin).Round(time.Millisecond))
	return c, nil
}

func (c *Cluster) connect(context.Context) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	// The tests create and watch hundreds of objects (benchmark); the
	// default 5 QPS would measure the client, not the cluster.
	cfg.QPS, cfg.Burst = 200, 400
	c.RESTConfig = cfg
	if c.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	c.Applier, err = manifests.NewApplier(cfg)
	return err
}

// installBaseStep names the step of Start that runs installBase.
const installBaseStep = "deploy/base CSIDriver and StorageClasses"

// installBase applies, for real, what of deploy/base a cluster without the
// DaemonSet needs: the namespace (CSIStorageCapacity objects live there),
// the CSIDriver (the scheduler reads storageCapacity from it), the
// StorageClasses and the VolumeAttributesClasses, so the tests use the
// classes users install.
func (c *Cluster) installBase(ctx context.Context) error {
	for _, kind := range []string{"Namespace", "CSIDriver", "StorageClass", "VolumeAttributesClass"} {
		for _, o := range manifests.Select(c.base, kind) {
			if err := c.Applier.Apply(ctx, o, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// installSnapshots installs the VolumeSnapshot CRDs and starts the
// snapshot-controller; csi-snapshotter runs per node.
func (c *Cluster) installSnapshots(ctx context.Context) error {
	crds, err := manifests.Render(c.opts.SnapshotCRDDir)
	if err != nil {
		return err
	}
	for _, o := range crds {
		if err := c.Applier.Apply(ctx, o, false); err != nil {
			return err
		}
	}
	if err := c.Applier.WaitEstablished(ctx, crds); err != nil {
		return err
	}
	return c.startSnapshotController()
}

// addNode starts n's driver, registers the Node and CSINode objects from
// what the driver reports, and starts n's sidecars.
func (c *Cluster) addNode(ctx context.Context, no NodeOptions) error {
	n := &Node{Name: no.Name, DataDir: filepath.Join(c.dir, "nodes", no.Name, "data"), pods: no.Pods}
	if n.pods <= 0 {
		n.pods = 500
	}
	c.mu.Lock()
	c.Nodes = append(c.Nodes, n)
	c.mu.Unlock()
	if no.DiskBytes > 0 {
		if err := mountSmallDisk(n.DataDir, no.DiskBytes); err != nil {
			return err
		}
		n.disk = true
	}
	if err := c.startDriver(ctx, n); err != nil {
		return err
	}
	if err := c.registerNode(ctx, n); err != nil {
		return err
	}
	if err := c.registerCSINode(ctx, n); err != nil {
		return err
	}
	if err := c.startProvisioner(n); err != nil {
		return err
	}
	if err := c.startSnapshotter(n); err != nil {
		return err
	}
	return c.startResizer(n)
}

// start starts a component and remembers it for Stop and the logs.
func (c *Cluster) start(name, bin string, args, env []string) (*process, error) {
	p, err := startProcess(filepath.Join(c.dir, "logs"), name, bin, args, env)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// Supports reports whether every node's driver advertises the capability.
func (c *Cluster) Supports(cap csi.ControllerServiceCapability_RPC_Type) bool {
	for _, n := range c.Nodes {
		if !n.info.Capabilities[cap] {
			return false
		}
	}
	return len(c.Nodes) > 0
}

// Check returns an error naming every component that has exited, so that a
// test failing after a crash says so first.
func (c *Cluster) Check() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, p := range c.procs {
		if exited, err := p.Exited(); exited {
			errs = append(errs, fmt.Errorf("%s exited (%v); last log lines:\n%s", p.Name, err, p.Tail(20)))
		}
	}
	return errors.Join(errs...)
}

// Tails returns the last n lines of the logs of the components whose names
// contain one of the given substrings (all components when none is given).
func (c *Cluster) Tails(n int, names ...string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, p := range c.procs {
		match := len(names) == 0
		for _, s := range names {
			match = match || strings.Contains(p.Name, s)
		}
		if match {
			fmt.Fprintf(&b, "----- %s (%s)\n%s\n", p.Name, p.LogPath, p.Tail(n))
		}
	}
	return b.String()
}

// Stop stops every component in reverse start order, unmounts the small
// disks and removes the run directory unless keep is set. A real node is
// drained first (its pods deleted through the API while its kubelet runs)
// and its containerd stops last; Leftovers then says what remains on the
// host.
func (c *Cluster) Stop(keep bool) {
	begin := time.Now()
	c.drainRealNode()
	c.stopProcesses()
	c.teardownRealNode()
	if c.Real != nil {
		fmt.Fprintf(c.opts.Log, "e2e: cluster with real node %s torn down in %s\n", c.Real.Name, time.Since(begin).Round(time.Millisecond))
	}
	if !keep {
		os.RemoveAll(c.dir)
	}
}

func (c *Cluster) stopProcesses() {
	if c.stop != nil {
		c.stop()
		c.wg.Wait()
	}
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(10 * time.Second)
	}
	for _, n := range c.Nodes {
		if n.disk {
			unmount(n.DataDir)
			n.disk = false
		}
	}
}

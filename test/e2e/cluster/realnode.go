package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/dirvol/dirvol/test/e2e/hoststate"
)

// A node run by a real kubelet and containerd, next to (or instead of) the
// kubelet-less nodes. The whole cluster must then run inside a network
// namespace of the tests' own (package netns): the kubelet serves on the
// node's address there, and the pods' bridge is there.

// RealNodeOptions describe the real node.
type RealNodeOptions struct {
	Name string
	// IP is the node's InternalIP: an address of the tests' network
	// namespace (netns.NodeIP). kube-apiserver advertises it too.
	IP string
	// Images are docker archives imported into containerd before the
	// kubelet starts: nothing is pulled.
	Images []string
	// PauseImage is the pod sandbox image's reference, one of Images.
	PauseImage string
	// LockFile serializes real nodes on one host: they share
	// /var/lib/kubelet.
	LockFile string
	// Deploy, when set, is a kustomization (deploy/base with the
	// harness's images, manifests.Overlay) applied once the node is Ready:
	// dirvol then runs on the node as its DaemonSet's pod.
	Deploy string
	// Chart, when set instead of Deploy, installs dirvol's Helm chart with
	// helm install once the node is Ready.
	Chart *ChartInstall
}

// RealNode is the running real node.
type RealNode struct {
	Name, IP string
	// PodLogsDir is the kubelet's podLogsDir, under the run directory.
	PodLogsDir string
	// DriverNamespace and DriverPod: the DaemonSet's pod on this node
	// (RealNodeOptions.Deploy or Chart).
	DriverNamespace, DriverPod string

	containerd *containerd
	kubelet    *process
	cgroups    *cgroupRoot
	host       *hoststate.Snapshot
	unlock     func()
}

// The places outside the run directory that the kubelet, containerd, the
// CNI plugins and deploy/'s DaemonSet write to whatever their configuration
// says. ownedPaths are the real node's alone (real nodes take a lock);
// others may write to sharedPaths while the node runs (another containerd
// on the host), so only what is recognizably the node's is removed there.
var (
	ownedPaths = []string{
		kubeletRootDir,    // the kubelet's root (device-plugins/kubelet.sock among others)
		"/var/lib/dirvol", // deploy/'s data dir hostPath
	}
	sharedPaths = []string{
		"/var/log/pods",       // pod logs, unless podLogsDir (set) moves them
		"/var/log/containers", // the kubelet's symlinks to container logs
		"/var/lib/cni",        // libcni's result cache
		"/run/containerd",     // shim sockets under s/
		"/run/netns",          // pod network namespaces, unless under the state dir (set)
	}
)

// lockRealNode makes c.Real and takes the real nodes' lock, waiting for
// another run's node to end; before anything starts, so that a waiting run
// holds no idle control plane.
func (c *Cluster) lockRealNode(ctx context.Context, o RealNodeOptions) error {
	r := &RealNode{Name: o.Name, IP: o.IP}
	c.Real = r
	if o.LockFile != "" {
		unlock, err := tryLockFile(o.LockFile)
		if err != nil {
			return err
		}
		if unlock == nil {
			begin := time.Now()
			fmt.Fprintf(c.opts.Log, "e2e: another real node runs on this host (%s is locked); waiting for it to end\n", o.LockFile)
			for unlock == nil {
				select {
				case <-ctx.Done():
					return fmt.Errorf("waiting for the other real node: %w", ctx.Err())
				case <-time.After(time.Second):
				}
				if unlock, err = tryLockFile(o.LockFile); err != nil {
					return err
				}
			}
			fmt.Fprintf(c.opts.Log, "e2e: waited %s for the other real node\n", time.Since(begin).Round(time.Second))
		}
		r.unlock = unlock
	}
	return nil
}

// startRealNode records the host's state, makes the node's cgroup root,
// starts containerd, imports the images, and starts the kubelet.
func (c *Cluster) startRealNode(ctx context.Context, o RealNodeOptions) error {
	if o.Name == "" || o.IP == "" || o.PauseImage == "" {
		return errors.New("a real node needs a name, an IP and a pause image")
	}
	r := c.Real
	// Take refuses an owned path in use: /var/lib/kubelet of another
	// kubelet, /var/lib/dirvol of another dirvol.
	var err error
	if r.host, err = hoststate.Take(hoststate.Config{
		Roots: []string{c.dir}, Owned: ownedPaths, Shared: sharedPaths,
		Marks: []string{cniNetwork + "-"}, Sysctls: kubeletSysctls,
	}); err != nil {
		return err
	}
	if err := r.host.Save(filepath.Join(c.dir, hostStateFile)); err != nil {
		return err
	}
	if r.cgroups, err = newCgroupRoot(filepath.Base(c.dir)); err != nil {
		return err
	}
	if r.containerd, err = c.startContainerd(ctx, o.PauseImage); err != nil {
		return err
	}
	for _, img := range o.Images {
		if err := r.containerd.importImage(ctx, img); err != nil {
			return err
		}
	}
	if err := c.startKubelet(ctx, r); err != nil {
		return err
	}
	switch {
	case o.Chart != nil:
		return c.installChart(ctx, r, *o.Chart)
	case o.Deploy != "":
		return c.deployDriver(ctx, r, o.Deploy)
	}
	return nil
}

// drainRealNode stops the controllers that would replace pods, deletes the
// real node's pods through the API (workload pods first, then the driver's,
// so volumes are unpublished while the driver still runs) and waits until
// containerd runs no task. The kubelet is still running: it does the
// unmounting and the sandboxes' network teardown.
func (c *Cluster) drainRealNode() {
	r := c.Real
	if r == nil || r.kubelet == nil || c.Kube == nil {
		return
	}
	if c.kcm != nil {
		c.kcm.Stop(10 * time.Second)
	}
	begin := time.Now()
	defer func() {
		fmt.Fprintf(c.opts.Log, "e2e: real node %s drained in %s\n", r.Name, time.Since(begin).Round(time.Millisecond))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, driverPods := range []bool{false, true} {
		if err := c.deleteNodePods(ctx, r.Name, driverPods); err != nil {
			fmt.Fprintf(c.opts.Log, "e2e: teardown: %v\n", err)
		}
	}
	if r.containerd == nil {
		return
	}
	for {
		tasks, err := r.containerd.tasks(ctx)
		if err == nil && len(tasks) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(c.opts.Log, "e2e: teardown: containerd still runs tasks %v (%v)\n", tasks, err)
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// deleteNodePods deletes the pods on node in the driver's namespace
// (driverPods) or in every other namespace, and waits until the kubelet has
// finished them (it deletes the object once containers and volumes are
// gone).
func (c *Cluster) deleteNodePods(ctx context.Context, node string, driverPods bool) error {
	sel := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()}
	grace := int64(5)
	for {
		pods, err := c.Kube.CoreV1().Pods(corev1.NamespaceAll).List(ctx, sel)
		if err != nil {
			return fmt.Errorf("list the pods on %s: %w", node, err)
		}
		var left []string
		for _, p := range pods.Items {
			if (p.Namespace == c.Namespace) != driverPods {
				continue
			}
			left = append(left, p.Namespace+"/"+p.Name)
			if p.DeletionTimestamp == nil {
				_ = c.Kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
			}
		}
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pods on %s not gone: %s", node, strings.Join(left, ", "))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// teardownRealNode runs after the kubelet and the control plane stopped:
// it stops containerd, unmounts what is left under the run directory and
// the kubelet's root (deepest first), removes the node's cgroups and the
// host paths the run created, and puts the kubelet's sysctls back.
func (c *Cluster) teardownRealNode() {
	r := c.Real
	if r == nil {
		return
	}
	if r.containerd != nil && r.containerd.proc != nil {
		r.containerd.proc.Stop(20 * time.Second)
	}
	if r.host != nil {
		if err := r.host.Restore(); err != nil {
			fmt.Fprintf(c.opts.Log, "e2e: teardown: %v\n", err)
		}
	}
	if r.cgroups != nil {
		if err := r.cgroups.remove(); err != nil {
			fmt.Fprintf(c.opts.Log, "e2e: teardown: %v\n", err)
		}
	}
	if r.unlock != nil {
		r.unlock()
		r.unlock = nil
	}
}

// Leftovers lists what the real node left on the host after Stop: mounts,
// paths, sysctls, loop devices (package hoststate) and cgroups. Empty for a
// cluster without one.
func (c *Cluster) Leftovers() []string {
	r := c.Real
	if r == nil {
		return nil
	}
	var out []string
	if r.host != nil {
		out = r.host.Leftovers()
	}
	if r.cgroups != nil {
		for _, d := range r.cgroups.left() {
			out = append(out, "cgroup "+d)
		}
	}
	return out
}

// tryLockFile takes an exclusive flock on path if no one holds it; nil
// when someone does.
func tryLockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// lockFile takes an exclusive flock on path, waiting for the holder.
func lockFile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
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

// hostStateFile is where the run directory keeps the host's state from
// before the real node started, for RemoveStaleRealNode.
const hostStateFile = "hoststate.json"

// RemoveStaleRealNode cleans up after a run whose process was killed before
// its teardown (go test -timeout, a closed terminal), given its run
// directory: it kills what that run started and left running (containerd
// shims and containers: processes whose command line names the directory,
// or in the run's cgroups), removes its cgroups, and restores the host from
// the state saved at its start. The caller removes dir itself. It does
// nothing while a real node holds lock (the real nodes' LockFile): the
// restore could remove that node's /var/lib/kubelet; a later run cleans up.
func RemoveStaleRealNode(dir, lock string) error {
	if _, err := os.Stat(filepath.Join(dir, hostStateFile)); errors.Is(err, os.ErrNotExist) {
		return nil // no real node in that run
	}
	unlock, err := tryLockFile(lock)
	if err != nil || unlock == nil {
		return err
	}
	defer unlock()
	var errs []error
	killed := killReferencing(dir)
	r := &cgroupRoot{Name: "/" + filepath.Base(dir)}
	if hs, err := cgroupHierarchies(); err == nil {
		for _, h := range hs {
			d := filepath.Join(h, filepath.Base(dir))
			if _, err := os.Stat(d); err == nil {
				r.dirs = append(r.dirs, d)
				killed += killInCgroup(d)
			}
		}
	}
	if killed > 0 {
		time.Sleep(time.Second) // the kernel releases cgroups and mounts as they exit
	}
	if err := r.remove(); err != nil {
		errs = append(errs, err)
	}
	if host, err := hoststate.Load(filepath.Join(dir, hostStateFile)); err == nil {
		if err := host.Restore(); err != nil {
			errs = append(errs, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// killReferencing SIGKILLs the processes whose command line contains dir.
func killReferencing(dir string) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), dir+"/") {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				n++
			}
		}
	}
	return n
}

// killInCgroup SIGKILLs the processes of cgroup dir and its descendants.
func killInCgroup(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
				n++
			}
		}
		return nil
	})
	return n
}

// KillContainer SIGKILLs a container of the real node by its ID (a pod
// status's containerID without "containerd://"), as a crash would: the
// kubelet sees it exit and restarts it.
func (c *Cluster) KillContainer(ctx context.Context, id string) error {
	if c.Real == nil || c.Real.containerd == nil {
		return errors.New("no real node")
	}
	_, err := c.Real.containerd.ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", strings.TrimPrefix(id, "containerd://"))
	return err
}

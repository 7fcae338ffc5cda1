package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dirvol/dirvol/test/e2e/binaries"
	"github.com/dirvol/dirvol/test/e2e/manifests"
)

// The node plugin: per node, what one pod of deploy/'s DaemonSet runs. The
// driver gets the harness's own flags (socket and data dir differ per node);
// the sidecars get the arguments and environment of their container in the
// rendered DaemonSet, with only what a pod provides rewritten.

// daemonSetName is the DaemonSet in deploy/base whose containers the harness
// mirrors.
const daemonSetName = "dirvol-node"

// BuildDriver builds cmd/driver of the repository at repoRoot into dir, as
// `make build` does.
func BuildDriver(ctx context.Context, repoRoot, dir string) (string, error) {
	out := filepath.Join(dir, "dirvol")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./cmd/driver")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build dirvol: %w\n%s", err, b)
	}
	return out, nil
}

// startDriver runs dirvol for node n and waits until it is ready.
func (c *Cluster) startDriver(ctx context.Context, n *Node) error {
	n.Socket = filepath.Join(c.dir, "nodes", n.Name, "csi.sock")
	p, err := c.start("dirvol-"+n.Name, c.opts.Driver, []string{
		"--endpoint=unix://" + n.Socket,
		"--node-id=" + n.Name,
		"--data-dir=" + n.DataDir,
		// No kubelet on a fake node: the harness writes its CSINode
		// (registerCSINode) from what queryDriver learns.
		"--kubelet-registration-dir=",
		"--v=4",
	}, nil)
	if err != nil {
		return err
	}
	n.driver = p
	qctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	if n.info, err = queryDriver(qctx, n.Socket); err != nil {
		return fmt.Errorf("%w; last log lines of %s:\n%s", err, p.Name, p.Tail(30))
	}
	return nil
}

// startProvisioner runs csi-provisioner for node n as the DaemonSet's
// container does (--node-deployment: it acts only on PVCs whose selected
// node is n; --enable-capacity: it publishes n's CSIStorageCapacity).
func (c *Cluster) startProvisioner(n *Node) error {
	ctr, ok, err := manifests.Container(c.base, daemonSetName, "csi-provisioner")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("deploy/base has no csi-provisioner container in DaemonSet %s", daemonSetName)
	}
	args := c.sidecarArgs(ctr, n,
		// No pod to own the CSIStorageCapacity objects: -1 means no owner.
		"--capacity-ownerref-level=-1")
	p, err := c.start("csi-provisioner-"+n.Name, c.bins.Path(binaries.CSIProvisioner), args, c.sidecarEnv(ctr, n))
	n.provisioner = p
	return err
}

// startSnapshotter runs csi-snapshotter for node n as the DaemonSet's
// container does; only for a driver that advertises snapshots, since the
// sidecar exits at start otherwise.
func (c *Cluster) startSnapshotter(n *Node) error {
	if !n.info.Capabilities[csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT] {
		return nil
	}
	ctr, ok, err := manifests.Container(c.base, daemonSetName, "csi-snapshotter")
	if err != nil || !ok {
		ctr = corev1.Container{Args: []string{"--node-deployment=true"}}
	}
	p, err := c.start("csi-snapshotter-"+n.Name, c.bins.Path(binaries.CSISnapshotter), c.sidecarArgs(ctr, n), c.sidecarEnv(ctr, n))
	n.snapshotter = p
	return err
}

// startResizer runs csi-resizer for node n as the DaemonSet's container
// does. The resizers of all nodes elect one leader, as the DaemonSet's pods
// do, so the harness keeps --leader-election, in the namespace a pod would
// run in. The identity each candidate puts in the Lease is its host name (a
// pod's name in the DaemonSet), so each runs in a UTS namespace of its own
// named after its node: without that, every resizer on this host would take
// the Lease as its own and all would act. The Lease's holder is then the
// leading node's name.
func (c *Cluster) startResizer(n *Node) error {
	if !n.info.Capabilities[csi.ControllerServiceCapability_RPC_EXPAND_VOLUME] {
		return nil
	}
	ctr, ok, err := manifests.Container(c.base, daemonSetName, "csi-resizer")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("deploy/base has no csi-resizer container in DaemonSet %s", daemonSetName)
	}
	args := c.sidecarArgs(ctr, n, "--leader-election=true", "--leader-election-namespace="+c.Namespace)
	// unshare --uts: a new UTS namespace; the shell names it and execs the
	// resizer, which keeps the process (and its group) the one started.
	wrapped := append([]string{"--uts", "--", "/bin/sh", "-c", `hostname "$0" && exec "$@"`, n.Name, c.bins.Path(binaries.CSIResizer)}, args...)
	p, err := c.start("csi-resizer-"+n.Name, "unshare", wrapped, c.sidecarEnv(ctr, n))
	n.resizer = p
	return err
}

// sidecarArgs takes the container's arguments, points --csi-address at n's
// socket, adds the kubeconfig, and drops what only makes sense in a pod
// (HTTP endpoints would collide between nodes on one host; leader election
// is per pod). overrides replace arguments of the same flag.
func (c *Cluster) sidecarArgs(ctr corev1.Container, n *Node, overrides ...string) []string {
	drop := map[string]bool{"--csi-address": true, "--http-endpoint": true, "--metrics-address": true,
		"--kubeconfig": true, "--leader-election": true}
	for _, o := range overrides {
		drop[flagName(o)] = true
	}
	args := []string{"--csi-address=" + n.Socket, "--kubeconfig=" + c.Kubeconfig}
	for _, a := range ctr.Args {
		if !drop[flagName(a)] {
			args = append(args, a)
		}
	}
	return append(args, overrides...)
}

// sidecarEnv resolves the container's environment as the kubelet would for
// a pod on n; POD_NAME has no pod to name and is left out.
func (c *Cluster) sidecarEnv(ctr corev1.Container, n *Node) []string {
	var env []string
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef == nil:
		case e.ValueFrom.FieldRef.FieldPath == "spec.nodeName":
			env = append(env, e.Name+"="+n.Name)
		case e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env = append(env, e.Name+"="+c.Namespace)
		}
	}
	return env
}

// startSnapshotController runs the cluster's snapshot-controller with the
// arguments of deploy/overlays/snapshot-controller (distributed
// snapshotting), or that one argument when the overlay is missing.
func (c *Cluster) startSnapshotController() error {
	args := []string{"--enable-distributed-snapshotting=true"}
	if objs, err := manifests.Render(filepath.Join(c.opts.DeployDir, "overlays", "snapshot-controller")); err == nil {
		for _, d := range manifests.Select(objs, "Deployment") {
			if ctr, ok := deploymentContainer(d, "snapshot-controller"); ok {
				args = nil
				for _, a := range ctr {
					if n := flagName(a); n != "--leader-election" && n != "--http-endpoint" && n != "--kubeconfig" {
						args = append(args, a)
					}
				}
			}
		}
	}
	args = append(args, "--kubeconfig="+c.Kubeconfig)
	_, err := c.start(binaries.SnapshotController, c.bins.Path(binaries.SnapshotController), args, nil)
	return err
}

func deploymentContainer(d *unstructured.Unstructured, name string) ([]string, bool) {
	ctrs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	for _, raw := range ctrs {
		m, ok := raw.(map[string]any)
		if !ok || m["name"] != name {
			continue
		}
		args, _, _ := unstructured.NestedStringSlice(m, "args")
		return args, true
	}
	return nil, false
}

// flagName returns "--name" of "--name=value".
func flagName(arg string) string {
	name, _, _ := strings.Cut(arg, "=")
	return name
}

// mountSmallDisk puts a tmpfs of size bytes on dir, so the node has a disk
// that small (capacity tests); tmpfs needs no loop device or mkfs.
func mountSmallDisk(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "dirvol-e2e", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mount a %d-byte tmpfs on %s (needs root): %w: %s", size, dir, err, out)
	}
	return nil
}

func unmount(dir string) {
	for range 10 {
		if err := exec.Command("umount", dir).Run(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

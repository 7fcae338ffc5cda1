package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

// The real node's container runtime: containerd (Debian's, 1.6) with runc,
// its root, state, sockets and CNI configuration under the run directory, and
// the CNI bridge of Debian's containernetworking-plugins.

// cniBinDir is where Debian's containernetworking-plugins installs the
// plugins.
const cniBinDir = "/usr/lib/cni"

// podSubnet is the pods' bridge network, inside the tests' network
// namespace.
const podSubnet = "10.88.0.0/16"

// cniNetwork names the pods' network; libcni's cache files under
// /var/lib/cni start with it.
const cniNetwork = "dirvol-e2e"

// containerd holds the paths of one containerd.
type containerd struct {
	dir    string // <run>/containerd
	Socket string
	proc   *process
}

var containerdConfig = template.Must(template.New("config.toml").Parse(`# containerd for the cluster tests' real node: everything under {{.Dir}}.
version = 2
root = "{{.Dir}}/root"
state = "{{.Dir}}/state"
# Snapshotters and plugins this node does not use; they would only log.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{{.Socket}}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{{.Dir}}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{.PauseImage}}"
  # The tests run as root without CAP_SYS_RESOURCE: lowering a container's
  # oom_score_adj below containerd's own would fail.
  restrict_oom_score_adj = true
  # Pods' network namespaces under the state directory, not /run/netns.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  # exec, attach and port-forward: loopback of the tests' namespace.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{{.Dir}}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{{.CNIBinDir}}"
    conf_dir = "{{.Dir}}/cni"
`))

// cniConfig is the pods' network: a bridge with the gateway address in the
// tests' namespace, addresses from host-local (its data under the run
// directory), no masquerading (nothing leaves the namespace) and no portmap
// (no hostPorts; it would need iptables).
func cniConfig(dataDir string) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       cniNetwork,
		"plugins": []any{map[string]any{
			"type":        "bridge",
			"bridge":      "cni0",
			"isGateway":   true,
			"ipMasq":      false,
			"hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": podSubnet}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				"dataDir": dataDir,
			},
		}},
	}, "", "  ")
}

// startContainerd writes containerd's and CNI's configuration under
// <run>/containerd, starts it and waits until it answers.
func (c *Cluster) startContainerd(ctx context.Context, pauseImage string) (*containerd, error) {
	ct := &containerd{dir: filepath.Join(c.dir, "containerd")}
	ct.Socket = filepath.Join(ct.dir, "containerd.sock")
	for _, d := range []string{ct.dir, filepath.Join(ct.dir, "cni")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	cni, err := cniConfig(filepath.Join(ct.dir, "cni-ipam"))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(ct.dir, "cni", "10-dirvol-e2e.conflist"), cni, 0o644); err != nil {
		return nil, err
	}
	var cfg strings.Builder
	if err := containerdConfig.Execute(&cfg, map[string]string{
		"Dir": ct.dir, "Socket": ct.Socket, "PauseImage": pauseImage, "CNIBinDir": cniBinDir,
	}); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(ct.dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		return nil, err
	}
	// Not in c.procs: containerd stops last, after the control plane.
	p, err := startProcess(filepath.Join(c.dir, "logs"), "containerd", "containerd", []string{"--config", cfgPath, "--log-level", "info"}, nil)
	if err != nil {
		return nil, fmt.Errorf("%w (apt-get install containerd runc containernetworking-plugins)", err)
	}
	ct.proc = p
	wctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	for {
		if _, err := ct.ctr(wctx, "version"); err == nil {
			return ct, nil
		}
		if exited, err := p.Exited(); exited {
			return ct, fmt.Errorf("containerd exited during start (%v); last log lines:\n%s", err, p.Tail(30))
		}
		select {
		case <-wctx.Done():
			return ct, fmt.Errorf("containerd not answering on %s: %w; last log lines:\n%s", ct.Socket, wctx.Err(), p.Tail(30))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ctr runs ctr against this containerd in the CRI's namespace, k8s.io.
func (ct *containerd) ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", ct.Socket, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// importImage loads a docker archive (or OCI layout tarball) into the CRI's
// image store, unpacked for the overlayfs snapshotter.
func (ct *containerd) importImage(ctx context.Context, archive string) error {
	_, err := ct.ctr(ctx, "images", "import", "--snapshotter", "overlayfs", archive)
	return err
}

// tasks returns the IDs of containerd's running tasks (containers and pod
// sandboxes) in the CRI's namespace.
func (ct *containerd) tasks(ctx context.Context) ([]string, error) {
	out, err := ct.ctr(ctx, "tasks", "ls", "--quiet")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/dirvol/dirvol/test/e2e/binaries"
)

// kubeletRootDir is the real node's --root-dir: the default, because
// deploy/'s DaemonSet mounts /var/lib/kubelet/{pods,plugins,
// plugins_registry} from the host as a kubelet installed by any distribution
// has them.
const kubeletRootDir = "/var/lib/kubelet"

// kubeletSysctls are the settings the kubelet changes at start
// (protectKernelDefaults false); the teardown writes them back.
var kubeletSysctls = []string{
	"/proc/sys/vm/overcommit_memory",
	"/proc/sys/vm/panic_on_oom",
	"/proc/sys/kernel/panic",
	"/proc/sys/kernel/panic_on_oops",
	"/proc/sys/kernel/keys/root_maxkeys",
	"/proc/sys/kernel/keys/root_maxbytes",
}

// kubelet writes the kubelet's certificates (a serving certificate for the
// node's IP from the cluster's CA, which kube-apiserver verifies; a client
// certificate as system:node:<name> for the Node authorizer), its
// kubeconfig and configuration, starts it, and waits for its Node to be
// Ready.
func (c *Cluster) startKubelet(ctx context.Context, r *RealNode) error {
	dir := filepath.Join(c.dir, "kubelet")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ip := net.ParseIP(r.IP)
	serving, servingKey, err := c.pki.issue("kubelet-"+r.Name, nil, &serverNames{ips: []net.IP{ip}, dns: []string{r.Name}})
	if err != nil {
		return err
	}
	client, clientKey, err := c.pki.issue("system:node:"+r.Name, []string{"system:nodes"}, nil)
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["e2e"] = &clientcmdapi.Cluster{Server: c.apiURL, CertificateAuthority: c.pki.CAFile}
	kc.AuthInfos["kubelet"] = &clientcmdapi.AuthInfo{ClientCertificate: client, ClientKey: clientKey}
	kc.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "kubelet"}
	kc.CurrentContext = "e2e"
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		return err
	}
	healthz, err := c.ports.next()
	if err != nil {
		return err
	}
	r.PodLogsDir = filepath.Join(c.dir, "pod-logs")
	cfg := map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1",
		"kind":       "KubeletConfiguration",
		// Serves on the node's address in the tests' namespace; the API
		// server reaches it there for logs, exec and port-forward.
		"address":            r.IP,
		"port":               10250,
		"readOnlyPort":       0,
		"healthzBindAddress": "127.0.0.1",
		"healthzPort":        healthz,
		"tlsCertFile":        serving,
		"tlsPrivateKeyFile":  servingKey,
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": c.pki.CAFile},
		},
		"authorization":            map[string]any{"mode": "Webhook"},
		"containerRuntimeEndpoint": "unix://" + r.containerd.Socket,
		// cgroup v1 (hybrid) on these machines, no systemd to delegate to.
		"cgroupDriver":  "cgroupfs",
		"cgroupRoot":    r.cgroups.Name,
		"failCgroupV1":  false,
		"failSwapOn":    false,
		"podLogsDir":    r.PodLogsDir,
		"clusterDomain": "cluster.local",
		// Images are imported, never pulled: never collect them.
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		// The machine's disk is shared with other work: evict only when
		// it is really full, not at the default 10-15%.
		"evictionHard": map[string]string{
			"memory.available":  "100Mi",
			"nodefs.available":  "1%",
			"nodefs.inodesFree": "1%",
			"imagefs.available": "1%",
		},
		"serializeImagePulls": false,
		// React to pods quickly, as a test wants.
		"syncFrequency":             "5s",
		"fileCheckFrequency":        "5s",
		"nodeStatusUpdateFrequency": "4s",
		// kubelet_volume_stats_* refresh (default 1m).
		"volumeStatsAggPeriod": "5s",
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		return err
	}
	p, err := c.start(binaries.Kubelet, c.bins.Path(binaries.Kubelet), []string{
		"--config=" + cfgPath,
		"--kubeconfig=" + kubeconfig,
		"--root-dir=" + kubeletRootDir,
		"--node-ip=" + r.IP,
		"--hostname-override=" + r.Name,
		"--v=2",
	}, nil)
	if err != nil {
		return err
	}
	r.kubelet = p
	if err := c.waitHTTP(ctx, p, "http://127.0.0.1:"+strconv.Itoa(healthz)+"/healthz", nil); err != nil {
		return err
	}
	return c.waitNodeReady(ctx, p, r.Name)
}

// waitNodeReady waits for the kubelet to register its Node and report it
// Ready (which needs the runtime and the CNI network ready).
func (c *Cluster) waitNodeReady(ctx context.Context, p *process, name string) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	last := "not registered"
	for {
		node, err := c.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = "no Ready condition"
			for _, cond := range node.Status.Conditions {
				if cond.Type == corev1.NodeReady {
					if cond.Status == corev1.ConditionTrue {
						return nil
					}
					last = fmt.Sprintf("Ready=%s: %s", cond.Status, cond.Message)
				}
			}
		}
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("kubelet exited during start (%v); last log lines:\n%s", err, p.Tail(30))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not Ready (%s): %w; last log lines of the kubelet:\n%s", name, last, ctx.Err(), p.Tail(30))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

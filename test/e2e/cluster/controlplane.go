package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/dirvol/dirvol/test/e2e/binaries"
)

// The control plane: etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler, all on 127.0.0.1 with ports picked at start.

func (c *Cluster) startEtcd(ctx context.Context) error {
	client, err := c.ports.next()
	if err != nil {
		return err
	}
	peer, err := c.ports.next()
	if err != nil {
		return err
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(client)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
	p, err := c.start(binaries.Etcd, c.bins.Path(binaries.Etcd), []string{
		"--name=e2e",
		"--data-dir=" + filepath.Join(c.dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=e2e=" + peerURL,
		// A throwaway cluster: durability across power loss buys nothing
		// and fsync makes the benchmark measure the disk.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}, nil)
	if err != nil {
		return err
	}
	c.etcdURL = clientURL
	return c.waitHTTP(ctx, p, clientURL+"/health", nil)
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	port, err := c.ports.next()
	if err != nil {
		return err
	}
	c.apiURL = "https://127.0.0.1:" + strconv.Itoa(port)
	where := []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		// The default reconciler refuses a loopback advertise address;
		// nothing needs the kubernetes Service endpoints here.
		"--endpoint-reconciler-type=none",
	}
	if r := c.opts.RealNode; r != nil {
		// Inside the tests' network namespace: every address there is
		// the tests'. Pods reach the API server at the kubernetes
		// Service's ClusterIP and port (443), with no kube-proxy: that
		// address is on the namespace's loopback (netns.ServiceIP).
		c.apiURL = "https://" + r.IP + ":443"
		where = []string{
			"--bind-address=0.0.0.0",
			"--advertise-address=" + r.IP,
			"--secure-port=443",
			// logs, exec, port-forward: to the kubelet's address, with
			// the kubelet's serving certificate checked against the CA.
			"--kubelet-certificate-authority=" + c.pki.CAFile,
			"--kubelet-client-certificate=" + c.pki.AdminCert,
			"--kubelet-client-key=" + c.pki.AdminKey,
			"--kubelet-preferred-address-types=InternalIP",
		}
	}
	if path := c.opts.AuditLog; path != "" {
		audit, err := c.auditArgs(path)
		if err != nil {
			return err
		}
		where = append(where, audit...)
	}
	p, err := c.start(binaries.KubeAPIServer, c.bins.Path(binaries.KubeAPIServer), append([]string{
		"--etcd-servers=" + c.etcdURL,
	}, append(where,
		"--cert-dir="+filepath.Join(c.dir, "apiserver-certs"),
		"--tls-cert-file="+c.pki.ServingCert,
		"--tls-private-key-file="+c.pki.ServingKey,
		"--client-ca-file="+c.pki.CAFile,
		"--service-account-key-file="+c.pki.SAPub,
		"--service-account-signing-key-file="+c.pki.SAKey,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.0.0.0/24",
		// As a real cluster: the dry-run of deploy/ then goes through the
		// same RBAC escalation checks a user's kubectl apply would.
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		"--v=1",
	)...), nil)
	if err != nil {
		return err
	}
	if err := c.writeKubeconfig(); err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(c.pki.AdminCert, c.pki.AdminKey)
	if err != nil {
		return err
	}
	return c.waitHTTP(ctx, p, c.apiURL+"/readyz", &tls.Config{
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true, // only for the readiness poll; clients verify against the CA
	})
}

func (c *Cluster) startControllerManager(ctx context.Context) error {
	port, err := c.ports.next()
	if err != nil {
		return err
	}
	p, err := c.start(binaries.KubeControllerManager, c.bins.Path(binaries.KubeControllerManager), []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(c.dir, "kcm-certs"),
		"--leader-elect=false",
		// The default set: the PV binder and reclaim controllers, PV and
		// PVC protection, namespaces, garbage collection, service
		// accounts, node lifecycle (kept quiet by the node heartbeats).
		"--controllers=*",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + c.pki.SAKey,
		"--root-ca-file=" + c.pki.CAFile,
		// Retry binding and provisioning checks quickly, as a test wants.
		"--pvclaimbinder-sync-period=2s",
		"--v=2",
	}, nil)
	if err != nil {
		return err
	}
	c.kcm = p
	return c.waitHTTP(ctx, p, "https://127.0.0.1:"+strconv.Itoa(port)+"/healthz", &tls.Config{InsecureSkipVerify: true})
}

func (c *Cluster) startScheduler(ctx context.Context) error {
	port, err := c.ports.next()
	if err != nil {
		return err
	}
	p, err := c.start(binaries.KubeScheduler, c.bins.Path(binaries.KubeScheduler), []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(c.dir, "scheduler-certs"),
		"--leader-elect=false",
		"--v=2",
	}, nil)
	if err != nil {
		return err
	}
	return c.waitHTTP(ctx, p, "https://127.0.0.1:"+strconv.Itoa(port)+"/healthz", &tls.Config{InsecureSkipVerify: true})
}

// writeKubeconfig writes the admin kubeconfig every component and the tests
// use.
func (c *Cluster) writeKubeconfig() error {
	c.Kubeconfig = filepath.Join(c.dir, "kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: c.apiURL, CertificateAuthority: c.pki.CAFile}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificate: c.pki.AdminCert, ClientKey: c.pki.AdminKey}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "admin"}
	cfg.CurrentContext = "e2e"
	return clientcmd.WriteToFile(*cfg, c.Kubeconfig)
}

// waitHTTP polls url until it answers 200, the process exits, or ctx ends.
func (c *Cluster) waitHTTP(ctx context.Context, p *process, url string, tlsConfig *tls.Config) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	for {
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("%s exited during start (%v); last log lines:\n%s", p.Name, err, p.Tail(30))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w; last log lines:\n%s", p.Name, url, ctx.Err(), p.Tail(30))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

package manifests

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

func deployDir() string { return filepath.Join("..", "..", "..", "deploy") }

func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := Render(filepath.Join(deployDir(), dir))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func convert[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	var v T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &v); err != nil {
		t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return &v
}

// podContainers returns the containers of every DaemonSet and Deployment.
func podContainers(t *testing.T, objs []*unstructured.Unstructured) map[string]corev1.Container {
	t.Helper()
	out := map[string]corev1.Container{}
	for _, o := range Select(objs, "DaemonSet") {
		for _, c := range convert[appsv1.DaemonSet](t, o).Spec.Template.Spec.Containers {
			out[o.GetName()+"/"+c.Name] = c
		}
	}
	for _, o := range Select(objs, "Deployment") {
		for _, c := range convert[appsv1.Deployment](t, o).Spec.Template.Spec.Containers {
			out[o.GetName()+"/"+c.Name] = c
		}
	}
	return out
}

// No sidecar is started with --feature-gates: the gates deploy/ used to set
// are on GA features, and a release that removes a gate refuses to start
// with it.
func TestDeployNoFeatureGates(t *testing.T) {
	dirs, err := Kustomizations(deployDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		for name, c := range podContainers(t, render(t, dir)) {
			for _, a := range slices.Concat(c.Command, c.Args) {
				if strings.HasPrefix(a, "--feature-gates") || strings.HasPrefix(a, "-feature-gates") {
					t.Errorf("%s: container %s runs with %s; drop it (GA features have no gate to set)", dir, name, a)
				}
			}
		}
	}
}

// The liveness probe is the process alone (/healthz); pool health is the
// readiness probe (/readyz, what Probe answers), so a read-only pool does
// not get the node plugin restarted in the middle of unpublish calls.
func TestDeployDriverProbes(t *testing.T) {
	ctrs := podContainers(t, render(t, "base"))
	c, ok := ctrs["dirvol-node/dirvol"]
	if !ok {
		t.Fatalf("deploy/base has no DaemonSet dirvol-node with container dirvol; have %v", keys(ctrs))
	}
	probe := func(what string, p *corev1.Probe, path string) {
		switch {
		case p == nil:
			t.Errorf("dirvol container: no %s probe", what)
		case p.HTTPGet == nil:
			t.Errorf("dirvol container: %s probe is not an HTTP GET", what)
		case p.HTTPGet.Path != path:
			t.Errorf("dirvol container: %s probe GETs %s, want %s", what, p.HTTPGet.Path, path)
		case !servesPort(c, p.HTTPGet.Port.String()):
			t.Errorf("dirvol container: %s probe port %s is not the --http-endpoint port", what, p.HTTPGet.Port.String())
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")
}

// servesPort says whether port (a number or a container port name) is the
// one the driver's --http-endpoint listens on.
func servesPort(c corev1.Container, port string) bool {
	var listen string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--http-endpoint="); ok {
			_, listen, _ = strings.Cut(v, ":")
		}
	}
	if listen == "" {
		return false
	}
	for _, p := range c.Ports {
		if port == p.Name || port == listen {
			return listen == strconv.Itoa(int(p.ContainerPort))
		}
	}
	return port == listen
}

// The sidecars pass Kubernetes object names to the driver, which keeps them
// in volume and snapshot records (README: StorageClass and snapshot
// metadata).
func TestDeployExtraCreateMetadata(t *testing.T) {
	ctrs := podContainers(t, render(t, "base"))
	for _, name := range []string{"dirvol-node/csi-provisioner", "dirvol-node/csi-snapshotter"} {
		c, ok := ctrs[name]
		if !ok {
			t.Errorf("deploy/base has no container %s", name)
			continue
		}
		if !slices.Contains(c.Args, "--extra-create-metadata=true") {
			t.Errorf("%s runs without --extra-create-metadata=true: the driver never gets the object names; args %v", name, c.Args)
		}
	}
}

// The snapshot-controller overlay installs the VolumeGroupSnapshot CRDs with
// the VolumeSnapshot ones (the controller looks for both at start), and the
// controller may list and watch every resource of every CRD it installs.
func TestSnapshotControllerCRDsAndRBAC(t *testing.T) {
	objs := render(t, filepath.Join("overlays", "snapshot-controller"))
	var resources []string // group/plural
	for _, o := range Select(objs, "CustomResourceDefinition") {
		group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		plural, _, _ := unstructured.NestedString(o.Object, "spec", "names", "plural")
		resources = append(resources, group+"/"+plural)
	}
	for _, want := range []string{
		"snapshot.storage.k8s.io/volumesnapshots",
		"snapshot.storage.k8s.io/volumesnapshotcontents",
		"snapshot.storage.k8s.io/volumesnapshotclasses",
		"groupsnapshot.storage.k8s.io/volumegroupsnapshots",
		"groupsnapshot.storage.k8s.io/volumegroupsnapshotcontents",
		"groupsnapshot.storage.k8s.io/volumegroupsnapshotclasses",
	} {
		if !slices.Contains(resources, want) {
			t.Errorf("overlays/snapshot-controller installs no CRD for %s; have %v (run hack/update-snapshot-crds.sh)", want, resources)
		}
	}
	var rules []rbacv1.PolicyRule
	for _, o := range Select(objs, "ClusterRole") {
		if o.GetName() == "snapshot-controller-runner" {
			rules = convert[rbacv1.ClusterRole](t, o).Rules
		}
	}
	if rules == nil {
		t.Fatal("overlays/snapshot-controller has no ClusterRole snapshot-controller-runner")
	}
	for _, r := range resources {
		group, plural, _ := strings.Cut(r, "/")
		for _, verb := range []string{"get", "list", "watch"} {
			if !allows(rules, group, plural, verb) {
				t.Errorf("ClusterRole snapshot-controller-runner does not allow %s on %s", verb, r)
			}
		}
	}
}

func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if (slices.Contains(r.APIGroups, group) || slices.Contains(r.APIGroups, "*")) &&
			(slices.Contains(r.Resources, resource) || slices.Contains(r.Resources, "*")) &&
			(slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) {
			return true
		}
	}
	return false
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// csi-provisioner's client rate limit is raised above the sidecar's defaults
// (5 QPS, burst 10), at which a node's bulk create or delete waits on the
// sidecar rather than on Kubernetes' PV controller (make bench-e2e), and the
// burst covers at least a second's worth.
func TestDeployProvisionerRateLimit(t *testing.T) {
	ctrs := podContainers(t, render(t, "base"))
	c, ok := ctrs["dirvol-node/csi-provisioner"]
	if !ok {
		t.Fatalf("deploy/base has no container dirvol-node/csi-provisioner; have %v", keys(ctrs))
	}
	flag := func(name string) float64 {
		for _, a := range c.Args {
			if v, ok := strings.CutPrefix(a, name+"="); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("csi-provisioner %s: %v", a, err)
				}
				return f
			}
		}
		t.Fatalf("csi-provisioner runs without %s (the sidecar's default is the bottleneck of bulk provisioning); args %v", name, c.Args)
		return 0
	}
	qps, burst := flag("--kube-api-qps"), flag("--kube-api-burst")
	if qps <= 5 || burst < qps {
		t.Errorf("csi-provisioner --kube-api-qps=%v --kube-api-burst=%v: want QPS above the default 5 and a burst of at least the QPS", qps, burst)
	}
}

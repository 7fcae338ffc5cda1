package manifests

import (
	"path"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Every kustomization in deploy/ renders, without a cluster (the server-side
// dry run is in the e2e tests).
func TestRenderDeploy(t *testing.T) {
	deploy := filepath.Join("..", "..", "..", "deploy")
	dirs, err := Kustomizations(deploy)
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 2 {
		t.Fatalf("found kustomizations %v, want base and overlays", dirs)
	}
	for _, dir := range dirs {
		objs, err := Render(filepath.Join(deploy, dir))
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		t.Logf("%s: %d objects", dir, len(objs))
	}
	base, err := Render(filepath.Join(deploy, "base"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"csi-provisioner", "csi-snapshotter", "csi-resizer"} {
		if _, ok, err := Container(base, "dirvol-node", name); err != nil || !ok {
			t.Errorf("deploy/base DaemonSet dirvol-node has no %s container (err %v); the e2e harness runs it with that container's arguments", name, err)
		}
	}
}

// The driver registers itself with the kubelet: the registration directory
// it is given is where the kubelet's plugins_registry is mounted, and the
// CSI socket path it tells the kubelet is, on the host, where its own
// --endpoint socket lies. No node-driver-registrar is left to do it twice.
func TestDeployRegistersWithKubelet(t *testing.T) {
	objs, err := Render(filepath.Join("..", "..", "..", "deploy", "base"))
	if err != nil {
		t.Fatal(err)
	}
	var ds *appsv1.DaemonSet
	for _, o := range Select(objs, "DaemonSet") {
		if o.GetName() == "dirvol-node" {
			ds = &appsv1.DaemonSet{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, ds); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ds == nil {
		t.Fatal("deploy/base has no DaemonSet dirvol-node")
	}
	hostPaths := map[string]string{} // volume name -> host path
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == "node-driver-registrar" {
			t.Errorf("container node-driver-registrar is still there: the driver registers itself")
		}
	}
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name != "dirvol" {
			continue
		}
		args := map[string]string{}
		for _, a := range c.Args {
			name, value, _ := strings.Cut(a, "=")
			args[name] = value
		}
		// hostPathOf maps a path inside the container to the host through
		// the container's hostPath mounts.
		hostPathOf := func(p string) string {
			for _, m := range c.VolumeMounts {
				if hp, ok := hostPaths[m.Name]; ok && (p == m.MountPath || strings.HasPrefix(p, m.MountPath+"/")) {
					return path.Join(hp, strings.TrimPrefix(p, m.MountPath))
				}
			}
			return ""
		}
		if got := hostPathOf(args["--kubelet-registration-dir"]); got != "/var/lib/kubelet/plugins_registry" {
			t.Errorf("--kubelet-registration-dir=%s is host path %q, want /var/lib/kubelet/plugins_registry", args["--kubelet-registration-dir"], got)
		}
		endpoint := strings.TrimPrefix(args["--endpoint"], "unix://")
		if got, want := args["--kubelet-registration-path"], hostPathOf(endpoint); got == "" || got != want {
			t.Errorf("--kubelet-registration-path=%s, but the driver's socket %s is at host path %q", got, endpoint, want)
		}
		return
	}
	t.Fatal("DaemonSet dirvol-node has no dirvol container")
}

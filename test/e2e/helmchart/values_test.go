package helmchart

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// render is what one helm template gave, typed where the checks need it.
type render struct {
	objs    []*unstructured.Unstructured
	ds      appsv1.DaemonSet
	classes map[string]storagev1.StorageClass
}

func (r render) container(t *testing.T, name string) corev1.Container {
	t.Helper()
	for _, c := range r.ds.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("DaemonSet has no container %s", name)
	return corev1.Container{}
}

func (r render) volume(name string) (corev1.Volume, bool) {
	for _, v := range r.ds.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return corev1.Volume{}, false
}

// template renders the chart with args; values, when set, is written to a
// values file first.
func template(t *testing.T, values string, args ...string) (render, error) {
	t.Helper()
	if values != "" {
		f := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(f, []byte(values), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--values", f)
	}
	objs, err := helm.Template(context.Background(), "dirvol", chartDir, args...)
	if err != nil {
		return render{}, err
	}
	r := render{objs: objs, classes: map[string]storagev1.StorageClass{}}
	for _, o := range objs {
		var err error
		switch o.GetKind() {
		case "DaemonSet":
			err = runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &r.ds)
		case "StorageClass":
			var sc storagev1.StorageClass
			err = runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &sc)
			r.classes[sc.Name] = sc
		}
		if err != nil {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	return r, nil
}

// Each value reaches the objects it is for.
func TestValues(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values string
		args   []string
		check  func(t *testing.T, r render)
	}{
		{
			name: "pools: --pool flags, and host paths outside the data dir",
			args: []string{"--values", filepath.Join("testdata", "pools.yaml")},
			check: func(t *testing.T, r render) {
				args := r.container(t, "dirvol").Args
				want := []string{
					"--pool=name=btrfs,image=/var/lib/dirvol/images/btrfs.img,size=20Gi",
					"--pool=name=fast,path=/mnt/fast/dirvol,backend=btrfs",
					"--pool=name=scratch,image=/srv/images/scratch.img,size=512Mi,path=/mnt/scratch",
				}
				var got []string
				for _, a := range args {
					if strings.HasPrefix(a, "--pool=") {
						got = append(got, a)
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("--pool args %q, want %q", got, want)
				}
				// The btrfs image lies in the data dir, which is mounted
				// already; the others need host paths of their own.
				mounts := map[string]corev1.VolumeMount{}
				for _, m := range r.container(t, "dirvol").VolumeMounts {
					mounts[m.Name] = m
				}
				for name, path := range map[string]string{
					"pool-fast-path":     "/mnt/fast/dirvol",
					"pool-scratch-image": "/srv/images",
					"pool-scratch-mount": "/mnt/scratch",
				} {
					v, ok := r.volume(name)
					if !ok || v.HostPath == nil || v.HostPath.Path != path || *v.HostPath.Type != corev1.HostPathDirectoryOrCreate {
						t.Errorf("volume %s = %+v, want hostPath %s DirectoryOrCreate", name, v, path)
					}
					m, ok := mounts[name]
					if !ok || m.MountPath != path || m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationBidirectional {
						t.Errorf("mount %s = %+v, want %s Bidirectional", name, m, path)
					}
				}
				for _, v := range r.ds.Spec.Template.Spec.Volumes {
					if strings.HasPrefix(v.Name, "pool-btrfs") {
						t.Errorf("volume %s for a pool inside the data dir", v.Name)
					}
				}
			},
		},
		{
			name: "StorageClass parameters, reclaim policy, default class",
			args: []string{"--values", filepath.Join("testdata", "pools.yaml"), "--set", "defaultStorageClass=dirvol-fast"},
			check: func(t *testing.T, r render) {
				sc, ok := r.classes["dirvol-fast"]
				if !ok {
					t.Fatalf("no StorageClass dirvol-fast among %v", r.classes)
				}
				want := map[string]string{"pool": "fast", "onDelete": "archive", "mode": "2770", "uid": "1000", "gid": "1000000"}
				if !mapsEqual(sc.Parameters, want) {
					t.Errorf("parameters %v, want %v", sc.Parameters, want)
				}
				if sc.ReclaimPolicy == nil || *sc.ReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
					t.Errorf("reclaimPolicy %v, want Retain", sc.ReclaimPolicy)
				}
				if sc.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" {
					t.Errorf("annotations %v, want the default-class mark", sc.Annotations)
				}
				if sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
					t.Errorf("volumeBindingMode %v", sc.VolumeBindingMode)
				}
				if len(r.classes) != 4 {
					t.Errorf("%d classes, want the 4 of the values", len(r.classes))
				}
				if _, ok := r.classes["dirvol"].Annotations["storageclass.kubernetes.io/is-default-class"]; ok {
					t.Errorf("class dirvol marked default too")
				}
			},
		},
		{
			name: "sidecar images and flags",
			values: `
sidecars:
  provisioner:
    image: registry.example.com/csi-provisioner:v9
    extraArgs: [--worker-threads=20, --retry-interval-max=30s]
    logLevel: 5
  resizer:
    httpPort: 9900
    args: [--leader-election=true]
`,
			check: func(t *testing.T, r render) {
				p := r.container(t, "csi-provisioner")
				if p.Image != "registry.example.com/csi-provisioner:v9" {
					t.Errorf("provisioner image %s", p.Image)
				}
				want := []string{"--csi-address=/csi/csi.sock", "--node-deployment=true", "--enable-capacity=true",
					"--capacity-ownerref-level=1", "--extra-create-metadata=true", "--strict-topology=true",
					"--immediate-topology=false", "--kube-api-qps=50", "--kube-api-burst=100",
					"--worker-threads=20", "--retry-interval-max=30s", "--v=5"}
				if !slices.Equal(p.Args, want) {
					t.Errorf("provisioner args\n %q, want\n %q", p.Args, want)
				}
				rs := r.container(t, "csi-resizer")
				if want := []string{"--csi-address=/csi/csi.sock", "--leader-election=true", "--http-endpoint=:9900", "--v=2"}; !slices.Equal(rs.Args, want) {
					t.Errorf("resizer args %q, want %q", rs.Args, want)
				}
				if len(rs.Ports) != 1 || rs.Ports[0].ContainerPort != 9900 || rs.LivenessProbe.HTTPGet.Port.StrVal != "resizer-http" {
					t.Errorf("resizer ports %+v, liveness %+v", rs.Ports, rs.LivenessProbe.HTTPGet)
				}
				if s := r.container(t, "csi-snapshotter"); s.Image != "registry.k8s.io/sig-storage/csi-snapshotter:v8.7.0" {
					t.Errorf("snapshotter image %s changed", s.Image)
				}
			},
		},
		{
			name: "driver image, metrics port, data and kubelet dirs",
			args: []string{"--set", "image.repository=registry.example.com/dirvol,image.tag=v0.9.0,image.pullPolicy=Always",
				"--set", "driver.metricsPort=9999,driver.dataDir=/data/dirvol,kubeletDir=/var/lib/k0s/kubelet",
				"--set", "driver.extraArgs={--graceful-stop-timeout=40s}"},
			check: func(t *testing.T, r render) {
				d := r.container(t, "dirvol")
				if d.Image != "registry.example.com/dirvol:v0.9.0" || d.ImagePullPolicy != corev1.PullAlways {
					t.Errorf("image %s %s", d.Image, d.ImagePullPolicy)
				}
				for _, a := range []string{"--http-endpoint=:9999", "--data-dir=/data/dirvol",
					"--kubelet-registration-dir=/var/lib/k0s/kubelet/plugins_registry",
					"--kubelet-registration-path=/var/lib/k0s/kubelet/plugins/dirvol.csi.dev/csi.sock",
					"--graceful-stop-timeout=40s"} {
					if !slices.Contains(d.Args, a) {
						t.Errorf("driver args %q lack %s", d.Args, a)
					}
				}
				if len(d.Ports) != 1 || d.Ports[0].ContainerPort != 9999 || d.Ports[0].Name != "http" {
					t.Errorf("ports %+v, want http 9999", d.Ports)
				}
				for name, path := range map[string]string{
					"data-dir": "/data/dirvol", "pods-dir": "/var/lib/k0s/kubelet/pods",
					"socket-dir": "/var/lib/k0s/kubelet/plugins/dirvol.csi.dev", "registration-dir": "/var/lib/k0s/kubelet/plugins_registry",
				} {
					if v, ok := r.volume(name); !ok || v.HostPath.Path != path {
						t.Errorf("volume %s: %+v, want hostPath %s", name, v, path)
					}
				}
			},
		},
		{
			name: "nodeSelector and tolerations",
			values: `
nodeSelector:
  storage: local
tolerations:
  - key: dedicated
    operator: Equal
    value: storage
    effect: NoSchedule
`,
			check: func(t *testing.T, r render) {
				spec := r.ds.Spec.Template.Spec
				// Maps merge with the defaults in helm; a user drops one with null.
				if spec.NodeSelector["storage"] != "local" || spec.NodeSelector["kubernetes.io/os"] != "linux" {
					t.Errorf("nodeSelector %v", spec.NodeSelector)
				}
				want := []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "storage", Effect: corev1.TaintEffectNoSchedule}}
				if !slices.Equal(spec.Tolerations, want) {
					t.Errorf("tolerations %+v, want %+v", spec.Tolerations, want)
				}
			},
		},
		{
			name: "an existing namespace",
			args: []string{"--set", "namespace.name=storage,namespace.create=false"},
			check: func(t *testing.T, r render) {
				for _, o := range r.objs {
					if o.GetKind() == "Namespace" {
						t.Errorf("Namespace %s rendered with namespace.create=false", o.GetName())
					}
					if ns := o.GetNamespace(); ns != "" && ns != "storage" {
						t.Errorf("%s %s in namespace %s", o.GetKind(), o.GetName(), ns)
					}
					if subjects, ok := o.Object["subjects"].([]any); ok {
						for _, s := range subjects {
							if ns := s.(map[string]any)["namespace"]; ns != "storage" {
								t.Errorf("%s %s: subject in namespace %v", o.GetKind(), o.GetName(), ns)
							}
						}
					}
				}
			},
		},
		{
			name: "VolumeAttributesClasses",
			values: `
volumeAttributesClasses:
  - name: keep-on-delete
    parameters:
      onDelete: retain
`,
			check: func(t *testing.T, r render) {
				var names []string
				for _, o := range r.objs {
					if o.GetKind() == "VolumeAttributesClass" {
						names = append(names, o.GetName())
						if p, _, _ := unstructured.NestedStringMap(o.Object, "parameters"); p["onDelete"] != "retain" || o.Object["driverName"] != "dirvol.csi.dev" {
							t.Errorf("%s: %v", o.GetName(), o.Object)
						}
					}
				}
				if !slices.Equal(names, []string{"keep-on-delete"}) {
					t.Errorf("VolumeAttributesClasses %v", names)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := template(t, tc.values, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r)
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Values that would give a broken install fail the render, and the message
// says which value and what is wrong with it.
func TestBadValues(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values string
		want   []string // substrings of helm's error, all of them
	}{
		{"unknown pool backend", "pools: [{name: x, path: /mnt/x, backend: zfs}]", []string{"/pools/0/backend", "dir", "btrfs"}},
		{"image pool without size", "pools: [{name: x, image: /var/lib/dirvol/x.img}]", []string{"/pools/0", "size"}},
		{"image pool with a backend", "pools: [{name: x, image: /var/lib/dirvol/x.img, size: 1Gi, backend: dir}]", []string{`pool "x" is an image pool`, "drop backend"}},
		{"directory pool with a size", "pools: [{name: x, path: /mnt/x, size: 1Gi}]", []string{`pool "x" has a size but no image`}},
		{"pool with neither path nor image", "pools: [{name: x}]", []string{"/pools/0", "path"}},
		{"relative pool path", "pools: [{name: x, path: mnt/x}]", []string{"/pools/0/path"}},
		{"comma in a pool path", "pools: [{name: x, path: '/mnt/x,backend=dir'}]", []string{"/pools/0/path"}},
		{"size not a quantity", "pools: [{name: x, image: /x.img, size: 20 GB}]", []string{"/pools/0/size"}},
		{"pool name with a slash", "pools: [{name: a/b, path: /mnt/x}]", []string{"/pools/0/name"}},
		{"pool given twice", "pools: [{name: x, path: /mnt/x}, {name: x, path: /mnt/y}]", []string{`pool "x" is given twice`}},
		{"class naming no pool", "storageClasses: [{name: c, parameters: {pool: fast}}]", []string{`class "c" names pool "fast"`, "default"}},
		{"unknown class parameter", "storageClasses: [{name: c, parameters: {bogus: x}}]", []string{"/storageClasses/0/parameters", "bogus"}},
		{"bad onDelete", "storageClasses: [{name: c, parameters: {onDelete: sometimes}}]", []string{"/storageClasses/0/parameters/onDelete", "archive"}},
		{"mode not quoted", "storageClasses: [{name: c, parameters: {mode: 0770}}]", []string{"/storageClasses/0/parameters/mode", "string"}},
		{"default class not among the classes", "defaultStorageClass: dirvol-fast", []string{`defaultStorageClass: "dirvol-fast" is not among storageClasses`, "dirvol-archive"}},
		{"class given twice", "storageClasses: [{name: a}, {name: a}]", []string{`class "a" is given twice`}},
		{"reclaim policy", "storageClasses: [{name: a, reclaimPolicy: Recycle}]", []string{"/storageClasses/0/reclaimPolicy"}},
		{"VolumeAttributesClass with pool", "volumeAttributesClasses: [{name: v, parameters: {pool: x}}]", []string{"/volumeAttributesClasses/0/parameters", "pool"}},
		{"metrics port", "driver: {metricsPort: 70000}", []string{"/driver/metricsPort"}},
		{"sidecar flag without dashes", "sidecars: {provisioner: {extraArgs: [kube-api-qps=5]}}", []string{"/sidecars/provisioner/extraArgs/0"}},
		{"misspelled value", "sidecar: {provisioner: {image: x}}", []string{"sidecar"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := template(t, tc.values)
			var he *Error
			if !errors.As(err, &he) {
				t.Fatalf("helm template succeeded (or failed to run: %v); want an error naming %q", err, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(he.Stderr, w) {
					t.Errorf("helm's error does not name %q:\n%s", w, he.Stderr)
				}
			}
			t.Logf("%s", strings.TrimSpace(he.Stderr))
		})
	}
}

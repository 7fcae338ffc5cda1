package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestClient(t *testing.T) {
	for _, tc := range []struct{ userAgent, want string }{
		{"kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/abc1234/persistent-volume-binder", "kube-controller-manager/persistent-volume-binder"},
		{"kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/abc1234", "kube-controller-manager"},
		{"kube-scheduler/v1.37.2 (linux/amd64) kubernetes/abc1234/scheduler", "kube-scheduler/scheduler"},
		{"csi-provisioner/v0.0.0 (linux/amd64) kubernetes/$Format", "csi-provisioner"},
		{"bench.test/v0.0.0 (linux/amd64) kubernetes/$Format", "bench.test"},
		{"", "(none)"},
	} {
		if got := client(tc.userAgent); got != tc.want {
			t.Errorf("client(%q) = %q, want %q", tc.userAgent, got, tc.want)
		}
	}
}

// The count keeps a request when it was received inside the window and its
// response is complete, once, and names it by verb, resource and
// subresource.
func TestReadRequests(t *testing.T) {
	const pv = `kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/abc1234/persistent-volume-binder`
	lines := []string{
		`{"stage":"ResponseComplete","verb":"update","userAgent":"` + pv + `","objectRef":{"resource":"persistentvolumeclaims"},"requestReceivedTimestamp":"2026-01-01T10:00:00.500000Z"}`,
		`{"stage":"ResponseComplete","verb":"update","userAgent":"` + pv + `","objectRef":{"resource":"persistentvolumes","subresource":"status"},"requestReceivedTimestamp":"2026-01-01T10:00:01.000000Z"}`,
		`{"stage":"Panic","verb":"update","userAgent":"` + pv + `","objectRef":{"resource":"persistentvolumes"},"requestReceivedTimestamp":"2026-01-01T10:00:01.000000Z"}`,
		// Before and at the end of the window.
		`{"stage":"ResponseComplete","verb":"create","userAgent":"` + pv + `","objectRef":{"resource":"events"},"requestReceivedTimestamp":"2026-01-01T09:59:59.999999Z"}`,
		`{"stage":"ResponseComplete","verb":"create","userAgent":"` + pv + `","objectRef":{"resource":"events"},"requestReceivedTimestamp":"2026-01-01T10:00:02.000000Z"}`,
		`{"stage":"ResponseComplete","verb":"get","userAgent":"csi-provisioner/v0.0.0 (linux/amd64) kubernetes/$Format","objectRef":{"resource":"persistentvolumes"},"requestReceivedTimestamp":"2026-01-01T10:00:01.000000Z"}`,
		`{"stage":"ResponseComplete","verb":"get","userAgent":"bench.test/v0.0.0","requestReceivedTimestamp":"2026-01-01T10:00:01.000000Z"}`,
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	got, err := readRequests(path, from, from.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want := requests{
		"kube-controller-manager/persistent-volume-binder": {"update persistentvolumeclaims": 1, "update persistentvolumes/status": 1},
		"csi-provisioner": {"get persistentvolumes": 1},
		"bench.test":      {"get": 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for c, kinds := range want {
		for k, n := range kinds {
			if got[c][k] != n || len(got[c]) != len(kinds) {
				t.Errorf("got %v, want %v", got, want)
			}
		}
	}
}

// The floor is the Kubernetes client slowest at its default limit: the PV
// binder's 130 requests at 20 QPS after a burst of 30 (5 s), not the
// scheduler's 300 at 50 after 100 (4 s), and never dirvol's sidecar.
func TestFloor(t *testing.T) {
	r := requests{}
	r.add("kube-controller-manager/persistent-volume-binder", "update persistentvolumeclaims", 100)
	r.add("kube-controller-manager/persistent-volume-binder", "create events", 30)
	r.add("kube-controller-manager/pvc-protection-controller", "update persistentvolumeclaims", 40)
	r.add("kube-scheduler/scheduler", "create pods/binding", 300)
	r.add("csi-provisioner", "create persistentvolumes", 5000)
	d, who := r.floor()
	if d != 5*time.Second || who != "kube-controller-manager/persistent-volume-binder" {
		t.Errorf("floor = %s set by %s, want 5s by kube-controller-manager/persistent-volume-binder", d, who)
	}
	if all, writes := r.total("kube-controller-manager/persistent-volume-binder"); all != 130 || writes != 130 {
		t.Errorf("total = %d, %d writes; want 130, 130", all, writes)
	}
	if d, _ := (requests{"kube-scheduler/scheduler": {"create pods/binding": 80}}).floor(); d != 0 {
		t.Errorf("floor within the burst = %s, want 0", d)
	}
}

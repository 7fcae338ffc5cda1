package controller

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestValidateCreateVolume(t *testing.T) {
	ok := func() *csi.CreateVolumeRequest { return createReq("pvc-1", nil) }
	block := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	tests := []struct {
		name   string
		mutate func(*csi.CreateVolumeRequest)
		want   codes.Code
	}{
		{"valid", func(*csi.CreateVolumeRequest) {}, codes.OK},
		{"no name", func(r *csi.CreateVolumeRequest) { r.Name = "" }, codes.InvalidArgument},
		{"dot-dot name", func(r *csi.CreateVolumeRequest) { r.Name = "../../etc" }, codes.InvalidArgument},
		{"slash name", func(r *csi.CreateVolumeRequest) { r.Name = "a/b" }, codes.InvalidArgument},
		{"NUL name", func(r *csi.CreateVolumeRequest) { r.Name = "a\x00b" }, codes.InvalidArgument},
		{"2KB name", func(r *csi.CreateVolumeRequest) { r.Name = strings.Repeat("a", 2048) }, codes.InvalidArgument},
		{"no capabilities", func(r *csi.CreateVolumeRequest) { r.VolumeCapabilities = nil }, codes.InvalidArgument},
		{"block", func(r *csi.CreateVolumeRequest) { r.VolumeCapabilities = []*csi.VolumeCapability{block} }, codes.OK},
		{"block and mount", func(r *csi.CreateVolumeRequest) {
			r.VolumeCapabilities = append(r.VolumeCapabilities, block)
		}, codes.InvalidArgument},
		{"multi node", func(r *csi.CreateVolumeRequest) {
			r.VolumeCapabilities = []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}
		}, codes.InvalidArgument},
		{"negative required", func(r *csi.CreateVolumeRequest) { r.CapacityRange.RequiredBytes = -1 }, codes.InvalidArgument},
		{"required over limit", func(r *csi.CreateVolumeRequest) { r.CapacityRange.LimitBytes = 10 }, codes.InvalidArgument},
		{"snapshot source", func(r *csi.CreateVolumeRequest) {
			r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
				Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "s"}}}
		}, codes.OK},
		{"volume source", func(r *csi.CreateVolumeRequest) {
			r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
				Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "v"}}}
		}, codes.OK},
		{"snapshot source without ID", func(r *csi.CreateVolumeRequest) {
			r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
				Snapshot: &csi.VolumeContentSource_SnapshotSource{}}}
		}, codes.InvalidArgument},
		{"volume source without ID", func(r *csi.CreateVolumeRequest) {
			r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{}}
		}, codes.InvalidArgument},
		{"empty content source", func(r *csi.CreateVolumeRequest) { r.VolumeContentSource = &csi.VolumeContentSource{} }, codes.InvalidArgument},
		{"unknown mutable parameter", func(r *csi.CreateVolumeRequest) { r.MutableParameters = map[string]string{"a": "b"} }, codes.InvalidArgument},
		{"mutable onDelete", func(r *csi.CreateVolumeRequest) { r.MutableParameters = map[string]string{"onDelete": "archive"} }, codes.OK},
		{"bad mutable onDelete", func(r *csi.CreateVolumeRequest) { r.MutableParameters = map[string]string{"onDelete": "shred"} }, codes.InvalidArgument},
		{"mutable pool", func(r *csi.CreateVolumeRequest) { r.MutableParameters = map[string]string{"pool": "fast"} }, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ok()
			tc.mutate(r)
			wantCode(t, validateCreateVolume(r), tc.want)
		})
	}
}

func TestParseParameters(t *testing.T) {
	tests := []struct {
		name   string
		params map[string]string
		ok     bool
	}{
		{"none", nil, true},
		{"all", map[string]string{"pool": "fast", "onDelete": "archive", "mode": "0750", "uid": "1000", "gid": "2000",
			paramPVCName: "data-0", paramPVCNamespace: "default", paramPVName: "pvc-123"}, true},
		{"unknown key", map[string]string{"size": "1"}, false},
		{"unknown reserved key", map[string]string{"csi.storage.k8s.io/fstype": "ext4"}, false},
		{"bad onDelete", map[string]string{"onDelete": "shred"}, false},
		{"bad mode", map[string]string{"mode": "rwx"}, false},
		{"mode too long", map[string]string{"mode": "17777"}, false},
		{"mode not octal", map[string]string{"mode": "0778"}, false},
		{"mode too short", map[string]string{"mode": "77"}, false},
		{"negative uid", map[string]string{"uid": "-1"}, false},
		{"empty pool", map[string]string{"pool": ""}, false},
		{"namespace with slash", map[string]string{paramPVCNamespace: "a/b"}, false},
		{"pvc name dot-dot", map[string]string{paramPVCName: ".."}, false},
		{"path template", map[string]string{"pathTemplate": "{{ .PVC.Namespace }}/{{ .PVC.Name }}"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseParameters(tc.params)
			if (err == nil) != tc.ok {
				t.Fatalf("parseParameters(%v) = %v, want ok=%v", tc.params, err, tc.ok)
			}
			if err != nil {
				for k := range tc.params {
					if !strings.Contains(err.Error(), k) {
						t.Errorf("error %q does not name key %q", err, k)
					}
				}
				if _, ok := tc.params["pathTemplate"]; ok && !strings.Contains(err.Error(), "by-pvc") {
					t.Errorf("error %q does not say where to find a claim's data", err)
				}
			}
		})
	}
}

// Four-digit modes carry setuid, setgid and sticky, as chmod takes them.
func TestParseParametersMode(t *testing.T) {
	tests := []struct {
		mode string
		want uint32
	}{
		{"755", 0o755},
		{"0750", 0o750},
		{"1777", 0o1777},
		{"2770", 0o2770},
		{"02770", 0o2770},
		{"4755", 0o4755},
		{"7777", 0o7777},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			p, err := parseParameters(map[string]string{paramMode: tc.mode})
			if err != nil {
				t.Fatalf("mode %q: %v", tc.mode, err)
			}
			if p.perm.Mode != tc.want {
				t.Errorf("mode %q = %o, want %o", tc.mode, p.perm.Mode, tc.want)
			}
		})
	}
}

func TestCreateVolumeIdempotency(t *testing.T) {
	tests := []struct {
		name   string
		second func(*csi.CreateVolumeRequest)
		want   codes.Code
		same   bool
	}{
		{"same request", func(*csi.CreateVolumeRequest) {}, codes.OK, true},
		{"no size", func(r *csi.CreateVolumeRequest) { r.CapacityRange = nil }, codes.OK, true},
		{"bigger size", func(r *csi.CreateVolumeRequest) { r.CapacityRange.RequiredBytes = 2 << 20 }, codes.AlreadyExists, false},
		{"limit below size", func(r *csi.CreateVolumeRequest) { r.CapacityRange = &csi.CapacityRange{LimitBytes: 1 << 10} }, codes.AlreadyExists, false},
		{"other parameters", func(r *csi.CreateVolumeRequest) { r.Parameters = map[string]string{"onDelete": "retain"} }, codes.AlreadyExists, false},
		{"other pool", func(r *csi.CreateVolumeRequest) { r.Parameters = map[string]string{"pool": "fast"} }, codes.AlreadyExists, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			first := e.create(t, "pv-same", nil)
			r := createReq("pv-same", nil)
			tc.second(r)
			resp, err := e.srv.CreateVolume(context.Background(), r)
			wantCode(t, err, tc.want)
			if tc.same && resp.GetVolume().GetVolumeId() != first.GetVolumeId() {
				t.Fatalf("second create returned %s, want %s", resp.GetVolume().GetVolumeId(), first.GetVolumeId())
			}
			if n := len(e.vols.List()); n != 1 {
				t.Fatalf("%d volumes exist, want 1", n)
			}
		})
	}
}

func TestCreateVolumeErrorsChangeNothing(t *testing.T) {
	tests := []struct {
		name string
		req  *csi.CreateVolumeRequest
		want codes.Code
	}{
		{"unknown pool", createReq("pv-x", map[string]string{"pool": "nope"}), codes.InvalidArgument},
		{"unknown parameter", createReq("pv-x", map[string]string{"color": "red"}), codes.InvalidArgument},
		{"too big", &csi.CreateVolumeRequest{Name: "pv-x", CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 62},
			VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}}, codes.ResourceExhausted},
		{"traversal name", createReq("../../etc", nil), codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			before := tree(t, e.root)
			_, err := e.srv.CreateVolume(context.Background(), tc.req)
			wantCode(t, err, tc.want)
			if after := tree(t, e.root); !reflect.DeepEqual(before, after) {
				t.Fatalf("disk changed:\nbefore %v\nafter  %v", before, after)
			}
			if tc.want == codes.ResourceExhausted && !strings.Contains(status.Convert(err).Message(), "can promise") {
				t.Errorf("message %q does not give the figures", status.Convert(err).Message())
			}
		})
	}
}

func TestCreateVolumeConcurrentSameName(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	ids := make(chan string, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.srv.CreateVolume(context.Background(), createReq("pv-race", nil))
			switch status.Code(err) {
			case codes.OK:
				ids <- resp.GetVolume().GetVolumeId()
			case codes.Aborted:
			default:
				t.Errorf("CreateVolume: %v", err)
			}
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	if len(seen) != 1 {
		t.Fatalf("successful creates returned %d distinct IDs, want 1", len(seen))
	}
	if n := len(e.vols.List()); n != 1 {
		t.Fatalf("%d volumes in catalog, want 1", n)
	}
	entries, _ := os.ReadDir(filepath.Join(e.root, "default", "volumes"))
	if len(entries) != 1 {
		t.Fatalf("%d volume directories, want 1", len(entries))
	}
}

func TestDeleteVolume(t *testing.T) {
	tests := []struct {
		name     string
		params   map[string]string
		dirAfter func(root, id string) string // a path that must exist after delete, "" for none
	}{
		{"delete", nil, func(string, string) string { return "" }},
		{"retain", map[string]string{"onDelete": "retain"}, func(root, id string) string {
			return filepath.Join(root, "default", "volumes", id, "data.txt")
		}},
		{"archive", map[string]string{"onDelete": "archive", paramPVCNamespace: "ns", paramPVCName: "claim", paramPVName: "pv-1"},
			func(root, id string) string {
				m, _ := filepath.Glob(filepath.Join(root, "default", "archive", "ns_claim_pv-1_*", "data.txt"))
				if len(m) != 1 {
					return filepath.Join(root, "default", "archive", "ns_claim_pv-1_<missing>")
				}
				return m[0]
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			v := e.create(t, "pv-1", tc.params)
			dir := filepath.Join(e.root, "default", "volumes", v.GetVolumeId())
			if err := os.WriteFile(filepath.Join(dir, "data.txt"), []byte("keep?"), 0o644); err != nil {
				t.Fatal(err)
			}
			for range 2 { // the second call checks idempotency
				if _, err := e.srv.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: v.GetVolumeId()}); err != nil {
					t.Fatalf("DeleteVolume: %v", err)
				}
			}
			if n := len(e.vols.List()); n != 0 {
				t.Fatalf("%d volumes listed after delete", n)
			}
			if want := tc.dirAfter(e.root, v.GetVolumeId()); want != "" {
				if _, err := os.Stat(want); err != nil {
					t.Fatalf("expected %s after delete: %v", want, err)
				}
			} else if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("volume directory still there after delete: %v", err)
			}
		})
	}
}

func TestDeleteVolumeForeignIDs(t *testing.T) {
	tests := []struct {
		name string
		id   string
		want codes.Code
	}{
		{"empty", "", codes.InvalidArgument},
		{"traversal", "../../etc", codes.OK},
		{"not ours", "fake-vol-id", codes.OK},
		{"well formed unknown", "vol-0123456789abcdef0123456789abcdef", codes.OK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.create(t, "pv-keep", nil)
			before := tree(t, e.root)
			_, err := e.srv.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: tc.id})
			wantCode(t, err, tc.want)
			if after := tree(t, e.root); !reflect.DeepEqual(before, after) {
				t.Fatalf("disk changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func TestValidateVolumeCapabilities(t *testing.T) {
	e := newEnv(t)
	v := e.create(t, "pv-vvc", nil)
	ctx := context.Background()
	ok := []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}
	resp, err := e.srv.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: v.GetVolumeId(), VolumeCapabilities: ok})
	if err != nil || resp.GetConfirmed() == nil {
		t.Fatalf("supported capability not confirmed: %v %v", resp, err)
	}
	bad := []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}
	resp, err = e.srv.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: v.GetVolumeId(), VolumeCapabilities: bad})
	if err != nil || resp.GetConfirmed() != nil || resp.GetMessage() == "" {
		t.Fatalf("unsupported capability: resp %v err %v, want unconfirmed with a message", resp, err)
	}
	_, err = e.srv.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "vol-0123456789abcdef0123456789abcdef", VolumeCapabilities: ok})
	wantCode(t, err, codes.NotFound)
	_, err = e.srv.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: v.GetVolumeId()})
	wantCode(t, err, codes.InvalidArgument)
}

func TestDeleteVolumeInUnconfiguredPool(t *testing.T) {
	e := newEnv(t)
	v := e.create(t, "pv-fast", map[string]string{"pool": "fast"})
	// Restart without the "fast" pool: the record stays, its pool is gone.
	cat, _, err := catalog.Open(filepath.Join(e.root, "catalog"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.NewDir("default", filepath.Join(e.root, "default"))
	if err != nil {
		t.Fatal(err)
	}
	vols, err := volume.New(cat, map[string]pool.Pool{"default": p}, "default", 1<<20, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := vols.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{NodeID: testNode}, vols)
	if err != nil {
		t.Fatal(err)
	}
	before := tree(t, e.root)
	_, err = srv.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: v.GetVolumeId()})
	wantCode(t, err, codes.FailedPrecondition)
	if after := tree(t, e.root); !reflect.DeepEqual(before, after) {
		t.Fatalf("disk changed:\nbefore %v\nafter  %v", before, after)
	}
}

// mountedAt is a volume.UseChecker that reports every path mounted at
// target.
type mountedAt string

func (m mountedAt) MountedAt(string, bool) ([]string, error) { return []string{string(m)}, nil }

func TestDeleteVolumeStillPublished(t *testing.T) {
	e := newEnv(t)
	v := e.create(t, "pv-1", nil)
	cat, _, err := catalog.Open(filepath.Join(e.root, "catalog"))
	if err != nil {
		t.Fatal(err)
	}
	pools := map[string]pool.Pool{}
	for _, name := range []string{"default", "fast"} {
		p, err := pool.NewDir(name, filepath.Join(e.root, name))
		if err != nil {
			t.Fatal(err)
		}
		pools[name] = p
	}
	const target = "/var/lib/kubelet/pods/p/volumes/kubernetes.io~csi/pv-1/mount"
	vols, err := volume.New(cat, pools, "default", 1<<20, time.Now, volume.WithUseChecker(mountedAt(target)))
	if err != nil {
		t.Fatal(err)
	}
	if err := vols.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{NodeID: testNode}, vols)
	if err != nil {
		t.Fatal(err)
	}
	before := tree(t, e.root)
	_, err = srv.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: v.GetVolumeId()})
	wantCode(t, err, codes.FailedPrecondition)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, target) || !strings.Contains(msg, "unpublish") {
		t.Errorf("message %q does not name the target and say to unpublish", msg)
	}
	if after := tree(t, e.root); !reflect.DeepEqual(before, after) {
		t.Fatalf("disk changed:\nbefore %v\nafter  %v", before, after)
	}
}

package hostile

import (
	"math"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

// snapshot takes a snapshot of volume vol and returns its ID.
func (e *env) snapshot(t *testing.T, name, vol string) string {
	t.Helper()
	resp, err := e.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: vol})
	if err != nil {
		t.Fatalf("CreateSnapshot %s: %v", name, err)
	}
	return resp.GetSnapshot().GetSnapshotId()
}

func restoreFrom(name, snapID string) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: rwCaps(),
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapID}}}}
}

func cloneOf(name, volID string) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: rwCaps(),
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: volID}}}}
}

// oneChanged returns id with its last character replaced.
func oneChanged(id string) string {
	b := []byte(id)
	if b[len(b)-1] = '0'; id[len(id)-1] == '0' {
		b[len(b)-1] = '1'
	}
	return string(b)
}

func TestSnapshotNames(t *testing.T) {
	e := start(t)
	vol, _ := e.create(t, "snap-source", nil)
	for _, tc := range []struct{ name, snap string }{
		{"parent traversal", "../../etc"},
		{"slash", "a/b"},
		{"absolute", "/abs"},
		{"nul", "a\x00b"},
		{"2KB", long},
		{"empty", ""},
		{"dot", "."},
		{"dotdot", ".."},
		{"non-ASCII", "名前"},
		{"trailing newline", "x\n"},
		{"leading dash", "-x"},
		{"129 characters", strings.Repeat("b", 129)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snap(t)
			_, err := e.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: tc.snap, SourceVolumeId: vol})
			words := []string{"name"}
			if tc.snap != "" {
				words = append(words, echoed(tc.snap))
			}
			wantStatus(t, err, codes.InvalidArgument, words...)
			e.unchanged(t, before)
		})
	}
}

func TestSnapshotParameters(t *testing.T) {
	e := start(t)
	vol, _ := e.create(t, "snap-source", nil)
	for _, tc := range []struct {
		name   string
		params map[string]string
		word   string
	}{
		{"unknown key", map[string]string{"pool": "extra"}, `"pool"`},
		{"snapshot name traversal", map[string]string{"csi.storage.k8s.io/volumesnapshot/name": "../../x"}, `"csi.storage.k8s.io/volumesnapshot/name"`},
		{"namespace slash", map[string]string{"csi.storage.k8s.io/volumesnapshot/namespace": "a/b"}, `"csi.storage.k8s.io/volumesnapshot/namespace"`},
		{"content name NUL", map[string]string{"csi.storage.k8s.io/volumesnapshotcontent/name": "a\x00b"}, `"csi.storage.k8s.io/volumesnapshotcontent/name"`},
		{"content name 2KB", map[string]string{"csi.storage.k8s.io/volumesnapshotcontent/name": long}, echoed(long)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snap(t)
			_, err := e.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: vol, Parameters: tc.params})
			wantStatus(t, err, codes.InvalidArgument, tc.word)
			e.unchanged(t, before)
		})
	}
}

// hostileIDs are IDs that must never reach a path; real is a real ID of the
// same kind, prefix its issued prefix.
func hostileIDs(real, prefix string) []struct {
	name, id  string
	wellShape bool
} {
	return []struct {
		name, id  string
		wellShape bool
	}{
		{"parent traversal", "../../etc", false},
		{"prefix traversal", prefix + "../../x", false},
		{"slash", "a/b", false},
		{"nul", "\x00", false},
		{"2KB", long, false},
		{"unknown well-formed", prefix + "0123456789abcdef0123456789abcdef", true},
		{"one character changed", oneChanged(real), true},
		{"upper case", strings.ToUpper(real), false},
		{"trailing slash", real + "/", false},
		{"trailing newline", real + "\n", false},
		{"dot segments", real + "/../" + real, false},
		{"empty", "", false},
	}
}

// TestSnapshotIDs sends hostile snapshot IDs to every RPC that takes one,
// with a real snapshot in place that must survive all of them.
func TestSnapshotIDs(t *testing.T) {
	e := start(t)
	vol, dir := e.create(t, "victim", nil)
	writeFile(t, dir+"/data.txt", "victim data")
	real := e.snapshot(t, "victim-snap", vol)
	rpcs := []struct {
		rpc   string
		call  func(id string) error
		empty codes.Code // code for an empty ID
		other codes.Code // code for any other ID
	}{
		{"DeleteSnapshot", func(id string) error {
			_, err := e.ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: id})
			return err
		}, codes.InvalidArgument, codes.OK}, // CSI: deleting what does not exist is success
		{"GetSnapshot", func(id string) error {
			_, err := e.ctrl.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: id})
			return err
		}, codes.InvalidArgument, codes.NotFound},
		{"ListSnapshots", func(id string) error {
			resp, err := e.ctrl.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SnapshotId: id})
			if err == nil && id != "" && len(resp.GetEntries()) != 0 {
				t.Errorf("ListSnapshots(snapshot_id=%q) listed %v", id, resp.GetEntries())
			}
			return err
		}, codes.OK, codes.OK}, // an empty filter lists everything; an unknown one nothing
		{"CreateVolume from snapshot", func(id string) error {
			_, err := e.ctrl.CreateVolume(ctx, restoreFrom("restored", id))
			return err
		}, codes.InvalidArgument, codes.NotFound},
	}
	for _, r := range rpcs {
		for _, tc := range hostileIDs(real, "snap-") {
			t.Run(r.rpc+"/"+tc.name, func(t *testing.T) {
				before := e.snap(t)
				err := r.call(tc.id)
				switch {
				case tc.id == "":
					wantStatus(t, err, r.empty, "snapshot_id")
				case r.other == codes.NotFound:
					wantStatus(t, err, codes.NotFound, "snapshot", echoed(tc.id))
				default:
					wantStatus(t, err, r.other)
				}
				e.unchanged(t, before)
			})
		}
	}
	if _, err := e.ctrl.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: real}); err != nil {
		t.Errorf("the real snapshot is gone after the hostile IDs: %v", err)
	}
}

// TestSourceVolumeIDs sends hostile volume IDs where a snapshot's or
// clone's source, or an expansion, names a volume.
func TestSourceVolumeIDs(t *testing.T) {
	e := start(t)
	real, dir := e.create(t, "victim", nil)
	writeFile(t, dir+"/data.txt", "victim data")
	rpcs := []struct {
		rpc   string
		call  func(id string) error
		field string // the field an empty ID is refused for
	}{
		{"CreateSnapshot", func(id string) error {
			_, err := e.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: id})
			return err
		}, "source_volume_id"},
		{"CreateVolume clone", func(id string) error {
			_, err := e.ctrl.CreateVolume(ctx, cloneOf("clone", id))
			return err
		}, "volume_id"},
		{"ControllerExpandVolume", func(id string) error {
			_, err := e.ctrl.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: id,
				CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 20}})
			return err
		}, "volume_id"},
		{"ListSnapshots", func(id string) error {
			resp, err := e.ctrl.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: id})
			if err == nil && id != "" && len(resp.GetEntries()) != 0 {
				t.Errorf("ListSnapshots(source_volume_id=%q) listed %v", id, resp.GetEntries())
			}
			return err
		}, ""},
	}
	for _, r := range rpcs {
		for _, tc := range hostileIDs(real, "vol-") {
			t.Run(r.rpc+"/"+tc.name, func(t *testing.T) {
				before := e.snap(t)
				err := r.call(tc.id)
				switch {
				case r.rpc == "ListSnapshots":
					wantStatus(t, err, codes.OK)
				case tc.id == "":
					wantStatus(t, err, codes.InvalidArgument, r.field)
				case r.rpc == "ControllerExpandVolume" && tc.wellShape:
					// A volume this node does not hold is left to the node
					// that holds it (NodeExpandVolume): nothing changes here.
					wantStatus(t, err, codes.OK)
				default:
					wantStatus(t, err, codes.NotFound, "volume", echoed(tc.id))
				}
				e.unchanged(t, before)
			})
		}
	}
	if resp, err := e.ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: real}); err != nil || resp.GetVolume().GetCapacityBytes() != 1<<20 {
		t.Errorf("the real volume changed after the hostile IDs: %v, %v", resp, err)
	}
}

func TestSnapshotListTokens(t *testing.T) {
	e := start(t)
	vol, _ := e.create(t, "listed", nil)
	e.snapshot(t, "listed-snap", vol)
	for _, tc := range []struct {
		name  string
		token string
		max   int32
		code  codes.Code
		word  string
	}{
		{"traversal token", "../x", 0, codes.Aborted, "starting_token"},
		{"invalid token", "invalid-token", 0, codes.Aborted, "starting_token"},
		{"volume ID token", vol, 0, codes.Aborted, "starting_token"},
		{"2KB token", long, 0, codes.Aborted, "starting_token"},
		{"nul token", "snap-\x00", 0, codes.Aborted, "starting_token"},
		{"negative max_entries", "", -1, codes.InvalidArgument, "max_entries -1"},
		{"min int32 max_entries", "", math.MinInt32, codes.InvalidArgument, "max_entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snap(t)
			_, err := e.ctrl.ListSnapshots(ctx, &csi.ListSnapshotsRequest{StartingToken: tc.token, MaxEntries: tc.max})
			wantStatus(t, err, tc.code, tc.word)
			e.unchanged(t, before)
		})
	}
}

func TestExpandCapacityRange(t *testing.T) {
	e := start(t)
	vol, _ := e.create(t, "expand", nil) // 1Mi, the default size
	for _, tc := range []struct {
		name          string
		required, lim int64
		code          codes.Code
		words         []string
	}{
		{"no range", 0, 0, codes.InvalidArgument, []string{"capacity_range"}},
		{"negative required", -1, 0, codes.InvalidArgument, []string{"required_bytes", "-1"}},
		{"min int64 limit", 1, math.MinInt64, codes.InvalidArgument, []string{"limit_bytes"}},
		{"required over limit", 3 << 20, 2 << 20, codes.InvalidArgument, []string{"required_bytes 3145728", "limit_bytes 2097152"}},
		{"limit below current size", 0, 512 << 10, codes.OutOfRange, []string{"512Ki", "1Mi", "cannot shrink"}},
		{"required 2^62", 1 << 62, 0, codes.ResourceExhausted, []string{"can promise", "filesystem free"}},
		{"required max int64", math.MaxInt64, 0, codes.ResourceExhausted, []string{"can promise"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snap(t)
			req := &csi.ControllerExpandVolumeRequest{VolumeId: vol}
			if tc.required != 0 || tc.lim != 0 {
				req.CapacityRange = &csi.CapacityRange{RequiredBytes: tc.required, LimitBytes: tc.lim}
			}
			_, err := e.ctrl.ControllerExpandVolume(ctx, req)
			wantStatus(t, err, tc.code, tc.words...)
			e.unchanged(t, before)
		})
	}
}

// TestAccessTypes: a volume is a directory or a block device, never both,
// and a restore or clone keeps its source's kind.
func TestAccessTypes(t *testing.T) {
	e := start(t)
	vol, _ := e.create(t, "fs", nil)
	snap := e.snapshot(t, "fs-snap", vol)
	both := []*csi.VolumeCapability{rwCaps()[0], blockCap()}
	t.Run("CreateVolume with both", func(t *testing.T) {
		before := e.snap(t)
		_, err := e.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "both", VolumeCapabilities: both})
		wantStatus(t, err, codes.InvalidArgument, "block", "mount")
		e.unchanged(t, before)
	})
	for name, req := range map[string]*csi.CreateVolumeRequest{
		"block restore of a filesystem snapshot": restoreFrom("block-restore", snap),
		"block clone of a filesystem volume":     cloneOf("block-clone", vol),
	} {
		t.Run(name, func(t *testing.T) {
			req.VolumeCapabilities = []*csi.VolumeCapability{blockCap()}
			before := e.snap(t)
			_, err := e.ctrl.CreateVolume(ctx, req)
			wantStatus(t, err, codes.InvalidArgument, "filesystem", "block")
			e.unchanged(t, before)
		})
	}
	t.Run("ValidateVolumeCapabilities block on a filesystem volume", func(t *testing.T) {
		resp, err := e.ctrl.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: vol,
			VolumeCapabilities: []*csi.VolumeCapability{blockCap()}})
		if err != nil || resp.GetConfirmed() != nil || !strings.Contains(resp.GetMessage(), "block") {
			t.Errorf("ValidateVolumeCapabilities = %v, %v; want not confirmed, with a message naming block", resp, err)
		}
	})
}

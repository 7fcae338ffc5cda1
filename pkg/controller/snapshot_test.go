package controller

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/csierr"
	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/topology"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	unknownVolID  = "vol-0123456789abcdef0123456789abcdef"
	unknownSnapID = "snap-0123456789abcdef0123456789abcdef"
)

func snapReq(name, source string) *csi.CreateSnapshotRequest {
	return &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: source}
}

func (e *testEnv) snapshot(t *testing.T, name, source string) *csi.Snapshot {
	t.Helper()
	resp, err := e.srv.CreateSnapshot(context.Background(), snapReq(name, source))
	if err != nil {
		t.Fatalf("CreateSnapshot(%s): %v", name, err)
	}
	return resp.GetSnapshot()
}

// wantMessage fails unless err's message holds every one of words.
func wantMessage(t *testing.T, err error, words ...string) {
	t.Helper()
	for _, w := range words {
		if msg := status.Convert(err).Message(); !strings.Contains(msg, w) {
			t.Errorf("message %q does not say %q", msg, w)
		}
	}
}

// restartWithout rebuilds the server over the same catalog with only the
// default pool, as a start that was not given the other pools.
func (e *testEnv) restartWithout(t *testing.T) *Server {
	t.Helper()
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
	return srv
}

func TestValidateCreateSnapshot(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*csi.CreateSnapshotRequest)
		want   codes.Code
	}{
		{"valid", func(*csi.CreateSnapshotRequest) {}, codes.OK},
		{"128-character name", func(r *csi.CreateSnapshotRequest) { r.Name = strings.Repeat("s", 128) }, codes.OK},
		{"metadata parameters", func(r *csi.CreateSnapshotRequest) {
			r.Parameters = map[string]string{paramSnapshotName: "snap-1", paramSnapshotNamespace: "default", paramSnapshotContentName: "snapcontent-1"}
		}, codes.OK},
		{"no name", func(r *csi.CreateSnapshotRequest) { r.Name = "" }, codes.InvalidArgument},
		{"traversal name", func(r *csi.CreateSnapshotRequest) { r.Name = "../../etc" }, codes.InvalidArgument},
		{"NUL name", func(r *csi.CreateSnapshotRequest) { r.Name = "a\x00b" }, codes.InvalidArgument},
		{"129-character name", func(r *csi.CreateSnapshotRequest) { r.Name = strings.Repeat("s", 129) }, codes.InvalidArgument},
		{"no source", func(r *csi.CreateSnapshotRequest) { r.SourceVolumeId = "" }, codes.InvalidArgument},
		{"unknown parameter", func(r *csi.CreateSnapshotRequest) { r.Parameters = map[string]string{"pool": "fast"} }, codes.InvalidArgument},
		{"bad namespace", func(r *csi.CreateSnapshotRequest) { r.Parameters = map[string]string{paramSnapshotNamespace: "../x"} }, codes.InvalidArgument},
		{"bad snapshot name", func(r *csi.CreateSnapshotRequest) { r.Parameters = map[string]string{paramSnapshotName: "A/B"} }, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := snapReq("snap-1", unknownVolID)
			tc.mutate(r)
			wantCode(t, validateCreateSnapshot(r), tc.want)
		})
	}
}

func TestValidateSnapshotIDs(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"delete", validateDeleteSnapshot(&csi.DeleteSnapshotRequest{SnapshotId: "x"}), codes.OK},
		{"delete without ID", validateDeleteSnapshot(&csi.DeleteSnapshotRequest{}), codes.InvalidArgument},
		{"get", validateGetSnapshot(&csi.GetSnapshotRequest{SnapshotId: "x"}), codes.OK},
		{"get without ID", validateGetSnapshot(&csi.GetSnapshotRequest{}), codes.InvalidArgument},
		{"list", validateListSnapshots(&csi.ListSnapshotsRequest{MaxEntries: 5}), codes.OK},
		{"list, negative max", validateListSnapshots(&csi.ListSnapshotsRequest{MaxEntries: -1}), codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.err, tc.want) })
	}
}

func TestCreateSnapshot(t *testing.T) {
	tests := []struct {
		name  string
		call  func(t *testing.T, e *testEnv, vol string) (*csi.CreateSnapshotResponse, error)
		want  codes.Code
		words []string
	}{
		{"new", func(t *testing.T, e *testEnv, vol string) (*csi.CreateSnapshotResponse, error) {
			return e.srv.CreateSnapshot(context.Background(), snapReq("snap-1", vol))
		}, codes.OK, nil},
		{"retry", func(t *testing.T, e *testEnv, vol string) (*csi.CreateSnapshotResponse, error) {
			first := e.snapshot(t, "snap-1", vol)
			resp, err := e.srv.CreateSnapshot(context.Background(), snapReq("snap-1", vol))
			if err == nil && resp.GetSnapshot().GetSnapshotId() != first.GetSnapshotId() {
				t.Errorf("retry returned %s, first was %s", resp.GetSnapshot().GetSnapshotId(), first.GetSnapshotId())
			}
			return resp, err
		}, codes.OK, nil},
		{"name taken by a snapshot of another volume", func(t *testing.T, e *testEnv, vol string) (*csi.CreateSnapshotResponse, error) {
			other := e.create(t, "pv-other", nil).GetVolumeId()
			e.snapshot(t, "snap-1", other)
			return e.srv.CreateSnapshot(context.Background(), snapReq("snap-1", vol))
		}, codes.AlreadyExists, []string{"snap-1"}},
		{"unknown volume", func(t *testing.T, e *testEnv, vol string) (*csi.CreateSnapshotResponse, error) {
			return e.srv.CreateSnapshot(context.Background(), snapReq("snap-1", unknownVolID))
		}, codes.NotFound, []string{unknownVolID, `not on node "node-a"`}},
		{"malformed volume ID", func(t *testing.T, e *testEnv, vol string) (*csi.CreateSnapshotResponse, error) {
			return e.srv.CreateSnapshot(context.Background(), snapReq("snap-1", "../../etc"))
		}, codes.NotFound, []string{`../../etc`}},
		{"topology of this node", func(t *testing.T, e *testEnv, vol string) (*csi.CreateSnapshotResponse, error) {
			r := snapReq("snap-1", vol)
			r.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{topology.ForNode(testNode)}}
			return e.srv.CreateSnapshot(context.Background(), r)
		}, codes.OK, nil},
		{"topology excluding this node", func(t *testing.T, e *testEnv, vol string) (*csi.CreateSnapshotResponse, error) {
			r := snapReq("snap-1", vol)
			r.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{topology.ForNode("node-b")}}
			return e.srv.CreateSnapshot(context.Background(), r)
		}, codes.ResourceExhausted, []string{`"node-a"`}},
		{"name being created", func(t *testing.T, e *testEnv, vol string) (*csi.CreateSnapshotResponse, error) {
			e.srv.locks.TryLock(lockSnapshotName("snap-1"))
			return e.srv.CreateSnapshot(context.Background(), snapReq("snap-1", vol))
		}, codes.Aborted, []string{"snap-1"}},
		{"volume being deleted", func(t *testing.T, e *testEnv, vol string) (*csi.CreateSnapshotResponse, error) {
			e.srv.locks.TryLock(lockVolumeID(vol))
			return e.srv.CreateSnapshot(context.Background(), snapReq("snap-1", vol))
		}, codes.Aborted, nil},
		{"volume in a pool not configured", func(t *testing.T, e *testEnv, vol string) (*csi.CreateSnapshotResponse, error) {
			fast := e.create(t, "pv-fast", map[string]string{"pool": "fast"}).GetVolumeId()
			e.srv = e.restartWithout(t)
			return e.srv.CreateSnapshot(context.Background(), snapReq("snap-1", fast))
		}, codes.FailedPrecondition, []string{`"fast"`, "--pool"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			vol := e.create(t, "pv-1", nil).GetVolumeId()
			writeData(t, filepath.Join(e.root, "default", "volumes", vol), "data")
			resp, err := tc.call(t, e, vol)
			wantCode(t, err, tc.want)
			wantMessage(t, err, tc.words...)
			if tc.want != codes.OK {
				return
			}
			sn := resp.GetSnapshot()
			if !volume.ValidSnapshotID(sn.GetSnapshotId()) || sn.GetSourceVolumeId() != vol || sn.GetSizeBytes() != 1<<20 ||
				!sn.GetReadyToUse() || sn.GetCreationTime() == nil || time.Since(sn.GetCreationTime().AsTime()) > time.Minute {
				t.Errorf("snapshot = %v", sn)
			}
			if got := readData(t, filepath.Join(e.root, "default", "snapshots", sn.GetSnapshotId())); got != "data" {
				t.Errorf("snapshot holds %q", got)
			}
		})
	}
}

func writeData(t *testing.T, dir, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readData(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDeleteSnapshot(t *testing.T) {
	tests := []struct {
		name string
		// id returns the ID to delete; it may prepare the server.
		id      func(t *testing.T, e *testEnv, snap string) string
		want    codes.Code
		removed bool // the snapshot is gone afterwards
	}{
		{name: "existing", id: func(_ *testing.T, _ *testEnv, s string) string { return s }, want: codes.OK, removed: true},
		{name: "empty", id: func(*testing.T, *testEnv, string) string { return "" }, want: codes.InvalidArgument},
		{name: "unknown", id: func(*testing.T, *testEnv, string) string { return unknownSnapID }, want: codes.OK},
		{name: "malformed", id: func(*testing.T, *testEnv, string) string { return "reallyfakesnapshotid" }, want: codes.OK},
		{name: "traversal", id: func(*testing.T, *testEnv, string) string { return "../../etc" }, want: codes.OK},
		{name: "volume ID", id: func(_ *testing.T, e *testEnv, _ string) string { return e.vols.List()[0].ID }, want: codes.OK},
		{name: "busy", id: func(_ *testing.T, e *testEnv, s string) string {
			e.srv.locks.TryLock(lockSnapshotID(s))
			return s
		}, want: codes.Aborted},
		{name: "pool not configured", id: func(t *testing.T, e *testEnv, _ string) string {
			fast := e.snapshot(t, "snap-fast", e.create(t, "pv-fast", map[string]string{"pool": "fast"}).GetVolumeId())
			e.srv = e.restartWithout(t)
			return fast.GetSnapshotId()
		}, want: codes.FailedPrecondition},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			vol := e.create(t, "pv-1", nil).GetVolumeId()
			snap := e.snapshot(t, "snap-1", vol).GetSnapshotId()
			id := tc.id(t, e, snap)
			before := tree(t, e.root)
			for range 2 { // the second call checks idempotency
				_, err := e.srv.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{SnapshotId: id})
				wantCode(t, err, tc.want)
			}
			_, err := e.vols.GetSnapshot(snap)
			if gone := csierr.Code(err) == codes.NotFound; gone != tc.removed {
				t.Errorf("snapshot removed = %v, want %v", gone, tc.removed)
			}
			if !tc.removed && !reflect.DeepEqual(before, tree(t, e.root)) {
				t.Error("disk changed")
			}
			if tc.removed {
				if _, err := os.Lstat(filepath.Join(e.root, "default", "snapshots", snap)); !os.IsNotExist(err) {
					t.Errorf("snapshot directory still present: %v", err)
				}
			}
		})
	}
}

// Deleting a volume leaves its snapshots listed and restorable.
func TestDeleteVolumeWithSnapshots(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	vol := e.create(t, "pv-1", nil).GetVolumeId()
	writeData(t, filepath.Join(e.root, "default", "volumes", vol), "kept in the snapshot")
	snap := e.snapshot(t, "snap-1", vol).GetSnapshotId()
	if _, err := e.srv.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol}); err != nil {
		t.Fatalf("DeleteVolume of a volume with a snapshot: %v", err)
	}
	got, err := e.srv.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: snap})
	if err != nil || got.GetSnapshot().GetSourceVolumeId() != vol {
		t.Fatalf("GetSnapshot after the source was deleted = %v, %v", got, err)
	}
	resp, err := e.srv.CreateVolume(ctx, restoreReq("pv-restored", snap))
	if err != nil {
		t.Fatalf("restore after the source was deleted: %v", err)
	}
	if got := readData(t, filepath.Join(e.root, "default", "volumes", resp.GetVolume().GetVolumeId())); got != "kept in the snapshot" {
		t.Errorf("restored volume holds %q", got)
	}
}

func TestGetSnapshot(t *testing.T) {
	tests := []struct {
		name string
		id   func(snap string) string
		want codes.Code
	}{
		{"existing", func(s string) string { return s }, codes.OK},
		{"empty", func(string) string { return "" }, codes.InvalidArgument},
		{"unknown", func(string) string { return unknownSnapID }, codes.NotFound},
		{"malformed", func(string) string { return "none-exist-id" }, codes.NotFound},
		{"traversal", func(string) string { return "../x" }, codes.NotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			snap := e.snapshot(t, "snap-1", e.create(t, "pv-1", nil).GetVolumeId())
			resp, err := e.srv.GetSnapshot(context.Background(), &csi.GetSnapshotRequest{SnapshotId: tc.id(snap.GetSnapshotId())})
			wantCode(t, err, tc.want)
			if err == nil && !reflect.DeepEqual(resp.GetSnapshot().String(), snap.String()) {
				t.Errorf("GetSnapshot = %v, want %v", resp.GetSnapshot(), snap)
			}
		})
	}
}

func TestListSnapshots(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	vols := []string{e.create(t, "pv-a", nil).GetVolumeId(), e.create(t, "pv-b", nil).GetVolumeId()}
	bySource := map[string][]string{}
	var all []string
	for i := range 7 {
		src := vols[i%2]
		id := e.snapshot(t, fmt.Sprintf("snap-%d", i), src).GetSnapshotId()
		bySource[src] = append(bySource[src], id)
		all = append(all, id)
	}
	list := func(t *testing.T, req *csi.ListSnapshotsRequest) []string {
		t.Helper()
		var got []string
		for pages := 0; ; pages++ {
			resp, err := e.srv.ListSnapshots(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if req.MaxEntries > 0 && len(resp.GetEntries()) > int(req.MaxEntries) {
				t.Fatalf("page of %d entries, max %d", len(resp.GetEntries()), req.MaxEntries)
			}
			for _, en := range resp.GetEntries() {
				got = append(got, en.GetSnapshot().GetSnapshotId())
			}
			if req.StartingToken = resp.GetNextToken(); req.StartingToken == "" {
				return got
			}
		}
	}
	sorted := func(ids []string) []string {
		out := append([]string(nil), ids...)
		for i := range out {
			for j := i + 1; j < len(out); j++ {
				if out[j] < out[i] {
					out[i], out[j] = out[j], out[i]
				}
			}
		}
		if out == nil {
			out = []string{}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		req  *csi.ListSnapshotsRequest
		want []string
	}{
		{"all", &csi.ListSnapshotsRequest{}, all},
		{"pages of 3", &csi.ListSnapshotsRequest{MaxEntries: 3}, all},
		{"pages of 1", &csi.ListSnapshotsRequest{MaxEntries: 1}, all},
		{"one snapshot", &csi.ListSnapshotsRequest{SnapshotId: all[3]}, all[3:4]},
		{"unknown snapshot", &csi.ListSnapshotsRequest{SnapshotId: unknownSnapID}, nil},
		{"malformed snapshot", &csi.ListSnapshotsRequest{SnapshotId: "none-exist-id"}, nil},
		{"by source", &csi.ListSnapshotsRequest{SourceVolumeId: vols[1]}, bySource[vols[1]]},
		{"by source, pages of 2", &csi.ListSnapshotsRequest{SourceVolumeId: vols[0], MaxEntries: 2}, bySource[vols[0]]},
		{"unknown source", &csi.ListSnapshotsRequest{SourceVolumeId: unknownVolID}, nil},
		{"snapshot and its source", &csi.ListSnapshotsRequest{SnapshotId: all[2], SourceVolumeId: vols[0]}, all[2:3]},
		{"snapshot and another source", &csi.ListSnapshotsRequest{SnapshotId: all[2], SourceVolumeId: vols[1]}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sorted(list(t, tc.req)); !reflect.DeepEqual(got, sorted(tc.want)) {
				t.Errorf("listed %v, want %v", got, sorted(tc.want))
			}
		})
	}
}

func TestListSnapshotsBadInput(t *testing.T) {
	tests := []struct {
		name string
		req  *csi.ListSnapshotsRequest
		want codes.Code
	}{
		{"negative max", &csi.ListSnapshotsRequest{MaxEntries: -1}, codes.InvalidArgument},
		{"foreign token", &csi.ListSnapshotsRequest{StartingToken: "invalid-token"}, codes.Aborted},
		{"volume ID as token", &csi.ListSnapshotsRequest{StartingToken: unknownVolID}, codes.Aborted},
		{"traversal token", &csi.ListSnapshotsRequest{StartingToken: "../x"}, codes.Aborted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newEnv(t).srv.ListSnapshots(context.Background(), tc.req)
			wantCode(t, err, tc.want)
		})
	}
}

// A token whose snapshot was deleted between pages still works.
func TestListSnapshotsTokenOfDeletedSnapshot(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	vol := e.create(t, "pv-1", nil).GetVolumeId()
	for i := range 4 {
		e.snapshot(t, fmt.Sprintf("snap-%d", i), vol)
	}
	first, err := e.srv.ListSnapshots(ctx, &csi.ListSnapshotsRequest{MaxEntries: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: first.GetNextToken()}); err != nil {
		t.Fatal(err)
	}
	rest, err := e.srv.ListSnapshots(ctx, &csi.ListSnapshotsRequest{StartingToken: first.GetNextToken()})
	if err != nil || len(rest.GetEntries()) != 2 {
		t.Fatalf("second page = %v, %v; want 2 entries", rest, err)
	}
}

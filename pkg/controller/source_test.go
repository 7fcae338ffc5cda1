package controller

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/topology"
	"google.golang.org/grpc/codes"
)

func blockCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func restoreReq(name, snap string) *csi.CreateVolumeRequest {
	r := createReq(name, nil)
	r.CapacityRange = nil
	r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap}}}
	return r
}

func cloneReq(name, vol string) *csi.CreateVolumeRequest {
	r := createReq(name, nil)
	r.CapacityRange = nil
	r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
		Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: vol}}}
	return r
}

// sourceEnv holds a 1Mi volume in pool "fast" holding "source data", a
// snapshot of it, and a 1Mi block volume with a snapshot.
type sourceEnv struct {
	*testEnv
	vol, snap, blockVol, blockSnap string
}

func newSourceEnv(t *testing.T) *sourceEnv {
	t.Helper()
	e := newEnv(t)
	s := &sourceEnv{testEnv: e}
	s.vol = e.create(t, "pv-src", map[string]string{"pool": "fast"}).GetVolumeId()
	writeData(t, filepath.Join(e.root, "fast", "volumes", s.vol), "source data")
	s.snap = e.snapshot(t, "snap-src", s.vol).GetSnapshotId()
	br := createReq("pv-block", nil)
	br.VolumeCapabilities = []*csi.VolumeCapability{blockCap()}
	resp, err := e.srv.CreateVolume(context.Background(), br)
	if err != nil {
		t.Fatalf("CreateVolume(block): %v", err)
	}
	s.blockVol = resp.GetVolume().GetVolumeId()
	s.blockSnap = e.snapshot(t, "snap-block", s.blockVol).GetSnapshotId()
	return s
}

func TestCreateVolumeFromSource(t *testing.T) {
	tests := []struct {
		name  string
		req   func(s *sourceEnv) *csi.CreateVolumeRequest
		want  codes.Code
		words []string
		// for OK: the content source the answer must carry
		wantSource func(s *sourceEnv) *csi.VolumeContentSource
		wantData   bool // the new volume holds "source data"
	}{
		{name: "restore", req: func(s *sourceEnv) *csi.CreateVolumeRequest { return restoreReq("pv-new", s.snap) },
			want: codes.OK, wantData: true,
			wantSource: func(s *sourceEnv) *csi.VolumeContentSource { return restoreReq("x", s.snap).VolumeContentSource }},
		{name: "clone", req: func(s *sourceEnv) *csi.CreateVolumeRequest { return cloneReq("pv-new", s.vol) },
			want: codes.OK, wantData: true,
			wantSource: func(s *sourceEnv) *csi.VolumeContentSource { return cloneReq("x", s.vol).VolumeContentSource }},
		{name: "block restore", req: func(s *sourceEnv) *csi.CreateVolumeRequest {
			r := restoreReq("pv-new", s.blockSnap)
			r.VolumeCapabilities = []*csi.VolumeCapability{blockCap()}
			return r
		}, want: codes.OK,
			wantSource: func(s *sourceEnv) *csi.VolumeContentSource { return restoreReq("x", s.blockSnap).VolumeContentSource }},
		{name: "unknown snapshot", req: func(s *sourceEnv) *csi.CreateVolumeRequest { return restoreReq("pv-new", unknownSnapID) },
			want: codes.NotFound, words: []string{unknownSnapID, `not on node "node-a"`, "node that holds the source"}},
		{name: "malformed snapshot ID", req: func(s *sourceEnv) *csi.CreateVolumeRequest { return restoreReq("pv-new", "non-existing-snapshot-id") },
			want: codes.NotFound, words: []string{"non-existing-snapshot-id", "not on node"}},
		{name: "unknown volume", req: func(s *sourceEnv) *csi.CreateVolumeRequest { return cloneReq("pv-new", unknownVolID) },
			want: codes.NotFound, words: []string{unknownVolID, "not on node"}},
		{name: "smaller than the snapshot", req: func(s *sourceEnv) *csi.CreateVolumeRequest {
			r := restoreReq("pv-new", s.snap)
			r.CapacityRange = &csi.CapacityRange{RequiredBytes: 1 << 10}
			return r
		}, want: codes.OutOfRange, words: []string{"1Ki", "1Mi"}},
		{name: "another pool", req: func(s *sourceEnv) *csi.CreateVolumeRequest {
			r := restoreReq("pv-new", s.snap)
			r.Parameters = map[string]string{"pool": "default"}
			return r
		}, want: codes.InvalidArgument, words: []string{`"fast"`}},
		{name: "block from a filesystem snapshot", req: func(s *sourceEnv) *csi.CreateVolumeRequest {
			r := restoreReq("pv-new", s.snap)
			r.VolumeCapabilities = []*csi.VolumeCapability{blockCap()}
			return r
		}, want: codes.InvalidArgument, words: []string{"filesystem", "block"}},
		{name: "filesystem clone of a block volume", req: func(s *sourceEnv) *csi.CreateVolumeRequest { return cloneReq("pv-new", s.blockVol) },
			want: codes.InvalidArgument, words: []string{"block"}},
		{name: "topology excludes the node holding the source", req: func(s *sourceEnv) *csi.CreateVolumeRequest {
			r := restoreReq("pv-new", s.snap)
			r.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{topology.ForNode("node-b")}}
			return r
		}, want: codes.ResourceExhausted, words: []string{`"node-a"`, "node that holds the source", "snapshot"}},
		{name: "source busy", req: func(s *sourceEnv) *csi.CreateVolumeRequest {
			s.srv.locks.TryLock(lockSnapshotID(s.snap))
			return restoreReq("pv-new", s.snap)
		}, want: codes.Aborted, words: []string{"snapshot"}},
		{name: "name of a volume from another source", req: func(s *sourceEnv) *csi.CreateVolumeRequest { return cloneReq("pv-src", s.blockVol) },
			want: codes.AlreadyExists},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSourceEnv(t)
			req := tc.req(s)
			before := tree(t, s.root)
			resp, err := s.srv.CreateVolume(context.Background(), req)
			wantCode(t, err, tc.want)
			wantMessage(t, err, tc.words...)
			if tc.want != codes.OK {
				if after := tree(t, s.root); !reflect.DeepEqual(before, after) {
					t.Error("disk changed")
				}
				return
			}
			v := resp.GetVolume()
			if got, want := v.GetContentSource().String(), tc.wantSource(s).String(); got != want {
				t.Errorf("content_source = %s, want %s", got, want)
			}
			if v.GetCapacityBytes() != 1<<20 {
				t.Errorf("capacity %d, want the source's 1Mi", v.GetCapacityBytes())
			}
			if tc.wantData {
				if got := readData(t, filepath.Join(s.root, "fast", "volumes", v.GetVolumeId())); got != "source data" {
					t.Errorf("new volume holds %q", got)
				}
			}
			again, err := s.srv.CreateVolume(context.Background(), req)
			if err != nil || again.GetVolume().GetVolumeId() != v.GetVolumeId() {
				t.Errorf("retry = %v, %v; want %s", again, err, v.GetVolumeId())
			}
			got, err := s.srv.ControllerGetVolume(context.Background(), &csi.ControllerGetVolumeRequest{VolumeId: v.GetVolumeId()})
			if err != nil || got.GetVolume().GetContentSource().String() != v.GetContentSource().String() {
				t.Errorf("ControllerGetVolume = %v, %v; want the content source", got, err)
			}
		})
	}
}

func TestValidateVolumeCapabilitiesAccessType(t *testing.T) {
	s := newSourceEnv(t)
	ctx := context.Background()
	mount := []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}
	block := []*csi.VolumeCapability{blockCap()}
	for _, tc := range []struct {
		name      string
		vol       string
		caps      []*csi.VolumeCapability
		confirmed bool
	}{
		{"mount on a filesystem volume", s.vol, mount, true},
		{"block on a block volume", s.blockVol, block, true},
		{"block on a filesystem volume", s.vol, block, false},
		{"mount on a block volume", s.blockVol, mount, false},
		{"both", s.vol, append(append([]*csi.VolumeCapability{}, mount...), block...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.srv.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: tc.vol, VolumeCapabilities: tc.caps})
			if err != nil || (resp.GetConfirmed() != nil) != tc.confirmed || (!tc.confirmed && resp.GetMessage() == "") {
				t.Errorf("ValidateVolumeCapabilities = %v, %v; want confirmed %v (with a message if not)", resp, err, tc.confirmed)
			}
		})
	}
}

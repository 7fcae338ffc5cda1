package controller

import (
	"context"
	"math"
	"reflect"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

func expandReq(id string, required, limit int64) *csi.ControllerExpandVolumeRequest {
	return &csi.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: required, LimitBytes: limit}}
}

func TestValidateControllerExpandVolume(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*csi.ControllerExpandVolumeRequest)
		want   codes.Code
	}{
		{"valid", func(*csi.ControllerExpandVolumeRequest) {}, codes.OK},
		{"limit only", func(r *csi.ControllerExpandVolumeRequest) { r.CapacityRange = &csi.CapacityRange{LimitBytes: 5} }, codes.OK},
		{"mount capability", func(r *csi.ControllerExpandVolumeRequest) {
			r.VolumeCapability = mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
		}, codes.OK},
		{"block capability", func(r *csi.ControllerExpandVolumeRequest) { r.VolumeCapability = blockCap() }, codes.OK},
		{"no volume ID", func(r *csi.ControllerExpandVolumeRequest) { r.VolumeId = "" }, codes.InvalidArgument},
		{"no capacity range", func(r *csi.ControllerExpandVolumeRequest) { r.CapacityRange = nil }, codes.InvalidArgument},
		{"empty capacity range", func(r *csi.ControllerExpandVolumeRequest) { r.CapacityRange = &csi.CapacityRange{} }, codes.InvalidArgument},
		{"negative required", func(r *csi.ControllerExpandVolumeRequest) { r.CapacityRange.RequiredBytes = -1 }, codes.InvalidArgument},
		{"min int64 limit", func(r *csi.ControllerExpandVolumeRequest) { r.CapacityRange.LimitBytes = math.MinInt64 }, codes.InvalidArgument},
		{"required over limit", func(r *csi.ControllerExpandVolumeRequest) { r.CapacityRange.LimitBytes = 1 }, codes.InvalidArgument},
		{"multi-node capability", func(r *csi.ControllerExpandVolumeRequest) {
			r.VolumeCapability = mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
		}, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := expandReq(unknownVolID, 2<<20, 0)
			tc.mutate(r)
			wantCode(t, validateControllerExpandVolume(r), tc.want)
		})
	}
}

func TestControllerExpandVolume(t *testing.T) {
	tests := []struct {
		name string
		// req builds the request for the 1Mi filesystem volume fs and the
		// 1Mi block volume block; it may prepare the server.
		req          func(t *testing.T, e *testEnv, fs, block string) *csi.ControllerExpandVolumeRequest
		want         codes.Code
		words        []string
		wantCapacity int64
		wantNode     bool
		changes      bool // the disk or a record changes
	}{
		{name: "filesystem volume", req: func(_ *testing.T, _ *testEnv, fs, _ string) *csi.ControllerExpandVolumeRequest {
			return expandReq(fs, 2<<20, 0)
		}, want: codes.OK, wantCapacity: 2 << 20, changes: true},
		{name: "block volume", req: func(_ *testing.T, _ *testEnv, _, block string) *csi.ControllerExpandVolumeRequest {
			return expandReq(block, 3<<20, 4<<20)
		}, want: codes.OK, wantCapacity: 3 << 20, wantNode: true, changes: true},
		{name: "already large enough", req: func(_ *testing.T, _ *testEnv, fs, _ string) *csi.ControllerExpandVolumeRequest {
			return expandReq(fs, 1<<20, 0)
		}, want: codes.OK, wantCapacity: 1 << 20},
		{name: "volume of another node", req: func(*testing.T, *testEnv, string, string) *csi.ControllerExpandVolumeRequest {
			return expandReq(unknownVolID, 5<<20, 0)
		}, want: codes.OK, wantCapacity: 5 << 20, wantNode: true},
		{name: "malformed ID", req: func(*testing.T, *testEnv, string, string) *csi.ControllerExpandVolumeRequest {
			return expandReq("../../etc", 5<<20, 0)
		}, want: codes.NotFound, words: []string{"../../etc"}},
		{name: "snapshot ID", req: func(*testing.T, *testEnv, string, string) *csi.ControllerExpandVolumeRequest {
			return expandReq(unknownSnapID, 5<<20, 0)
		}, want: codes.NotFound},
		{name: "no capacity range", req: func(_ *testing.T, _ *testEnv, fs, _ string) *csi.ControllerExpandVolumeRequest {
			return &csi.ControllerExpandVolumeRequest{VolumeId: fs}
		}, want: codes.InvalidArgument, words: []string{"capacity_range"}},
		{name: "shrink", req: func(_ *testing.T, _ *testEnv, fs, _ string) *csi.ControllerExpandVolumeRequest {
			return expandReq(fs, 512<<10, 512<<10)
		}, want: codes.OutOfRange, words: []string{"512Ki", "1Mi", "cannot shrink"}},
		{name: "more than the pool can promise", req: func(_ *testing.T, _ *testEnv, fs, _ string) *csi.ControllerExpandVolumeRequest {
			return expandReq(fs, 1<<60, 0)
		}, want: codes.ResourceExhausted, words: []string{"can promise", "filesystem free"}},
		{name: "busy", req: func(_ *testing.T, e *testEnv, fs, _ string) *csi.ControllerExpandVolumeRequest {
			e.srv.locks.TryLock(lockVolumeID(fs))
			return expandReq(fs, 2<<20, 0)
		}, want: codes.Aborted},
		{name: "pool not configured", req: func(t *testing.T, e *testEnv, _, _ string) *csi.ControllerExpandVolumeRequest {
			fast := e.create(t, "pv-fast", map[string]string{"pool": "fast"}).GetVolumeId()
			e.srv = e.restartWithout(t)
			return expandReq(fast, 2<<20, 0)
		}, want: codes.FailedPrecondition, words: []string{`"fast"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			fs := e.create(t, "pv-fs", nil).GetVolumeId()
			br := createReq("pv-block", nil)
			br.VolumeCapabilities = []*csi.VolumeCapability{blockCap()}
			resp, err := e.srv.CreateVolume(context.Background(), br)
			if err != nil {
				t.Fatal(err)
			}
			block := resp.GetVolume().GetVolumeId()
			req := tc.req(t, e, fs, block)
			before := tree(t, e.root)
			for range 2 { // the second call checks idempotency
				got, err := e.srv.ControllerExpandVolume(context.Background(), req)
				wantCode(t, err, tc.want)
				wantMessage(t, err, tc.words...)
				if err == nil && (got.GetCapacityBytes() != tc.wantCapacity || got.GetNodeExpansionRequired() != tc.wantNode) {
					t.Errorf("ControllerExpandVolume = %v, want capacity %d, node expansion %v", got, tc.wantCapacity, tc.wantNode)
				}
			}
			if !tc.changes && !reflect.DeepEqual(before, tree(t, e.root)) {
				t.Error("disk changed")
			}
			if tc.changes {
				v, err := e.srv.ControllerGetVolume(context.Background(), &csi.ControllerGetVolumeRequest{VolumeId: req.GetVolumeId()})
				if err != nil || v.GetVolume().GetCapacityBytes() != tc.wantCapacity {
					t.Errorf("ControllerGetVolume after expansion = %v, %v; want capacity %d", v, err, tc.wantCapacity)
				}
			}
		})
	}
}

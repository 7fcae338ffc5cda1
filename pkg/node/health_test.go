package node

import (
	"context"
	"os"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

func TestNodeGetVolumeHealth(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeHealthRequest
		want    codes.Code
		// wantStatus and wantReason describe the one expected entry; none
		// when wantReason is empty.
		wantStatus csi.VolumeHealthErrorType
		wantReason string
	}{
		{
			name: "healthy",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeHealthRequest {
				return &csi.NodeGetVolumeHealthRequest{VolumeId: id}
			},
		},
		{
			name: "healthy and mounted at the path",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeHealthRequest {
				e.publish(t, rwReq(id, e.target("a")))
				return &csi.NodeGetVolumeHealthRequest{VolumeId: id, VolumePublishPath: e.target("a")}
			},
		},
		{
			name: "not mounted at the path",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeHealthRequest {
				mkdir(t, e.target("a"))
				return &csi.NodeGetVolumeHealthRequest{VolumeId: id, VolumePublishPath: e.target("a")}
			},
			wantStatus: csi.VolumeHealthErrorType_INACCESSIBLE, wantReason: reasonNotMounted,
		},
		{
			name: "directory missing",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeHealthRequest {
				e.publish(t, rwReq(id, e.target("a")))
				if err := os.Remove(source); err != nil {
					t.Fatal(err)
				}
				return &csi.NodeGetVolumeHealthRequest{VolumeId: id, VolumePublishPath: e.target("a")}
			},
			wantStatus: csi.VolumeHealthErrorType_DATA_LOSS, wantReason: "DirectoryMissing",
		},
		{
			name: "unknown volume",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeHealthRequest {
				return &csi.NodeGetVolumeHealthRequest{VolumeId: missingID}
			},
			want: codes.NotFound,
		},
		{
			name: "not a dirvol ID",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeHealthRequest {
				return &csi.NodeGetVolumeHealthRequest{VolumeId: "pvc-1"}
			},
			want: codes.NotFound,
		},
		{
			name: "relative path",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeHealthRequest {
				return &csi.NodeGetVolumeHealthRequest{VolumeId: id, VolumePublishPath: "mount"}
			},
			want: codes.InvalidArgument,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			v, source := e.create(t, "v1")
			resp, err := e.srv.NodeGetVolumeHealth(context.Background(), tt.prepare(t, e, v.ID, source))
			checkCode(t, err, tt.want, "")
			if err != nil {
				return
			}
			h := resp.GetVolumeHealth()
			if h.GetVolumeId() != v.ID {
				t.Errorf("volume_id = %q, want %q", h.GetVolumeId(), v.ID)
			}
			got := h.GetHealthStatuses()
			switch {
			case tt.wantReason == "" && len(got) != 0:
				t.Fatalf("health = %v, want none", got)
			case tt.wantReason != "" && (len(got) != 1 || got[0].GetStatus() != tt.wantStatus ||
				got[0].GetReason() != tt.wantReason || got[0].GetMessage() == ""):
				t.Fatalf("health = %v, want one %s %s with a message", got, tt.wantStatus, tt.wantReason)
			}
		})
	}
}

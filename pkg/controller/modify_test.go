package controller

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/disktree"
	"google.golang.org/grpc/codes"
)

func modifyReq(id string, params map[string]string) *csi.ControllerModifyVolumeRequest {
	return &csi.ControllerModifyVolumeRequest{VolumeId: id, MutableParameters: params}
}

func TestParseMutableParameters(t *testing.T) {
	tests := []struct {
		name   string
		params map[string]string
		want   string // onDelete; "!" for an error
	}{
		{"none", nil, ""},
		{"archive", map[string]string{"onDelete": "archive"}, "archive"},
		{"upper case", map[string]string{"onDelete": "Retain"}, "retain"},
		{"with modify metadata", map[string]string{"onDelete": "delete", paramPVCName: "data-0", paramPVCNamespace: "default", paramPVName: "pvc-1"}, "delete"},
		{"bad onDelete", map[string]string{"onDelete": "shred"}, "!"},
		{"empty onDelete", map[string]string{"onDelete": ""}, "!"},
		{"pool", map[string]string{"pool": "fast"}, "!"},
		{"mode", map[string]string{"mode": "0700"}, "!"},
		{"uid", map[string]string{"uid": "1000"}, "!"},
		{"gid", map[string]string{"gid": "1000"}, "!"},
		{"unknown", map[string]string{"iops": "100"}, "!"},
		{"bad namespace", map[string]string{paramPVCNamespace: "a/b"}, "!"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseMutableParameters(tc.params)
			if tc.want == "!" {
				if err == nil {
					t.Fatalf("parseMutableParameters(%v) accepted", tc.params)
				}
				for k := range tc.params {
					if !strings.Contains(err.Error(), k) {
						t.Errorf("error %q does not name key %q", err, k)
					}
				}
				return
			}
			if err != nil || string(p.onDelete) != tc.want {
				t.Fatalf("parseMutableParameters(%v) = %q, %v; want %q", tc.params, p.onDelete, err, tc.want)
			}
		})
	}
}

func TestValidateControllerModifyVolume(t *testing.T) {
	tests := []struct {
		name string
		req  *csi.ControllerModifyVolumeRequest
		want codes.Code
	}{
		{"valid", modifyReq(unknownVolID, map[string]string{"onDelete": "archive"}), codes.OK},
		{"no parameters", modifyReq(unknownVolID, nil), codes.OK},
		{"no volume ID", modifyReq("", map[string]string{"onDelete": "archive"}), codes.InvalidArgument},
		{"immutable parameter", modifyReq(unknownVolID, map[string]string{"pool": "fast"}), codes.InvalidArgument},
		{"unknown parameter", modifyReq(unknownVolID, map[string]string{"XXX_FakeKey": "XXX_FakeValue"}), codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, validateControllerModifyVolume(tc.req), tc.want)
		})
	}
}

func TestControllerModifyVolume(t *testing.T) {
	tests := []struct {
		name string
		// req builds the request for volume id, made with onDelete=delete;
		// it may prepare the server.
		req          func(t *testing.T, e *testEnv, id string) *csi.ControllerModifyVolumeRequest
		want         codes.Code
		words        []string
		wantOnDelete string
	}{
		{name: "to archive", req: func(_ *testing.T, _ *testEnv, id string) *csi.ControllerModifyVolumeRequest {
			return modifyReq(id, map[string]string{"onDelete": "archive"})
		}, want: codes.OK, wantOnDelete: "archive"},
		{name: "to retain, with modify metadata", req: func(_ *testing.T, _ *testEnv, id string) *csi.ControllerModifyVolumeRequest {
			return modifyReq(id, map[string]string{"onDelete": "retain", paramPVCName: "data", paramPVCNamespace: "ns", paramPVName: "pv-1"})
		}, want: codes.OK, wantOnDelete: "retain"},
		{name: "same policy", req: func(_ *testing.T, _ *testEnv, id string) *csi.ControllerModifyVolumeRequest {
			return modifyReq(id, map[string]string{"onDelete": "delete"})
		}, want: codes.OK, wantOnDelete: "delete"},
		{name: "nothing to change", req: func(_ *testing.T, _ *testEnv, id string) *csi.ControllerModifyVolumeRequest {
			return modifyReq(id, nil)
		}, want: codes.OK, wantOnDelete: "delete"},
		{name: "pool", req: func(_ *testing.T, _ *testEnv, id string) *csi.ControllerModifyVolumeRequest {
			return modifyReq(id, map[string]string{"onDelete": "archive", "pool": "fast"})
		}, want: codes.InvalidArgument, words: []string{`"pool"`, "existing volume"}, wantOnDelete: "delete"},
		{name: "mode", req: func(_ *testing.T, _ *testEnv, id string) *csi.ControllerModifyVolumeRequest {
			return modifyReq(id, map[string]string{"mode": "0700"})
		}, want: codes.InvalidArgument, words: []string{`"mode"`, "fsGroup"}, wantOnDelete: "delete"},
		{name: "unknown key", req: func(_ *testing.T, _ *testEnv, id string) *csi.ControllerModifyVolumeRequest {
			return modifyReq(id, map[string]string{"XXX_FakeKey": "XXX_FakeValue"})
		}, want: codes.InvalidArgument, words: []string{"XXX_FakeKey", "onDelete"}, wantOnDelete: "delete"},
		{name: "not an ID", req: func(_ *testing.T, _ *testEnv, _ string) *csi.ControllerModifyVolumeRequest {
			return modifyReq("non-existing-volume-id", map[string]string{"onDelete": "archive"})
		}, want: codes.NotFound, wantOnDelete: "delete"},
		{name: "not on this node", req: func(_ *testing.T, _ *testEnv, _ string) *csi.ControllerModifyVolumeRequest {
			return modifyReq(unknownVolID, map[string]string{"onDelete": "archive"})
		}, want: codes.NotFound, words: []string{unknownVolID, testNode, "csi-resizer"}, wantOnDelete: "delete"},
		{name: "delete in flight", req: func(t *testing.T, e *testEnv, id string) *csi.ControllerModifyVolumeRequest {
			if _, err := e.srv.lock(lockVolumeID(id)); err != nil {
				t.Fatal(err)
			}
			return modifyReq(id, map[string]string{"onDelete": "archive"})
		}, want: codes.Aborted, wantOnDelete: "delete"},
		{name: "published on this node", req: func(t *testing.T, e *testEnv, id string) *csi.ControllerModifyVolumeRequest {
			if _, err := e.vols.Hold(id); err != nil {
				t.Fatal(err)
			}
			return modifyReq(id, map[string]string{"onDelete": "archive"})
		}, want: codes.Aborted, wantOnDelete: "delete"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			v := e.create(t, "pv-1", map[string]string{"onDelete": "delete"})
			before := tree(t, filepath.Join(e.root, "default"))
			req := tc.req(t, e, v.GetVolumeId())
			_, err := e.srv.ControllerModifyVolume(context.Background(), req)
			wantCode(t, err, tc.want)
			for _, w := range tc.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			got, gerr := e.vols.Get(v.GetVolumeId())
			if gerr != nil {
				t.Fatal(gerr)
			}
			if got.OnDelete != tc.wantOnDelete {
				t.Errorf("onDelete = %q, want %q", got.OnDelete, tc.wantOnDelete)
			}
			// The record is all that changes: the pool is as it was.
			if d := disktree.Diff(before, tree(t, filepath.Join(e.root, "default"))); len(d) > 0 {
				t.Errorf("pool changed: %v", d)
			}
			if tc.want == codes.OK {
				// A retry is OK and changes nothing more.
				_, err := e.srv.ControllerModifyVolume(context.Background(), req)
				wantCode(t, err, codes.OK)
			}
		})
	}
}

// A claim whose VolumeAttributesClass says archive gets a volume that is
// archived on delete, whatever the StorageClass says.
func TestCreateVolumeMutableParameters(t *testing.T) {
	e := newEnv(t)
	req := createReq("pv-1", map[string]string{"onDelete": "delete"})
	req.MutableParameters = map[string]string{"onDelete": "archive"}
	resp, err := e.srv.CreateVolume(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetVolume().GetVolumeId()
	if got := resp.GetVolume().GetVolumeContext()[paramOnDelete]; got != "archive" {
		t.Errorf("volume context onDelete = %q, want archive", got)
	}
	// A retry with the same request is the same volume.
	again, err := e.srv.CreateVolume(context.Background(), req)
	if err != nil || again.GetVolume().GetVolumeId() != id {
		t.Fatalf("retry = %v, %v; want volume %s", again, err, id)
	}
	if _, err := e.srv.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}
	archived, err := os.ReadDir(filepath.Join(e.root, "default", "archive"))
	if err != nil || len(archived) != 1 || !strings.HasPrefix(archived[0].Name(), "pv-1_") {
		t.Fatalf("archive holds %v (%v), want one pv-1_<time>", archived, err)
	}
}

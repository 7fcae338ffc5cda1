package hostile

import (
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

// TestMutableParameters sends VolumeAttributesClass parameters that cannot
// change in place, or are malformed, to CreateVolume and
// ControllerModifyVolume: each is InvalidArgument naming the key, and
// nothing on disk changes, the modified volume's policy included.
func TestMutableParameters(t *testing.T) {
	e := start(t)
	id, _ := e.create(t, "modify-target", nil)
	for _, tc := range []struct {
		name   string
		params map[string]string
		word   string
	}{
		{"pool", map[string]string{"pool": "extra"}, `"pool"`},
		{"pool traversal", map[string]string{"pool": "../x"}, `"pool"`},
		{"mode", map[string]string{"mode": "0700"}, `"mode"`},
		{"uid", map[string]string{"uid": "0"}, `"uid"`},
		{"gid", map[string]string{"gid": "0"}, `"gid"`},
		{"onDelete shred", map[string]string{"onDelete": "shred"}, `"onDelete"`},
		{"onDelete empty", map[string]string{"onDelete": ""}, `"onDelete"`},
		{"onDelete 2KB", map[string]string{"onDelete": long}, `"onDelete"`},
		{"OnDelete wrong case", map[string]string{"OnDelete": "archive"}, `"OnDelete"`},
		{"unknown", map[string]string{"iops": "100"}, `"iops"`},
		{"archive and pool", map[string]string{"onDelete": "archive", "pool": "extra"}, `"pool"`},
		{"pvc name traversal", map[string]string{"csi.storage.k8s.io/pvc/name": "../x"}, `"csi.storage.k8s.io/pvc/name"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snap(t)
			_, err := e.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "mutable", VolumeCapabilities: rwCaps(), MutableParameters: tc.params})
			wantStatus(t, err, codes.InvalidArgument, tc.word)
			_, err = e.ctrl.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: id, MutableParameters: tc.params})
			wantStatus(t, err, codes.InvalidArgument, tc.word)
			e.unchanged(t, before)
			v, err := e.ctrl.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
			if err != nil {
				t.Fatal(err)
			}
			if got := v.GetVolume().GetVolumeContext()["onDelete"]; got != "delete" {
				t.Errorf("volume %s has onDelete %q after a refused modify, want delete", id, got)
			}
		})
	}
}

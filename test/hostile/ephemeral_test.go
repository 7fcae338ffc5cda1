package hostile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

// TestInlineVolumes sends hostile inline volume requests (attributes, the
// kubelet's handle, targets) to the real driver with real mounts: each is
// refused naming what was wrong, and nothing on disk changes. Then a real
// inline volume is published, written through, unpublished, and leaves
// nothing.
func TestInlineVolumes(t *testing.T) {
	e := start(t)
	handle := "csi-" + strings.Repeat("5e", 32)
	inline := func(id, target string, attrs map[string]string) *csi.NodePublishVolumeRequest {
		vc := map[string]string{"csi.storage.k8s.io/ephemeral": "true", "csi.storage.k8s.io/pod.name": "p",
			"csi.storage.k8s.io/pod.namespace": "default", "csi.storage.k8s.io/pod.uid": "u"}
		for k, v := range attrs {
			vc[k] = v
		}
		return &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: rwCaps()[0], VolumeContext: vc}
	}
	target := filepath.Join(e.root, "pods/pod-1/volumes/kubernetes.io~csi/scratch/mount")
	for _, tc := range []struct {
		name string
		req  *csi.NodePublishVolumeRequest
		word string
	}{
		{"pool traversal", inline(handle, target, map[string]string{"pool": "../../x"}), `"../../x"`},
		{"pool NUL", inline(handle, target, map[string]string{"pool": "a\x00b"}), "pool"},
		{"size huge", inline(handle, target, map[string]string{"size": "9999999Ei"}), `"size"`},
		{"size hex", inline(handle, target, map[string]string{"size": "0x10"}), `"size"`},
		{"unknown attribute", inline(handle, target, map[string]string{"mode": "4777"}), `"mode"`},
		{"attribute NUL", inline(handle, target, map[string]string{"a\x00b": "1"}), "volumeAttributes"},
		{"handle traversal", inline("csi-../../etc", target, nil), "volume_id"},
		{"handle of a persistent volume's shape", inline("vol-0123456789abcdef0123456789abcdef", target, nil), "volume_id"},
		{"target in the data directory", inline(handle, e.data+"/fresh", nil), "target_path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snap(t)
			_, err := e.node.NodePublishVolume(ctx, tc.req)
			wantStatus(t, err, codes.InvalidArgument, tc.word)
			e.unchanged(t, before)
		})
	}

	before := e.snap(t)
	_, err := e.node.NodePublishVolume(ctx, inline(handle, target, map[string]string{"size": "8Mi"}))
	wantStatus(t, err, codes.OK)
	writeFile(t, filepath.Join(target, "scratch.txt"), "gone with the pod")
	_, err = e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: handle, TargetPath: target})
	wantStatus(t, err, codes.OK)
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("target %s still there after unpublish: %v", target, err)
	}
	// The pod's volumes directory the target was made in stays, as the
	// kubelet made it; everything else is as it was.
	e.unchanged(t, before, "pods")
}

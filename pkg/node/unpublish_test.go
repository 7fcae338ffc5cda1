package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func unpublishReq(id, target string) *csi.NodeUnpublishVolumeRequest {
	return &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}
}

// writeData puts a file into dir and returns its path.
func writeData(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "data")
	if err := os.WriteFile(p, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantFile(t *testing.T, p string) {
	t.Helper()
	if b, err := os.ReadFile(p); err != nil || string(b) != "keep me" {
		t.Fatalf("%s: %q, %v; want the data intact", p, b, err)
	}
}

func TestNodeUnpublishVolume(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, e *testEnv, id, source string) *csi.NodeUnpublishVolumeRequest
		want    codes.Code
		check   func(t *testing.T, e *testEnv, source string, req *csi.NodeUnpublishVolumeRequest)
	}{
		{
			name: "published",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeUnpublishVolumeRequest {
				writeData(t, source)
				e.publish(t, rwReq(id, e.target("a")))
				return unpublishReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodeUnpublishVolumeRequest) {
				if mps := e.mountsAt(req.GetTargetPath()); len(mps) != 0 {
					t.Errorf("still mounted: %v", mps)
				}
				wantNoPath(t, req.GetTargetPath())
				wantFile(t, filepath.Join(source, "data"))
			},
		},
		{
			name: "twice",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeUnpublishVolumeRequest {
				e.publish(t, rwReq(id, e.target("a")))
				if _, err := e.srv.NodeUnpublishVolume(context.Background(), unpublishReq(id, e.target("a"))); err != nil {
					t.Fatal(err)
				}
				return unpublishReq(id, e.target("a"))
			},
		},
		{
			name: "one of two targets",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeUnpublishVolumeRequest {
				e.publish(t, rwReq(id, e.target("a")))
				e.publish(t, rwReq(id, e.target("b")))
				return unpublishReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodeUnpublishVolumeRequest) {
				wantNoPath(t, e.target("a"))
				if mps := e.mountsAt(e.target("b")); len(mps) != 1 {
					t.Errorf("mounts at the other target: %v, want 1", mps)
				}
			},
		},
		{
			name: "target never existed",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeUnpublishVolumeRequest {
				return unpublishReq(id, e.target("a"))
			},
		},
		{
			name: "empty target that is not a mount point",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeUnpublishVolumeRequest {
				mkdir(t, e.target("a"))
				return unpublishReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodeUnpublishVolumeRequest) {
				wantNoPath(t, req.GetTargetPath())
			},
		},
		{
			name: "target with files that is not a mount point",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeUnpublishVolumeRequest {
				mkdir(t, e.target("a"))
				writeData(t, e.target("a"))
				return unpublishReq(id, e.target("a"))
			},
			want: codes.FailedPrecondition,
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodeUnpublishVolumeRequest) {
				wantFile(t, filepath.Join(req.GetTargetPath(), "data"))
			},
		},
		{
			// Only a forced delete gets here (DeleteVolume refuses a
			// published volume): what is mounted can no longer be shown
			// to be this volume's, so it stays.
			name: "volume no longer in the catalog",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeUnpublishVolumeRequest {
				e.publish(t, rwReq(id, e.target("a")))
				if err := e.vols.Delete(context.Background(), id); err != nil {
					t.Fatal(err)
				}
				return unpublishReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodeUnpublishVolumeRequest) {
				if mps := e.mountsAt(req.GetTargetPath()); len(mps) != 1 {
					t.Errorf("mounts at the target: %v, want the one left in place", mps)
				}
			},
		},
		{
			name: "well-formed ID this node does not know",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeUnpublishVolumeRequest {
				return unpublishReq(missingID, e.target("a"))
			},
		},
		{
			name: "not a dirvol ID",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeUnpublishVolumeRequest {
				mkdir(t, e.target("a"))
				return unpublishReq("pvc-1", e.target("a"))
			},
			want: codes.NotFound,
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodeUnpublishVolumeRequest) {
				if _, err := os.Stat(req.GetTargetPath()); err != nil {
					t.Errorf("target touched for a request that names no volume: %v", err)
				}
			},
		},
		{
			name: "no target",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeUnpublishVolumeRequest {
				return unpublishReq(id, "")
			},
			want: codes.InvalidArgument,
		},
		{
			name: "operation in flight",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeUnpublishVolumeRequest {
				e.publish(t, rwReq(id, e.target("a")))
				e.srv.targets.TryLock(publishKey{volumeID: id, targetPath: e.target("a")})
				return unpublishReq(id, e.target("a"))
			},
			want: codes.Aborted,
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodeUnpublishVolumeRequest) {
				if mps := e.mountsAt(req.GetTargetPath()); len(mps) != 1 {
					t.Errorf("mounts at target: %v, want the publish untouched", mps)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			v, source := e.create(t, "v1")
			req := tt.prepare(t, e, v.ID, source)
			_, err := e.srv.NodeUnpublishVolume(context.Background(), req)
			if status.Code(err) != tt.want {
				t.Fatalf("NodeUnpublishVolume() = %v, want code %s", err, tt.want)
			}
			if tt.check != nil {
				tt.check(t, e, source, req)
			}
		})
	}
}

// TestPublishConcurrently races publishes and unpublishes of the same and of
// different targets: each call either succeeds or is Aborted, and the mount
// table ends as if the calls had run one at a time.
func TestPublishConcurrently(t *testing.T) {
	e := newEnv(t)
	v, source := e.create(t, "v1")
	const workers, targets = 16, 4
	multi := func(i int) *csi.NodePublishVolumeRequest {
		return publishReq(v.ID, e.target(fmt.Sprint(i%targets)), mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER))
	}

	run := func(call func(i int) error) {
		var wg sync.WaitGroup
		for i := range workers {
			wg.Go(func() {
				if err := call(i); err != nil && status.Code(err) != codes.Aborted {
					t.Errorf("worker %d: %v", i, err)
				}
			})
		}
		wg.Wait()
	}
	ctx := context.Background()
	run(func(i int) error { _, err := e.srv.NodePublishVolume(ctx, multi(i)); return err })
	// Calls that were Aborted are retried, as the CO would.
	for i := range targets {
		e.publish(t, multi(i))
	}
	for i := range targets {
		wantMount(t, e, source, e.target(fmt.Sprint(i)), "bind")
	}

	run(func(i int) error {
		_, err := e.srv.NodeUnpublishVolume(ctx, unpublishReq(v.ID, e.target(fmt.Sprint(i%targets))))
		return err
	})
	for i := range targets {
		if _, err := e.srv.NodeUnpublishVolume(ctx, unpublishReq(v.ID, e.target(fmt.Sprint(i)))); err != nil {
			t.Fatal(err)
		}
		wantNoPath(t, e.target(fmt.Sprint(i)))
	}
	if mps, _ := e.mnt.List(); len(mps) != 0 {
		t.Errorf("mounts left: %v", mps)
	}
}

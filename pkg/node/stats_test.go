package node

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"
)

func statsReq(id, path string) *csi.NodeGetVolumeStatsRequest {
	return &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: path}
}

func TestNodeGetVolumeStats(t *testing.T) {
	tests := []struct {
		name string
		// size is the volume's capacity; 0 means the default 1Gi.
		size    int64
		prepare func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeStatsRequest
		want    codes.Code
		msg     string
	}{
		{
			name: "published target",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeStatsRequest {
				e.publish(t, rwReq(id, e.target("a")))
				return statsReq(id, e.target("a"))
			},
		},
		{
			name: "published target with a trailing slash",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeStatsRequest {
				e.publish(t, rwReq(id, e.target("a")))
				return statsReq(id, e.target("a")+"/")
			},
		},
		{
			name: "the volume directory itself",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeStatsRequest {
				return statsReq(id, source)
			},
		},
		{
			name: "more written than the capacity",
			size: 4096,
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeStatsRequest {
				if err := os.WriteFile(filepath.Join(source, "big"), make([]byte, 64<<10), 0o600); err != nil {
					t.Fatal(err)
				}
				return statsReq(id, source)
			},
		},
		{
			name: "a directory where the volume is not mounted",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeStatsRequest {
				e.publish(t, rwReq(id, e.target("a")))
				mkdir(t, e.target("b"))
				return statsReq(id, e.target("b"))
			},
			want: codes.NotFound, msg: "not published at",
		},
		{
			name: "after unpublish",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeStatsRequest {
				e.publish(t, rwReq(id, e.target("a")))
				if _, err := e.srv.NodeUnpublishVolume(context.Background(), unpublishReq(id, e.target("a"))); err != nil {
					t.Fatal(err)
				}
				return statsReq(id, e.target("a"))
			},
			want: codes.NotFound, msg: "not published at",
		},
		{
			name: "relative path",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeStatsRequest {
				return statsReq(id, "some/path")
			},
			want: codes.NotFound, msg: "not published at",
		},
		{
			name: "another volume's target",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeStatsRequest {
				other, _ := e.create(t, "v2")
				e.publish(t, rwReq(other.ID, e.target("a")))
				return statsReq(id, e.target("a"))
			},
			want: codes.NotFound, msg: "not published at",
		},
		{
			name: "directory missing",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeStatsRequest {
				e.publish(t, rwReq(id, e.target("a")))
				if err := os.RemoveAll(source); err != nil {
					t.Fatal(err)
				}
				return statsReq(id, e.target("a"))
			},
			want: codes.FailedPrecondition, msg: "is missing",
		},
		{
			name: "unknown volume",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeStatsRequest {
				return statsReq(missingID, source)
			},
			want: codes.NotFound,
		},
		{
			name: "not a dirvol ID",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeStatsRequest {
				return statsReq("id", source)
			},
			want: codes.NotFound, msg: "not a dirvol volume ID",
		},
		{
			name: "no path",
			prepare: func(t *testing.T, e *testEnv, id, source string) *csi.NodeGetVolumeStatsRequest {
				return statsReq(id, "")
			},
			want: codes.InvalidArgument,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			v, source := e.createSized(t, "v1", tt.size)
			writeData(t, source)
			req := tt.prepare(t, e, v.ID, source)
			resp, err := e.srv.NodeGetVolumeStats(context.Background(), req)
			checkCode(t, err, tt.want, tt.msg)
			if err != nil {
				return
			}
			checkUsage(t, e, v, resp)
		})
	}
}

// checkUsage compares a stats response with the volume's capacity and what
// the volume core measures.
func checkUsage(t *testing.T, e *testEnv, v volume.Volume, resp *csi.NodeGetVolumeStatsResponse) {
	t.Helper()
	u, err := e.vols.Usage(v)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := e.vols.FS(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetUsage()) != 2 {
		t.Fatalf("usage = %v, want bytes and inodes", resp.GetUsage())
	}
	b, i := resp.GetUsage()[0], resp.GetUsage()[1]
	if b.GetUnit() != csi.VolumeUsage_BYTES || b.GetTotal() != v.CapacityBytes || b.GetUsed() != u.Bytes ||
		b.GetAvailable() != max(0, v.CapacityBytes-u.Bytes) {
		t.Errorf("bytes = %v, want total %d used %d available max(0, total-used)", b, v.CapacityBytes, u.Bytes)
	}
	if u.Bytes == 0 || u.Inodes < 2 {
		t.Errorf("measured %+v, want the written file counted", u)
	}
	if i.GetUnit() != csi.VolumeUsage_INODES || i.GetUsed() != u.Inodes || i.GetTotal() != fs.TotalInodes ||
		i.GetAvailable() < 0 || i.GetAvailable() > fs.TotalInodes {
		t.Errorf("inodes = %v, want used %d of total %d", i, u.Inodes, fs.TotalInodes)
	}
	for _, x := range resp.GetUsage() {
		if x.GetAvailable() < 0 || x.GetTotal() < 0 || x.GetUsed() < 0 {
			t.Errorf("negative figure in %v", x)
		}
	}
}

// createSized makes a volume of size bytes (0: the default size).
func (e *testEnv) createSized(t *testing.T, name string, size int64) (volume.Volume, string) {
	t.Helper()
	if size == 0 {
		return e.create(t, name)
	}
	v, err := e.vols.Create(context.Background(), volume.CreateRequest{
		Name: name, RequiredBytes: size, OnDelete: volume.OnDeleteDelete,
		Permissions: pool.Permissions{Mode: 0o777, UID: -1, GID: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := e.vols.Path(v)
	return v, dir
}

func TestNodeGetVolumeStatsNotRecovered(t *testing.T) {
	root := t.TempDir()
	srv, err := New(Config{NodeID: testNode}, newManager(t, root, false), mount.NewFakeMounter(nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = srv.NodeGetVolumeStats(context.Background(), statsReq(missingID, root))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("NodeGetVolumeStats() = %v, want Unavailable", err)
	}
}

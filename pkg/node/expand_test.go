package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	mount "k8s.io/mount-utils"
)

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestNodeExpandVolume(t *testing.T) {
	tests := []struct {
		name  string
		block bool
		// prepare sets the scene and returns the request under test.
		prepare   func(t *testing.T, e *testEnv, v volume.Volume, file string) *csi.NodeExpandVolumeRequest
		want      codes.Code
		wantBytes int64
		check     func(t *testing.T, e *testEnv, v volume.Volume, file string)
	}{
		{
			name: "filesystem volume",
			prepare: func(t *testing.T, e *testEnv, v volume.Volume, file string) *csi.NodeExpandVolumeRequest {
				e.publish(t, rwReq(v.ID, e.target("a")))
				return expandReq(v.ID, e.target("a"), 2<<30, 0)
			},
			wantBytes: 2 << 30,
		},
		{
			name:  "published block volume: every device takes the new size",
			block: true,
			prepare: func(t *testing.T, e *testEnv, v volume.Volume, file string) *csi.NodeExpandVolumeRequest {
				e.publish(t, blockReq(v.ID, e.target("a")))
				e.publish(t, roBlockReq(v.ID, e.target("b")))
				return expandReq(v.ID, e.target("a"), 2*blockSize, 0)
			},
			wantBytes: 2 * blockSize,
			check: func(t *testing.T, e *testEnv, v volume.Volume, file string) {
				for _, d := range wantDevices(t, e, file, 2) {
					if size, _ := e.loops.Size(d.Path); size != 2*blockSize {
						t.Errorf("size of %s = %d, want %d", d.Path, size, 2*blockSize)
					}
				}
				resp, err := e.srv.NodeGetVolumeStats(context.Background(), statsReq(v.ID, e.target("a")))
				if err != nil || resp.GetUsage()[0].GetTotal() != 2*blockSize {
					t.Errorf("NodeGetVolumeStats() = %v, %v; want total %d", resp, err, 2*blockSize)
				}
			},
		},
		{
			name:  "block volume not published",
			block: true,
			prepare: func(t *testing.T, e *testEnv, v volume.Volume, file string) *csi.NodeExpandVolumeRequest {
				return expandReq(v.ID, e.target("a"), 3*blockSize, 4*blockSize)
			},
			wantBytes: 3 * blockSize,
			check: func(t *testing.T, e *testEnv, v volume.Volume, file string) {
				wantNoLeak(t, e)
			},
		},
		{
			name:  "already as large: nothing changes",
			block: true,
			prepare: func(t *testing.T, e *testEnv, v volume.Volume, file string) *csi.NodeExpandVolumeRequest {
				return expandReq(v.ID, e.target("a"), blockSize/2, 0)
			},
			wantBytes: blockSize,
		},
		{
			name:  "limit below the size",
			block: true,
			prepare: func(t *testing.T, e *testEnv, v volume.Volume, file string) *csi.NodeExpandVolumeRequest {
				return expandReq(v.ID, e.target("a"), blockSize/4, blockSize/2)
			},
			want: codes.OutOfRange,
		},
		{
			name: "more than the pool can promise",
			prepare: func(t *testing.T, e *testEnv, v volume.Volume, file string) *csi.NodeExpandVolumeRequest {
				return expandReq(v.ID, e.target("a"), 1<<60, 0)
			},
			want: codes.ResourceExhausted,
		},
		{
			name:  "no capacity range",
			block: true,
			prepare: func(t *testing.T, e *testEnv, v volume.Volume, file string) *csi.NodeExpandVolumeRequest {
				return &csi.NodeExpandVolumeRequest{VolumeId: v.ID, VolumePath: e.target("a")}
			},
			want: codes.InvalidArgument,
		},
		{
			name: "unknown volume without capacity range",
			prepare: func(t *testing.T, e *testEnv, v volume.Volume, file string) *csi.NodeExpandVolumeRequest {
				return &csi.NodeExpandVolumeRequest{VolumeId: missingID, VolumePath: "some/path"}
			},
			want: codes.NotFound,
		},
		{
			name: "unknown volume",
			prepare: func(t *testing.T, e *testEnv, v volume.Volume, file string) *csi.NodeExpandVolumeRequest {
				return expandReq(missingID, e.target("a"), 2<<30, 0)
			},
			want: codes.NotFound,
		},
		{
			name:  "mount capability for a block volume",
			block: true,
			prepare: func(t *testing.T, e *testEnv, v volume.Volume, file string) *csi.NodeExpandVolumeRequest {
				r := expandReq(v.ID, e.target("a"), 2*blockSize, 0)
				r.VolumeCapability = mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
				return r
			},
			want: codes.InvalidArgument,
		},
		{
			name: "block capability for a filesystem volume",
			prepare: func(t *testing.T, e *testEnv, v volume.Volume, file string) *csi.NodeExpandVolumeRequest {
				r := expandReq(v.ID, e.target("a"), 2<<30, 0)
				r.VolumeCapability = blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
				return r
			},
			want: codes.InvalidArgument,
		},
		{
			name:  "volume busy",
			block: true,
			prepare: func(t *testing.T, e *testEnv, v volume.Volume, file string) *csi.NodeExpandVolumeRequest {
				e.srv.volumes.TryLock(v.ID)
				return expandReq(v.ID, e.target("a"), 2*blockSize, 0)
			},
			want: codes.Aborted,
		},
		{
			name:  "device refresh fails, a retry finishes",
			block: true,
			prepare: func(t *testing.T, e *testEnv, v volume.Volume, file string) *csi.NodeExpandVolumeRequest {
				e.publish(t, blockReq(v.ID, e.target("a")))
				e.fakeLoops().refreshErr = errors.New("EIO")
				req := expandReq(v.ID, e.target("a"), 2*blockSize, 0)
				_, err := e.srv.NodeExpandVolume(context.Background(), req)
				checkCode(t, err, codes.Internal, "still has the old size")
				e.fakeLoops().refreshErr = nil
				return req
			},
			wantBytes: 2 * blockSize,
			check: func(t *testing.T, e *testEnv, v volume.Volume, file string) {
				d := wantDevices(t, e, file, 1)[0]
				if size, _ := e.loops.Size(d.Path); size != 2*blockSize {
					t.Errorf("size of %s = %d, want %d", d.Path, size, 2*blockSize)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			var (
				v    volume.Volume
				file string
			)
			if tt.block {
				v, file = e.createBlock(t, "v1", blockSize)
			} else {
				v, _ = e.create(t, "v1")
			}
			before := v.CapacityBytes
			req := tt.prepare(t, e, v, file)
			resp, err := e.srv.NodeExpandVolume(context.Background(), req)
			checkCode(t, err, tt.want, "")
			got, gerr := e.vols.Get(v.ID)
			if gerr != nil {
				t.Fatal(gerr)
			}
			if tt.want != codes.OK {
				if got.CapacityBytes != before {
					t.Errorf("record after a refused expansion: %d bytes, want %d", got.CapacityBytes, before)
				}
				if file != "" && fileSize(t, file) != before {
					t.Errorf("block file after a refused expansion: %d bytes, want %d", fileSize(t, file), before)
				}
				return
			}
			if resp.GetCapacityBytes() != tt.wantBytes || got.CapacityBytes != tt.wantBytes {
				t.Errorf("capacity_bytes = %d, record %d; want %d", resp.GetCapacityBytes(), got.CapacityBytes, tt.wantBytes)
			}
			if file != "" && fileSize(t, file) != tt.wantBytes {
				t.Errorf("block file is %d bytes, want %d", fileSize(t, file), tt.wantBytes)
			}
			if tt.check != nil {
				tt.check(t, e, v, file)
			}
		})
	}
}

func TestNodeExpandVolumeNotRecovered(t *testing.T) {
	root := t.TempDir()
	srv, err := newServer(Config{NodeID: testNode}, newManager(t, root, false), mount.NewFakeMounter(nil), kernelBinder{}, newFakeLoops(mount.NewFakeMounter(nil)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = srv.NodeExpandVolume(context.Background(), expandReq(missingID, filepath.Join(root, "t"), 1<<30, 0))
	checkCode(t, err, codes.Unavailable, "recovered")
}

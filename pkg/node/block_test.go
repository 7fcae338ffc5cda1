package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
)

const blockSize = 8 << 20

func blockCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func blockReq(id, target string) *csi.NodePublishVolumeRequest {
	return publishReq(id, target, blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER))
}

func roBlockReq(id, target string) *csi.NodePublishVolumeRequest {
	return publishReq(id, target, blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY))
}

// createBlock makes a block volume of size bytes and returns it with its
// file.
func (e *testEnv) createBlock(t *testing.T, name string, size int64) (volume.Volume, string) {
	t.Helper()
	v, err := e.vols.Create(context.Background(), volume.CreateRequest{
		Name:          name,
		RequiredBytes: size,
		Block:         true,
		OnDelete:      volume.OnDeleteDelete,
		Permissions:   pool.Permissions{Mode: 0o777, UID: -1, GID: -1},
	})
	if err != nil {
		t.Fatalf("Create(%s, block): %v", name, err)
	}
	file, err := e.vols.BlockPath(v)
	if err != nil {
		t.Fatal(err)
	}
	return v, file
}

func (e *testEnv) fakeLoops() *fakeLoops { return e.loops.(*fakeLoops) }

// devicesOf returns the loop devices attached to file.
func (e *testEnv) devicesOf(t *testing.T, file string) []loopdev.Device {
	t.Helper()
	devs, err := e.loops.Find(file)
	if err != nil {
		t.Fatal(err)
	}
	return devs
}

// wantDevices fails unless n devices are attached to file, and returns them.
func wantDevices(t *testing.T, e *testEnv, file string, n int) []loopdev.Device {
	t.Helper()
	devs := e.devicesOf(t, file)
	if len(devs) != n {
		t.Fatalf("%d loop devices attached to %s (%v), want %d", len(devs), file, devs, n)
	}
	return devs
}

// wantNoLeak fails when a loop device is attached to a file in the env's
// pool.
func wantNoLeak(t *testing.T, e *testEnv) {
	t.Helper()
	if left := e.fakeLoops().attached(e.root); len(left) > 0 {
		t.Fatalf("loop devices left attached: %v", left)
	}
}

// wantBlockTarget fails unless target is a regular file on which exactly
// one device is mounted, with opts.
func wantBlockTarget(t *testing.T, e *testEnv, dev, target string, opts ...string) {
	t.Helper()
	fi, err := os.Lstat(target)
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("target %s: %v, %v; want a regular file", target, fi, err)
	}
	wantMount(t, e, dev, target, opts...)
}

// wantDeviceAt fails unless exactly dev is mounted at target. (The fake
// mounter forgets the options of the mounts an unmount leaves.)
func wantDeviceAt(t *testing.T, e *testEnv, dev, target string) {
	t.Helper()
	if mps := e.mountsAt(target); len(mps) != 1 || mps[0].Device != dev {
		t.Fatalf("mounts at %s = %v, want one of %s", target, mps, dev)
	}
}

// danglingParent makes the parent of target a symbolic link to a missing
// directory: target looks absent, and cannot be created.
func danglingParent(t *testing.T, e *testEnv, target string) {
	t.Helper()
	mkdir(t, filepath.Dir(filepath.Dir(target)))
	if err := os.Symlink(filepath.Join(e.root, "missing", "dir"), filepath.Dir(target)); err != nil {
		t.Fatal(err)
	}
}

func TestNodePublishBlock(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest
		want    codes.Code
		check   func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest)
	}{
		{
			name: "read-write",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				return blockReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				d := wantDevices(t, e, file, 1)[0]
				if d.ReadOnly || !d.DirectIO {
					t.Errorf("device %+v, want read-write with direct I/O asked for", d)
				}
				wantBlockTarget(t, e, d.Path, req.GetTargetPath(), "bind")
			},
		},
		{
			name: "readonly field",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				r := blockReq(id, e.target("a"))
				r.Readonly = true
				return r
			},
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				d := wantDevices(t, e, file, 1)[0]
				if !d.ReadOnly {
					t.Errorf("device %+v, want read-only", d)
				}
				wantBlockTarget(t, e, d.Path, req.GetTargetPath(), "bind", "ro")
			},
		},
		{
			name: "reader-only access mode",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				return roBlockReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				d := wantDevices(t, e, file, 1)[0]
				if !d.ReadOnly {
					t.Errorf("device %+v, want read-only", d)
				}
				wantBlockTarget(t, e, d.Path, req.GetTargetPath(), "bind", "ro")
			},
		},
		{
			name: "two targets share one device",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				return publishReq(id, e.target("b"), blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER))
			},
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				d := wantDevices(t, e, file, 1)[0]
				wantBlockTarget(t, e, d.Path, e.target("a"), "bind")
				wantBlockTarget(t, e, d.Path, e.target("b"), "bind")
				if a, _, _ := e.fakeLoops().counts(); a != 1 {
					t.Errorf("%d attaches, want 1", a)
				}
			},
		},
		{
			name: "read-only target next to a read-write one gets a read-only device",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				return roBlockReq(id, e.target("b"))
			},
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				devs := wantDevices(t, e, file, 2)
				rw, ro := devs[0], devs[1]
				if rw.ReadOnly || !ro.ReadOnly {
					t.Fatalf("devices %+v, want one read-write and one read-only", devs)
				}
				wantBlockTarget(t, e, rw.Path, e.target("a"), "bind")
				wantBlockTarget(t, e, ro.Path, e.target("b"), "bind", "ro")
			},
		},
		{
			name: "again with the same request",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				return blockReq(id, e.target("a")+"/")
			},
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				d := wantDevices(t, e, file, 1)[0]
				wantBlockTarget(t, e, d.Path, e.target("a"), "bind")
			},
		},
		{
			name: "again read-only over read-write",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				r := blockReq(id, e.target("a"))
				r.Readonly = true
				return r
			},
			want: codes.AlreadyExists,
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				d := wantDevices(t, e, file, 1)[0]
				wantBlockTarget(t, e, d.Path, e.target("a"), "bind")
			},
		},
		{
			name: "reuses a device attached earlier",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				if _, err := e.loops.Attach(file, loopdev.Options{}); err != nil {
					t.Fatal(err)
				}
				return blockReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				d := wantDevices(t, e, file, 1)[0]
				wantBlockTarget(t, e, d.Path, e.target("a"), "bind")
			},
		},
		{
			name: "a device being detached is not reused",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				d, err := e.loops.Attach(file, loopdev.Options{})
				if err != nil {
					t.Fatal(err)
				}
				e.fakeLoops().set(d.Path, func(d *loopdev.Device) { d.Autoclear = true })
				return blockReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				d := wantDevices(t, e, file, 2)[1]
				wantBlockTarget(t, e, d.Path, e.target("a"), "bind")
			},
		},
		{
			name: "existing empty target file",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				mkdir(t, filepath.Dir(e.target("a")))
				if err := os.WriteFile(e.target("a"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return blockReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				d := wantDevices(t, e, file, 1)[0]
				wantBlockTarget(t, e, d.Path, e.target("a"), "bind")
			},
		},
		{
			name: "single writer while published elsewhere",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				return publishReq(id, e.target("b"), blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER))
			},
			want: codes.FailedPrecondition,
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				wantDevices(t, e, file, 1)
				wantNoPath(t, e.target("b"))
			},
		},
		{
			name: "mount access type for a block volume",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				return rwReq(id, e.target("a"))
			},
			want: codes.InvalidArgument,
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				wantNoLeak(t, e)
				wantNoPath(t, e.target("a"))
			},
		},
		{
			name: "target is a directory",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				mkdir(t, e.target("a"))
				return blockReq(id, e.target("a"))
			},
			want: codes.InvalidArgument,
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				wantNoLeak(t, e)
				if mps := e.mountsAt(e.target("a")); len(mps) != 0 {
					t.Errorf("mounted: %v", mps)
				}
			},
		},
		{
			name: "symbolic link in the target's parent",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				danglingParent(t, e, e.target("a"))
				return blockReq(id, e.target("a"))
			},
			want: codes.InvalidArgument,
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				wantNoLeak(t, e)
				if a, _, _ := e.fakeLoops().counts(); a != 0 {
					t.Errorf("%d attaches, want none", a)
				}
				if _, err := os.Stat(filepath.Join(e.root, "missing")); err == nil {
					t.Error("the link was followed: its destination was created")
				}
			},
		},
		{
			name: "a device attached earlier stays when the target cannot be created",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				mkdir(t, e.target("b"))
				return blockReq(id, e.target("b"))
			},
			want: codes.InvalidArgument,
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				d := wantDevices(t, e, file, 1)[0]
				wantBlockTarget(t, e, d.Path, e.target("a"), "bind")
			},
		},
		{
			name: "attach fails",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				e.fakeLoops().attachErr = errors.New("no free loop device")
				return blockReq(id, e.target("a"))
			},
			want: codes.Internal,
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				wantNoLeak(t, e)
				wantNoPath(t, e.target("a"))
			},
		},
		{
			name: "another volume at the target",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				other, _ := e.createBlock(t, "v2", blockSize)
				e.publish(t, blockReq(other.ID, e.target("a")))
				return blockReq(id, e.target("a"))
			},
			want: codes.FailedPrecondition,
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				wantDevices(t, e, file, 0)
			},
		},
		{
			name: "something else mounted at the target",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				mkdir(t, filepath.Dir(e.target("a")))
				if err := os.WriteFile(e.target("a"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := e.mnt.Mount("/dev/sdb", e.target("a"), "", []string{"bind"}); err != nil {
					t.Fatal(err)
				}
				return blockReq(id, e.target("a"))
			},
			want: codes.FailedPrecondition,
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				wantNoLeak(t, e)
			},
		},
		{
			name: "volume busy",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodePublishVolumeRequest {
				e.srv.volumes.TryLock(id)
				return blockReq(id, e.target("a"))
			},
			want: codes.Aborted,
			check: func(t *testing.T, e *testEnv, file string, req *csi.NodePublishVolumeRequest) {
				wantNoLeak(t, e)
				wantNoPath(t, e.target("a"))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			v, file := e.createBlock(t, "v1", blockSize)
			req := tt.prepare(t, e, v.ID, file)
			_, err := e.srv.NodePublishVolume(context.Background(), req)
			checkCode(t, err, tt.want, "")
			if tt.check != nil {
				tt.check(t, e, file, req)
			}
		})
	}
}

func TestNodePublishBlockAccessTypeMismatch(t *testing.T) {
	e := newEnv(t)
	fsVol, _ := e.create(t, "fs")
	blockVol, _ := e.createBlock(t, "blk", blockSize)
	_, err := e.srv.NodePublishVolume(context.Background(), blockReq(fsVol.ID, e.target("a")))
	checkCode(t, err, codes.InvalidArgument, "filesystem volume")
	_, err = e.srv.NodePublishVolume(context.Background(), rwReq(blockVol.ID, e.target("b")))
	checkCode(t, err, codes.InvalidArgument, "block volume")
	wantNoPath(t, e.target("a"))
	wantNoPath(t, e.target("b"))
	wantNoLeak(t, e)
}

func TestNodePublishBlockMountFails(t *testing.T) {
	e := newEnv(t)
	failingBind(e)
	v, _ := e.createBlock(t, "v1", blockSize)
	req := blockReq(v.ID, e.target("a"))
	req.Readonly = true
	_, err := e.srv.NodePublishVolume(context.Background(), req)
	checkCode(t, err, codes.Internal, "permission denied")
	if mps := e.mountsAt(e.target("a")); len(mps) != 0 {
		t.Errorf("mounts left at the target: %v", mps)
	}
	wantNoPath(t, e.target("a"))
	wantNoLeak(t, e)
	if a, d, _ := e.fakeLoops().counts(); a != 1 || d != 1 {
		t.Errorf("%d attaches and %d detaches, want 1 and 1", a, d)
	}
}

func TestNodeUnpublishBlock(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, e *testEnv, id, file string) *csi.NodeUnpublishVolumeRequest
		want    codes.Code
		check   func(t *testing.T, e *testEnv, file string)
	}{
		{
			name: "published",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodeUnpublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				return unpublishReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, file string) {
				wantNoPath(t, e.target("a"))
				wantNoLeak(t, e)
				if _, err := os.Stat(file); err != nil {
					t.Errorf("block file: %v", err)
				}
			},
		},
		{
			name: "twice",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodeUnpublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				if _, err := e.srv.NodeUnpublishVolume(context.Background(), unpublishReq(id, e.target("a"))); err != nil {
					t.Fatal(err)
				}
				return unpublishReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, file string) { wantNoLeak(t, e) },
		},
		{
			name: "one of two targets keeps the device",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodeUnpublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				e.publish(t, blockReq(id, e.target("b")))
				return unpublishReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, file string) {
				wantNoPath(t, e.target("a"))
				d := wantDevices(t, e, file, 1)[0]
				wantDeviceAt(t, e, d.Path, e.target("b"))
			},
		},
		{
			name: "the read-only target of two releases only the read-only device",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodeUnpublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				e.publish(t, roBlockReq(id, e.target("b")))
				return unpublishReq(id, e.target("b"))
			},
			check: func(t *testing.T, e *testEnv, file string) {
				d := wantDevices(t, e, file, 1)[0]
				if d.ReadOnly {
					t.Errorf("kept %+v, want the read-write device", d)
				}
				wantDeviceAt(t, e, d.Path, e.target("a"))
			},
		},
		{
			name: "device left attached by an interrupted unpublish",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodeUnpublishVolumeRequest {
				if _, err := e.loops.Attach(file, loopdev.Options{}); err != nil {
					t.Fatal(err)
				}
				return unpublishReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, file string) { wantNoLeak(t, e) },
		},
		{
			name: "device bind-mounted elsewhere is kept",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodeUnpublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				d := wantDevices(t, e, file, 1)[0]
				// kubelet's own bind mount of the published device.
				if err := e.mnt.Mount(d.Path, filepath.Join(e.pods, "kubelet-map"), "", []string{"bind"}); err != nil {
					t.Fatal(err)
				}
				return unpublishReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, file string) {
				wantNoPath(t, e.target("a"))
				wantDevices(t, e, file, 1)
			},
		},
		{
			// Only a forced delete gets here (DeleteVolume refuses a
			// published volume): what is mounted can no longer be shown
			// to be this volume's, so it stays.
			name: "volume no longer in the catalog",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodeUnpublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				if err := e.vols.Delete(context.Background(), id); err != nil {
					t.Fatal(err)
				}
				return unpublishReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, file string) {
				if mps := e.mountsAt(e.target("a")); len(mps) != 1 {
					t.Errorf("mounts at the target: %v, want the one left in place", mps)
				}
			},
		},
		{
			name: "detach fails, then a retry detaches",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodeUnpublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				e.fakeLoops().detachErr = errors.New("EIO")
				_, err := e.srv.NodeUnpublishVolume(context.Background(), unpublishReq(id, e.target("a")))
				checkCode(t, err, codes.Internal, "EIO")
				wantNoPath(t, e.target("a"))
				wantDevices(t, e, file, 1)
				e.fakeLoops().detachErr = nil
				return unpublishReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, file string) { wantNoLeak(t, e) },
		},
		{
			name: "device in use by a filesystem",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodeUnpublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				e.fakeLoops().detachErr = loopdev.ErrBusy
				return unpublishReq(id, e.target("a"))
			},
			want: codes.FailedPrecondition,
			check: func(t *testing.T, e *testEnv, file string) {
				wantNoPath(t, e.target("a"))
				wantDevices(t, e, file, 1)
			},
		},
		{
			name: "a detach the kernel defers is success",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodeUnpublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				e.fakeLoops().detachErr = loopdev.ErrDeferred
				return unpublishReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, file string) { wantNoPath(t, e.target("a")) },
		},
		{
			name: "an empty directory where a file belongs is not removed",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodeUnpublishVolumeRequest {
				mkdir(t, e.target("a"))
				return unpublishReq(id, e.target("a"))
			},
			want: codes.FailedPrecondition,
			check: func(t *testing.T, e *testEnv, file string) {
				if fi, err := os.Stat(e.target("a")); err != nil || !fi.IsDir() {
					t.Errorf("target: %v, %v; want the directory left", fi, err)
				}
			},
		},
		{
			name: "a file holding data is not removed",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodeUnpublishVolumeRequest {
				mkdir(t, filepath.Dir(e.target("a")))
				if err := os.WriteFile(e.target("a"), []byte("keep me"), 0o600); err != nil {
					t.Fatal(err)
				}
				return unpublishReq(id, e.target("a"))
			},
			want:  codes.FailedPrecondition,
			check: func(t *testing.T, e *testEnv, file string) { wantFile(t, e.target("a")) },
		},
		{
			name: "volume busy",
			prepare: func(t *testing.T, e *testEnv, id, file string) *csi.NodeUnpublishVolumeRequest {
				e.publish(t, blockReq(id, e.target("a")))
				e.srv.volumes.TryLock(id)
				return unpublishReq(id, e.target("a"))
			},
			want: codes.Aborted,
			check: func(t *testing.T, e *testEnv, file string) {
				d := wantDevices(t, e, file, 1)[0]
				wantBlockTarget(t, e, d.Path, e.target("a"), "bind")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			v, file := e.createBlock(t, "v1", blockSize)
			req := tt.prepare(t, e, v.ID, file)
			_, err := e.srv.NodeUnpublishVolume(context.Background(), req)
			checkCode(t, err, tt.want, "")
			if tt.check != nil {
				tt.check(t, e, file)
			}
		})
	}
}

// TestBlockRoundTrips publishes and unpublishes in many orders and checks
// that no device is left and none is attached twice.
func TestBlockRoundTrips(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	v, file := e.createBlock(t, "v1", blockSize)
	targets := []string{e.target("a"), e.target("b"), e.target("c")}
	for round := range 3 {
		for i, tg := range targets {
			req := blockReq(v.ID, tg)
			req.Readonly = i == 2
			e.publish(t, req)
			e.publish(t, req)
		}
		wantDevices(t, e, file, 2)
		order := slices.Clone(targets)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, tg := range order {
			for range 2 {
				if _, err := e.srv.NodeUnpublishVolume(ctx, unpublishReq(v.ID, tg)); err != nil {
					t.Fatalf("round %d: NodeUnpublishVolume(%s): %v", round, tg, err)
				}
			}
		}
		wantNoLeak(t, e)
	}
	if a, d, _ := e.fakeLoops().counts(); a != 6 || d != 6 {
		t.Errorf("%d attaches and %d detaches, want 6 each (two devices per round)", a, d)
	}
}

func TestNodeGetVolumeStatsBlock(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	v, _ := e.createBlock(t, "v1", blockSize)
	other, _ := e.createBlock(t, "v2", blockSize)
	e.publish(t, blockReq(v.ID, e.target("a")))
	e.publish(t, blockReq(other.ID, e.target("b")))

	resp, err := e.srv.NodeGetVolumeStats(ctx, statsReq(v.ID, e.target("a")))
	if err != nil {
		t.Fatal(err)
	}
	u := resp.GetUsage()
	if len(u) != 1 || u[0].GetUnit() != csi.VolumeUsage_BYTES || u[0].GetTotal() != blockSize || u[0].GetUsed() != 0 {
		t.Fatalf("usage = %v, want only BYTES with total %d", u, blockSize)
	}
	for _, path := range []string{e.target("b"), e.target("none"), "relative", filepath.Dir(e.target("a"))} {
		_, err := e.srv.NodeGetVolumeStats(ctx, statsReq(v.ID, path))
		checkCode(t, err, codes.NotFound, "not published at")
	}
}

func TestNodeGetVolumeHealthBlock(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	v, _ := e.createBlock(t, "v1", blockSize)
	e.publish(t, blockReq(v.ID, e.target("a")))
	h, err := e.srv.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: v.ID, VolumePublishPath: e.target("a")})
	if err != nil || len(h.GetVolumeHealth().GetHealthStatuses()) != 0 {
		t.Fatalf("NodeGetVolumeHealth(published) = %v, %v; want healthy", h, err)
	}
	h, err = e.srv.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: v.ID, VolumePublishPath: e.target("b")})
	if err != nil {
		t.Fatal(err)
	}
	if st := h.GetVolumeHealth().GetHealthStatuses(); len(st) != 1 || st[0].GetReason() != reasonNotMounted {
		t.Fatalf("NodeGetVolumeHealth(elsewhere) = %v, want %s", st, reasonNotMounted)
	}
}

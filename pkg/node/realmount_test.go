//go:build linux

package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	mount "k8s.io/mount-utils"
)

// TestRealBindMounts runs the publish lifecycle against the kernel's mount
// table: what the fake mounter cannot show is that GetMountRefs really finds
// bind mounts of a volume directory, that "ro" and the flags reach the
// kernel, and that unpublish leaves the data alone.
func TestRealBindMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("real bind mounts need root")
	}
	mounter := mount.New("")
	skipWithoutBindMounts(t, mounter)
	e := newEnvWith(t, mounter)
	ctx := context.Background()
	a, b, c, d := e.target("a"), e.target("b"), e.target("c"), e.target("d")
	// Registered after the temp dir, so it runs first: nothing under the
	// temp dir is removed while still mounted.
	t.Cleanup(func() {
		for _, p := range []string{a, b, c, d} {
			for {
				if mounted, err := mounter.IsMountPoint(p); err != nil || !mounted {
					break
				}
				if err := mounter.Unmount(p); err != nil {
					t.Errorf("cleanup: %v", err)
					break
				}
			}
		}
	})
	v1, src1 := e.create(t, "v1")
	v2, _ := e.create(t, "v2")

	// Publish read-write: what is written through the target is in the volume.
	e.publish(t, rwReq(v1.ID, a))
	if err := os.WriteFile(filepath.Join(a, "data"), []byte("keep me"), 0o600); err != nil {
		t.Fatalf("write through target: %v", err)
	}
	wantFile(t, filepath.Join(src1, "data"))
	if refs, err := mounter.GetMountRefs(src1); err != nil || !slices.Contains(refs, a) {
		t.Fatalf("GetMountRefs(%s) = %v, %v; want it to list %s", src1, refs, err, a)
	}

	// Again: success, and still one mount.
	e.publish(t, rwReq(v1.ID, a))
	if n := realMountsAt(t, mounter, a); len(n) != 1 {
		t.Fatalf("mounts at %s after a repeated publish: %v, want 1", a, n)
	}

	publishCode := func(req *csi.NodePublishVolumeRequest, want codes.Code) {
		t.Helper()
		_, err := e.srv.NodePublishVolume(ctx, req)
		checkCode(t, err, want, "")
	}
	publishCode(rwReq(v2.ID, a), codes.FailedPrecondition)
	publishCode(publishReq(v1.ID, b, mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)), codes.FailedPrecondition)

	// Read-only with flags: the kernel refuses writes, the source stays writable.
	ro := publishReq(v1.ID, c, mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER, "nosuid", "noexec"))
	ro.Readonly = true
	e.publish(t, ro)
	err := os.WriteFile(filepath.Join(c, "nope"), nil, 0o600)
	if !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write through read-only target: %v, want EROFS", err)
	}
	if mps := realMountsAt(t, mounter, c); len(mps) != 1 || !hasAll(mps[0].Opts, "ro", "nosuid", "noexec") {
		t.Fatalf("mount at %s = %v, want one with ro,nosuid,noexec", c, mps)
	}
	if err := os.WriteFile(filepath.Join(src1, "more"), nil, 0o600); err != nil {
		t.Fatalf("source became read-only: %v", err)
	}
	publishCode(publishReq(v1.ID, c, mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER)), codes.AlreadyExists)

	// Stats and health see the real mounts.
	for path, want := range map[string]codes.Code{a: codes.OK, c: codes.OK, src1: codes.OK, b: codes.NotFound} {
		_, err := e.srv.NodeGetVolumeStats(ctx, statsReq(v1.ID, path))
		checkCode(t, err, want, "")
	}
	h, err := e.srv.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: v1.ID, VolumePublishPath: a})
	if err != nil || len(h.GetVolumeHealth().GetHealthStatuses()) != 0 {
		t.Fatalf("NodeGetVolumeHealth() = %v, %v; want healthy", h, err)
	}

	// Unpublish removes the target and leaves the data, and can be repeated.
	for _, p := range []string{a, a, c} {
		if _, err := e.srv.NodeUnpublishVolume(ctx, unpublishReq(v1.ID, p)); err != nil {
			t.Fatalf("NodeUnpublishVolume(%s): %v", p, err)
		}
		wantNoPath(t, p)
	}
	wantFile(t, filepath.Join(src1, "data"))

	// A target holding files that is not a mount point is never emptied.
	mkdir(t, d)
	writeData(t, d)
	_, err = e.srv.NodeUnpublishVolume(ctx, unpublishReq(v1.ID, d))
	checkCode(t, err, codes.FailedPrecondition, "left in place")
	wantFile(t, filepath.Join(d, "data"))
}

// skipWithoutBindMounts skips the test where root may not mount (a
// container without CAP_SYS_ADMIN).
func skipWithoutBindMounts(t *testing.T, mounter mount.Interface) {
	t.Helper()
	src, dst := t.TempDir(), t.TempDir()
	if err := mounter.Mount(src, dst, "", []string{"bind"}); err != nil {
		t.Skipf("cannot bind-mount here: %v", err)
	}
	if err := mounter.Unmount(dst); err != nil {
		t.Fatal(err)
	}
}

func realMountsAt(t *testing.T, mounter mount.Interface, path string) []mount.MountPoint {
	t.Helper()
	mps, err := mounter.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []mount.MountPoint
	for _, mp := range mps {
		if mp.Path == path {
			out = append(out, mp)
		}
	}
	return out
}

func hasAll(opts []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(opts, w) {
			return false
		}
	}
	return true
}

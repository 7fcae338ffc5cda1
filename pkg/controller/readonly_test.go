package controller

import (
	"context"
	"os/exec"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/testfs"
	"github.com/dirvol/dirvol/pkg/pool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func remount(t *testing.T, mnt, mode string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+mode, mnt).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v: %s", mnt, mode, err, out)
	}
}

// A CreateVolume or CreateSnapshot that fails because the pool's
// filesystem is read-only for a while does not hold its name: retries say
// what is wrong (not Aborted) while it lasts, and succeed once the
// filesystem is writable again, without a restart.
func TestCreateAfterPoolWasReadOnly(t *testing.T) {
	mnt := testfs.Mount(t, testfs.Ext4, 0)
	e := newEnvAt(t, mnt, t.TempDir(), func(p pool.Pool) pool.Pool { return p })
	ctx := context.Background()
	src := e.create(t, "pv-src", nil).GetVolumeId()

	remount(t, mnt, "ro")
	t.Cleanup(func() { _ = exec.Command("mount", "-o", "remount,rw", mnt).Run() })
	for range 3 {
		_, err := e.srv.CreateVolume(ctx, createReq("pv-1", nil))
		if code := status.Code(err); code == codes.OK || code == codes.Aborted {
			t.Fatalf("CreateVolume on a read-only pool = %v, want an error that is not Aborted", err)
		}
		_, err = e.srv.CreateSnapshot(ctx, snapReq("snap-1", src))
		if code := status.Code(err); code == codes.OK || code == codes.Aborted {
			t.Fatalf("CreateSnapshot on a read-only pool = %v, want an error that is not Aborted", err)
		}
	}

	remount(t, mnt, "rw")
	vol := e.create(t, "pv-1", nil)
	snap := e.snapshot(t, "snap-1", src)
	list, err := e.srv.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil || len(list.GetEntries()) != 2 {
		t.Errorf("ListVolumes = %v, %v; want pv-src and pv-1", list, err)
	}
	if again := e.create(t, "pv-1", nil); again.GetVolumeId() != vol.GetVolumeId() {
		t.Errorf("retried CreateVolume gave %s, want %s", again.GetVolumeId(), vol.GetVolumeId())
	}
	if again := e.snapshot(t, "snap-1", src); again.GetSnapshotId() != snap.GetSnapshotId() {
		t.Errorf("retried CreateSnapshot gave %s, want %s", again.GetSnapshotId(), snap.GetSnapshotId())
	}
}

//go:build linux

package node

import (
	"context"
	"os"
	"testing"

	mount "k8s.io/mount-utils"
)

// BenchmarkRealPublish publishes and unpublishes one volume read-only with
// real mounts: through the service (open the target without following
// links, open_tree + mount_setattr + move_mount, unmount through the opened
// target), and, for comparison, the mount-utils bind mount that runs the
// mount binary twice (bind, then remount with the flags) and umount.
func BenchmarkRealPublish(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("real bind mounts need root")
	}
	mounter := mount.New("")
	b.Run("service", func(b *testing.B) {
		e := newEnvWith(b, mounter)
		defer releaseUnder(e.root)
		v, _ := e.create(b, "v1")
		req := rwReq(v.ID, e.target("a"))
		req.Readonly = true
		ctx := context.Background()
		for b.Loop() {
			if _, err := e.srv.NodePublishVolume(ctx, req); err != nil {
				b.Fatal(err)
			}
			if _, err := e.srv.NodeUnpublishVolume(ctx, unpublishReq(v.ID, req.GetTargetPath())); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mount-utils", func(b *testing.B) {
		src, dst := b.TempDir(), b.TempDir()
		defer releaseUnder(dst)
		for b.Loop() {
			if err := mounter.Mount(src, dst, "", []string{"bind", "ro"}); err != nil {
				b.Fatal(err)
			}
			if err := mounter.Unmount(dst); err != nil {
				b.Fatal(err)
			}
		}
	})
}

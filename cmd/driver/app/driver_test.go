package app

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dirvol/dirvol/pkg/pool"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
)

// A pool named default given as an image replaces the pool rooted at the
// data dir: New creates, formats and mounts the image under
// <data-dir>/pools/default, and the pool is btrfs.
func TestNewWithImageDefaultPool(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("an image pool needs root to loop-mount")
	}
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		t.Skipf("mkfs.btrfs not installed: %v", err)
	}
	cfg := validConfig(t)
	mnt := filepath.Join(cfg.DataDir, "pools", "default")
	t.Cleanup(func() {
		for range 3 {
			if exec.Command("mountpoint", "-q", mnt).Run() != nil {
				return
			}
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", mnt, err, out)
				return
			}
		}
	})
	cfg.Pools = pool.Specs{{Name: "default", Image: filepath.Join(cfg.DataDir, "images", "default.img"), Size: 256 << 20}}
	ctx := context.Background()
	d, err := New(ctx, cfg, mount.New(""))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer d.lock.Close()
	if roots := d.vols.Roots(); !slices.Equal(roots, []string{mnt}) {
		t.Errorf("pool roots %v, want [%s]", roots, mnt)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil || st.Type != unix.BTRFS_SUPER_MAGIC {
		t.Fatalf("statfs %s: type %#x, %v; want btrfs", mnt, st.Type, err)
	}
	if err := d.vols.Recover(ctx); err != nil {
		t.Errorf("Recover: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "volumes")); !os.IsNotExist(err) {
		t.Errorf("the data dir got a pool layout too: %v", err)
	}
}

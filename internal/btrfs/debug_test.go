package btrfs

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/dirvol/dirvol/internal/testfs"
)

func TestDebugDelete(t *testing.T) {
	mnt := testfs.Mount(t, testfs.Btrfs, 256<<20)
	root := openDir(t, mnt)
	EnableQuota(root)
	CreateSubvolume(root, "vol")
	vol := filepath.Join(mnt, "vol")
	id := mustID(t, vol)
	CreateSubvolume(openDir(t, vol), "nested")
	out, _ := exec.Command("btrfs", "subvolume", "list", mnt).CombinedOutput()
	t.Logf("%s", out)
	kids, err := ChildSubvolumes(root, id)
	t.Log(kids, err)
	deleted, err := DeleteSubvolume(root, id)
	t.Log(deleted, err)
	Commit(root)
	out, _ = exec.Command("btrfs", "subvolume", "list", "-d", mnt).CombinedOutput()
	t.Logf("%s", out)
	for _, d := range deleted {
		ok, err := SubvolumeExists(root, d)
		t.Log(d, ok, err)
	}
	out, _ = exec.Command("btrfs", "subvolume", "sync", mnt).CombinedOutput()
	t.Logf("%s", out)
	for _, d := range deleted {
		ok, err := SubvolumeExists(root, d)
		t.Log(d, ok, err)
	}
}

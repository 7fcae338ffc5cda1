package testfs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMount(t *testing.T) {
	magic := map[Kind]int64{Btrfs: unix.BTRFS_SUPER_MAGIC, XFS: unix.XFS_SUPER_MAGIC, Ext4: unix.EXT4_SUPER_MAGIC}
	for _, k := range []Kind{Btrfs, XFS, Ext4} {
		t.Run(string(k), func(t *testing.T) {
			mnt := Mount(t, k, 0)
			var st unix.Statfs_t
			if err := unix.Statfs(mnt, &st); err != nil {
				t.Fatal(err)
			}
			if st.Type != magic[k] {
				t.Errorf("%s is mounted with filesystem magic %#x, want %#x", mnt, st.Type, magic[k])
			}
			if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		})
	}
}

package copytree

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/dirvol/dirvol/internal/testfs"

	"golang.org/x/sys/unix"
)

// posixACL encodes a POSIX access ACL as the kernel stores it in
// system.posix_acl_access: owner rwx, user 1000 r-x, group r-x, mask rwx,
// other r--.
func posixACL() []byte {
	type ent struct {
		tag, perm uint16
		id        uint32
	}
	ents := []ent{{0x01, 7, ^uint32(0)}, {0x02, 5, 1000}, {0x04, 5, ^uint32(0)}, {0x10, 7, ^uint32(0)}, {0x20, 4, ^uint32(0)}}
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range ents {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

// A destination filesystem without extended attributes (ramfs) gets the
// rest of the tree; what it cannot hold is counted, not silently dropped.
func TestCopyCountsUnsupportedXattrs(t *testing.T) {
	mnt := testfs.Mount(t, testfs.Ext4, fsSize)
	src := filepath.Join(mnt, "src")
	write(t, filepath.Join(src, "f"), "data", 0o644)
	must(t, unix.Setxattr(filepath.Join(src, "f"), "user.a", []byte("1"), 0))
	must(t, unix.Setxattr(filepath.Join(src, "f"), "user.b", []byte("2"), 0))
	must(t, unix.Setxattr(src, "trusted.c", []byte("3"), 0))
	ram := t.TempDir()
	if err := unix.Mount("none", ram, "ramfs", 0, ""); err != nil {
		t.Skipf("cannot mount ramfs: %v", err)
	}
	t.Cleanup(func() { must(t, unix.Unmount(ram, 0)) })
	st, err := Copy(src, filepath.Join(ram, "dst"))
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if st.XattrsSkipped != 3 || st.Files != 1 {
		t.Errorf("Stats = %+v, want 1 file and 3 skipped extended attributes", st)
	}
	if data, err := os.ReadFile(filepath.Join(ram, "dst", "f")); err != nil || string(data) != "data" {
		t.Errorf("copied file: %q, %v", data, err)
	}
}

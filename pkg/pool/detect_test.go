package pool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/internal/btrfs"
	"github.com/dirvol/dirvol/internal/testfs"
)

func TestOpenDetectsBackend(t *testing.T) {
	btrfsMnt := testfs.Mount(t, testfs.Btrfs, 0)
	ext4Mnt := testfs.Mount(t, testfs.Ext4, 0)
	tests := []struct {
		name     string
		spec     Spec
		backend  string
		enforced bool
		err      string // "" for success
	}{
		// In this order: the first pool finds quotas off, the fourth turns
		// them on.
		{"btrfs detected, quotas off", Spec{Name: "a", Path: filepath.Join(btrfsMnt, "a")}, BackendBtrfs, false, ""},
		{"dir on ext4", Spec{Name: "b", Path: filepath.Join(ext4Mnt, "b")}, BackendDir, false, ""},
		{"dir forced on btrfs", Spec{Name: "c", Path: filepath.Join(btrfsMnt, "c"), Backend: BackendDir}, BackendDir, false, ""},
		{"btrfs forced on btrfs", Spec{Name: "d", Path: filepath.Join(btrfsMnt, "d"), Backend: BackendBtrfs}, BackendBtrfs, true, ""},
		{"btrfs detected, quotas on", Spec{Name: "f", Path: filepath.Join(btrfsMnt, "f")}, BackendBtrfs, true, ""},
		{"btrfs forced on ext4", Spec{Name: "e", Path: filepath.Join(ext4Mnt, "e"), Backend: BackendBtrfs}, "", false, "is on ext2/3/4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Open(context.Background(), tc.spec, Deps{})
			if tc.err != "" {
				if !errors.Is(err, ErrWrongFilesystem) || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.spec.Name) {
					t.Fatalf("Open = %v, want ErrWrongFilesystem naming the pool and saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if p.Backend() != tc.backend || p.Name() != tc.spec.Name || p.Root() != tc.spec.Path {
				t.Errorf("Open = %s pool %q at %s", p.Backend(), p.Name(), p.Root())
			}
			if p.EnforcesSize() != tc.enforced {
				t.Errorf("EnforcesSize = %v, want %v", p.EnforcesSize(), tc.enforced)
			}
		})
	}
}

func TestFSName(t *testing.T) {
	if got := fsName(0x1234); got != "a filesystem with magic 0x1234" {
		t.Errorf("fsName(unknown) = %q", got)
	}
	if got := fsName(0x58465342); got != "xfs" {
		t.Errorf("fsName(xfs) = %q", got)
	}
}

// A pool found on btrfs without being asked for never turns quotas on:
// that would change the whole filesystem, often the host's root, where
// quotas cost snapshot-heavy setups dearly. Its volumes are subvolumes
// without limits, reported as such, and everything else works.
func TestDetectedBtrfsLeavesQuotasOff(t *testing.T) {
	mnt := testfs.Mount(t, testfs.Btrfs, 0)
	p, err := Open(context.Background(), Spec{Name: "a", Path: filepath.Join(mnt, "a")}, Deps{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	b, ok := p.(*Btrfs)
	if !ok || p.EnforcesSize() || p.SizeProblem() != nil {
		t.Fatalf("Open = %T, EnforcesSize %v, SizeProblem %v; want a btrfs pool without limits and no problem", p, p.EnforcesSize(), p.SizeProblem())
	}
	must(t, withDirFD(mnt, func(fd int) error {
		on, err := btrfs.QuotaEnabled(fd)
		if on {
			t.Error("quotas were turned on on a filesystem the pool was not given")
		}
		return err
	}))
	const id = "vol-f0000000000000000000000000000001"
	path := btCreate(t, b, id, VolumeSpec{Bytes: 1 << 20})
	if err := os.WriteFile(filepath.Join(path, "f"), make([]byte, 2<<20), 0o644); err != nil {
		t.Errorf("write past the size of a volume without limits: %v", err)
	}
	must(t, b.Expand(id, 4<<20))
	if _, err := b.Usage(id); err != nil {
		t.Errorf("Usage: %v", err)
	}
	must(t, b.Check(context.Background()))
	must(t, b.Snapshot(id, btSnapID))
	must(t, b.RemoveSnapshot(btSnapID))
	must(t, b.Remove(id))
	must(t, b.PurgeTrash())
}

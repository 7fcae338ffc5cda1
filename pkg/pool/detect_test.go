package pool

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/internal/testfs"
)

func TestOpenDetectsBackend(t *testing.T) {
	btrfsMnt := testfs.Mount(t, testfs.Btrfs, 0)
	ext4Mnt := testfs.Mount(t, testfs.Ext4, 0)
	tests := []struct {
		name    string
		spec    Spec
		backend string
		err     string // "" for success
	}{
		{"btrfs detected", Spec{Name: "a", Path: filepath.Join(btrfsMnt, "a")}, BackendBtrfs, ""},
		{"dir on ext4", Spec{Name: "b", Path: filepath.Join(ext4Mnt, "b")}, BackendDir, ""},
		{"dir forced on btrfs", Spec{Name: "c", Path: filepath.Join(btrfsMnt, "c"), Backend: BackendDir}, BackendDir, ""},
		{"btrfs forced on btrfs", Spec{Name: "d", Path: filepath.Join(btrfsMnt, "d"), Backend: BackendBtrfs}, BackendBtrfs, ""},
		{"btrfs forced on ext4", Spec{Name: "e", Path: filepath.Join(ext4Mnt, "e"), Backend: BackendBtrfs}, "", "is on ext2/3/4"},
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
			if p.EnforcesSize() != (tc.backend == BackendBtrfs) {
				t.Errorf("EnforcesSize = %v for backend %s", p.EnforcesSize(), tc.backend)
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

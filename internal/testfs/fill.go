package testfs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Fill writes a file under dir until its filesystem has no free block left
// (ENOSPC or EDQUOT) and returns the file's path. The file stays, so that
// the filesystem stays full, until the test removes it or dir goes.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "filler-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Big writes first, then ever smaller ones down to one byte, so that
	// no partial block is left either.
	for chunk := 1 << 20; chunk >= 1; chunk /= 4 {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
					break
				}
				t.Fatalf("fill %s: %v", dir, err)
			}
		}
	}
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fill %s: %v", dir, err)
	}
	// The proof: nothing more fits.
	if err := os.WriteFile(filepath.Join(dir, "probe"), make([]byte, 4096), 0o600); err == nil || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filesystem of %s is not full after filling it: %v", dir, err)
	}
	_ = os.Remove(filepath.Join(dir, "probe"))
	return f.Name()
}

package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/btrfs"
)

// markInconsistent makes the kernel mark the quota figures of b's
// filesystem inconsistent, as a lost count does: it puts volume id, which
// shares data with a snapshot, in a higher-level group without the rescan
// that would count the shared data right.
func markInconsistent(t *testing.T, b *Btrfs, p string) {
	t.Helper()
	if _, err := exec.LookPath("btrfs"); err != nil {
		t.Skipf("btrfs not installed: %v", err)
	}
	for _, args := range [][]string{
		{"qgroup", "create", "1/100", b.Root()},
		{"qgroup", "assign", "--no-rescan", fmt.Sprintf("0/%d", subvolumeID(t, p)), "1/100", b.Root()},
	} {
		if out, err := exec.Command("btrfs", args...).CombinedOutput(); err != nil {
			t.Fatalf("btrfs %v: %v: %s", args, err, out)
		}
	}
}

// A quota status the kernel no longer trusts is seen, reported (EnforcesSize
// false, SizeProblem naming it) and repaired with a rescan that later
// checks follow until limits hold again.
func TestBtrfsCheckRepairsInconsistentQuota(t *testing.T) {
	ctx := context.Background()
	b, _ := newBtrfsPool(t, 0)
	if err := b.Check(ctx); err != nil || !b.EnforcesSize() {
		t.Fatalf("fresh pool: Check = %v, EnforcesSize %v; want nil, true", err, b.EnforcesSize())
	}
	p := btCreate(t, b, btVol1, VolumeSpec{Bytes: 16 << 20})
	must(t, os.WriteFile(filepath.Join(p, "f"), make([]byte, 1<<20), 0o644))
	must(t, b.Snapshot(btVol1, btSnapID))
	markInconsistent(t, b, p)

	err := b.Check(ctx)
	if !errors.Is(err, ErrSizesNotEnforced) || b.EnforcesSize() || !errors.Is(b.SizeProblem(), ErrSizesNotEnforced) {
		t.Fatalf("after the kernel lost count: Check = %v, EnforcesSize %v, SizeProblem %v; want ErrSizesNotEnforced, false",
			err, b.EnforcesSize(), b.SizeProblem())
	}
	if b.Rescans() != 1 {
		t.Errorf("Rescans = %d, want 1", b.Rescans())
	}
	deadline := time.Now().Add(30 * time.Second)
	for b.Check(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("still not enforced 30s after the rescan started: %v", b.SizeProblem())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !b.EnforcesSize() || b.SizeProblem() != nil {
		t.Errorf("after the rescan: EnforcesSize %v, SizeProblem %v", b.EnforcesSize(), b.SizeProblem())
	}
	if st, err := b.QuotaStatus(); err != nil || !st.Trusted() {
		t.Errorf("after the rescan: status %s, %v", st, err)
	}
	n, err := fillUntilError(t, filepath.Join(p, "fill"), 64<<20)
	if !isQuotaError(err) {
		t.Errorf("after the rescan, wrote %d bytes into a 16 MiB volume (err %v); want EDQUOT", n, err)
	}
}

// A delete looks at the quota status at once, without waiting for the next
// periodic check.
func TestBtrfsRemoveChecksQuota(t *testing.T) {
	b, _ := newBtrfsPool(t, 0)
	p := btCreate(t, b, btVol1, VolumeSpec{Bytes: 16 << 20})
	btCreate(t, b, btVol2, VolumeSpec{Bytes: 16 << 20})
	must(t, os.WriteFile(filepath.Join(p, "f"), make([]byte, 1<<20), 0o644))
	must(t, b.Snapshot(btVol1, btSnapID))
	markInconsistent(t, b, p)
	must(t, b.Remove(btVol2))
	if b.EnforcesSize() || !errors.Is(b.SizeProblem(), ErrSizesNotEnforced) {
		t.Errorf("after a delete on an inconsistent filesystem: EnforcesSize %v, SizeProblem %v", b.EnforcesSize(), b.SizeProblem())
	}
}

// A btrfs filesystem whose quotas an administrator turned off after the
// pool started has lost every limit: reported, not hidden.
func TestBtrfsCheckQuotasTurnedOff(t *testing.T) {
	if _, err := exec.LookPath("btrfs"); err != nil {
		t.Skipf("btrfs not installed: %v", err)
	}
	b, _ := newBtrfsPool(t, 0)
	if out, err := exec.Command("btrfs", "quota", "disable", b.Root()).CombinedOutput(); err != nil {
		t.Fatalf("btrfs quota disable: %v: %s", err, out)
	}
	if err := b.Check(context.Background()); !errors.Is(err, ErrSizesNotEnforced) || b.EnforcesSize() {
		t.Errorf("quotas off: Check = %v, EnforcesSize %v; want ErrSizesNotEnforced, false", err, b.EnforcesSize())
	}
}

// A driver starting on a filesystem whose quota figures are inconsistent
// (left so by an earlier run) repairs them before it says sizes are
// enforced.
func TestNewBtrfsRepairsInconsistentQuota(t *testing.T) {
	b, root := newBtrfsPool(t, 0)
	p := btCreate(t, b, btVol1, VolumeSpec{Bytes: 16 << 20})
	must(t, os.WriteFile(filepath.Join(p, "f"), make([]byte, 1<<20), 0o644))
	must(t, b.Snapshot(btVol1, btSnapID))
	markInconsistent(t, b, p)
	must(t, b.withRoot(btrfs.Commit))
	if st, err := b.QuotaStatus(); err != nil || !st.Inconsistent {
		t.Fatalf("status before the restart: %s, %v; want inconsistent", st, err)
	}

	restarted, err := NewBtrfs("bt", root)
	must(t, err)
	if restarted.Rescans() != 1 || !restarted.EnforcesSize() {
		t.Errorf("after the restart: %d rescans, EnforcesSize %v (%v); want 1, true", restarted.Rescans(), restarted.EnforcesSize(), restarted.SizeProblem())
	}
	n, err := fillUntilError(t, filepath.Join(p, "fill"), 64<<20)
	if !isQuotaError(err) {
		t.Errorf("after the restart, wrote %d bytes into a 16 MiB volume (err %v); want EDQUOT", n, err)
	}
}

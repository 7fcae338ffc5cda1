package app

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/testfs"
	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The metrics say per pool whether sizes are enforced, and flag a pool
// whose backend promises them but lost them (quotas turned off under a
// btrfs pool); a dir pool is not enforced and not failing.
//
// Probe's readiness (and /readyz) fails with the pool's reason meanwhile;
// the pool still accepts writes.
func TestPoolSizesMetrics(t *testing.T) {
	if _, err := exec.LookPath("btrfs"); err != nil {
		t.Skipf("btrfs not installed: %v", err)
	}
	mnt := testfs.Mount(t, testfs.Btrfs, 0)
	bt, err := pool.NewBtrfs("bt", filepath.Join(mnt, "bt"))
	if err != nil {
		t.Fatal(err)
	}
	good, err := pool.NewBtrfs("good", filepath.Join(testfs.Mount(t, testfs.Btrfs, 0), "good"))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := pool.NewDir("default", filepath.Join(t.TempDir(), "default"))
	if err != nil {
		t.Fatal(err)
	}
	pools := map[string]pool.Pool{"bt": bt, "good": good, "default": dir}
	vols, err := volume.New(catalog.New(t.TempDir()), pools, "default", 1<<30, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := vols.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := readiness(vols)(); err != nil {
		t.Fatalf("Probe's readiness with every pool enforcing sizes = %v", err)
	}
	if out, err := exec.Command("btrfs", "quota", "disable", mnt).CombinedOutput(); err != nil {
		t.Fatalf("btrfs quota disable: %v: %s", err, out)
	}
	vols.CheckPools(context.Background())
	if err := readiness(vols)(); !errors.Is(err, pool.ErrSizesNotEnforced) || !strings.Contains(err.Error(), `"bt"`) {
		t.Errorf("Probe's readiness = %v, want ErrSizesNotEnforced naming pool bt", err)
	}
	if err := vols.Writable(); err != nil {
		t.Errorf("Writable = %v, want nil: the pool accepts writes, only its limits are gone", err)
	}
	want := `
# HELP dirvol_pool_size_enforcement_failing 1 when the pool's backend enforces sizes but cannot now (btrfs quota figures inconsistent or rescanning, quotas turned off); the log and volume health say why. Alert on this.
# TYPE dirvol_pool_size_enforcement_failing gauge
dirvol_pool_size_enforcement_failing{pool="bt"} 1
dirvol_pool_size_enforcement_failing{pool="default"} 0
dirvol_pool_size_enforcement_failing{pool="good"} 0
# HELP dirvol_pool_sizes_enforced 1 when a write past a volume's size fails in this pool (btrfs quota limits that the kernel's quota status says hold), 0 otherwise (dir pools never enforce sizes).
# TYPE dirvol_pool_sizes_enforced gauge
dirvol_pool_sizes_enforced{pool="bt"} 0
dirvol_pool_sizes_enforced{pool="default"} 0
dirvol_pool_sizes_enforced{pool="good"} 1
`
	if err := testutil.CollectAndCompare(newPoolSizesCollector(vols), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

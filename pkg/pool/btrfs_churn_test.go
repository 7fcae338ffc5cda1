package pool

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/btrfs"
	"github.com/dirvol/dirvol/internal/testfs"
)

// churnDuration is how long each churn test runs: DIRVOL_STRESS_DURATION
// (a Go duration; `make test-stress` sets it), else a short run for CI.
func churnDuration(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("DIRVOL_STRESS_DURATION")
	if v == "" {
		return 8 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("DIRVOL_STRESS_DURATION=%q: want a positive Go duration such as 60s", v)
	}
	return d
}

// churnFigures are what a churn run did.
type churnFigures struct {
	creates, deletes, snapshots, restores atomic.Int64
	statusChecks                          atomic.Int64
	lost                                  atomic.Int64
}

// churn runs workers goroutines that each create a small volume, write
// into it, snapshot it, restore the snapshot into a second volume, and
// delete all three, until d has passed, while another goroutine reads the
// quota status as the driver's monitor does. Every volume is checked to
// hold what was written before it is deleted; a volume that is missing or
// wrong counts as lost.
func churn(t *testing.T, b *Btrfs, workers int, d time.Duration) *churnFigures {
	t.Helper()
	f := &churnFigures{}
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	errs := make(chan error, workers+1)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				if err := churnOnce(b, f, w, i); err != nil {
					errs <- fmt.Errorf("worker %d, round %d: %w", w, i, err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for time.Now().Before(stop) {
			if _, err := b.QuotaStatus(); err != nil {
				errs <- err
				return
			}
			f.statusChecks.Add(1)
			time.Sleep(50 * time.Millisecond)
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return f
}

func churnOnce(b *Btrfs, f *churnFigures, w, i int) error {
	vol := fmt.Sprintf("vol-c%03d%028d", w, i)
	clone := fmt.Sprintf("vol-d%03d%028d", w, i)
	snap := fmt.Sprintf("snap-c%02d%028d", w, i)
	spec := VolumeSpec{Bytes: 16 << 20, Perm: btPerm}
	if err := b.Create(vol, spec); err != nil {
		return fmt.Errorf("create %s: %w", vol, err)
	}
	f.creates.Add(1)
	p, err := b.Path(vol)
	if err != nil {
		return err
	}
	data := []byte(vol)
	if err := os.WriteFile(filepath.Join(p, "data"), data, 0o644); err != nil {
		return fmt.Errorf("write into %s: %w", vol, err)
	}
	if i%2 == 0 {
		if err := b.Snapshot(vol, snap); err != nil {
			return fmt.Errorf("snapshot %s: %w", vol, err)
		}
		f.snapshots.Add(1)
		if err := b.Create(clone, VolumeSpec{Bytes: 16 << 20, FromSnapshot: snap}); err != nil {
			return fmt.Errorf("restore %s: %w", snap, err)
		}
		f.restores.Add(1)
		cp, err := b.Path(clone)
		if err != nil {
			return err
		}
		if got, err := os.ReadFile(filepath.Join(cp, "data")); err != nil || string(got) != vol {
			f.lost.Add(1)
			return fmt.Errorf("restored %s holds %q, %v; want %q", clone, got, err, vol)
		}
		if err := b.RemoveSnapshot(snap); err != nil {
			return fmt.Errorf("remove snapshot %s: %w", snap, err)
		}
		if err := b.Remove(clone); err != nil {
			return fmt.Errorf("remove %s: %w", clone, err)
		}
		f.deletes.Add(1)
	}
	if got, err := os.ReadFile(filepath.Join(p, "data")); err != nil || string(got) != vol {
		f.lost.Add(1)
		return fmt.Errorf("%s holds %q, %v; want %q", vol, got, err, vol)
	}
	if err := b.Remove(vol); err != nil {
		return fmt.Errorf("remove %s: %w", vol, err)
	}
	f.deletes.Add(1)
	return nil
}

// checkEnforced waits for btrfs to finish dropping what the churn deleted,
// then checks that the quota status is consistent and that a new volume's
// limit holds: writing four times its size must fail with EDQUOT.
func checkEnforced(t *testing.T, b *Btrfs) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		must(t, b.withRoot(btrfs.Commit))
		busy, err := b.cleanerBusy()
		must(t, err)
		if !busy || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	must(t, b.dropUnfreed())
	must(t, b.withRoot(func(fd int) error {
		groups, err := btrfs.Qgroups(fd)
		if err != nil {
			return err
		}
		for _, g := range groups {
			exists, err := btrfs.SubvolumeExists(fd, g)
			if err != nil {
				return err
			}
			if g >= firstSubvolumeID && !exists {
				t.Errorf("quota group 0/%d outlives its subvolume", g)
			}
		}
		return nil
	}))
	st, err := b.QuotaStatus()
	must(t, err)
	if !st.Trusted() {
		t.Errorf("quota status after churn: %s; want consistent", st)
	}
	const id = "vol-e0000000000000000000000000000001"
	p := btCreate(t, b, id, VolumeSpec{Bytes: 16 << 20})
	n, err := fillUntilError(t, filepath.Join(p, "fill"), 64<<20)
	if !isQuotaError(err) {
		t.Errorf("wrote %d bytes into a 16 MiB volume after churn (err %v); want EDQUOT before 16 MiB", n, err)
	}
	must(t, b.Remove(id))
}

func reportChurn(t *testing.T, name string, d time.Duration, f *churnFigures) {
	t.Helper()
	t.Logf("churn %s over %s: %d creates, %d snapshots, %d restores, %d deletes (%.1f ops/s), %d quota status checks, %d volumes lost",
		name, d, f.creates.Load(), f.snapshots.Load(), f.restores.Load(), f.deletes.Load(),
		float64(f.creates.Load()+f.snapshots.Load()+f.restores.Load()+f.deletes.Load())/d.Seconds(),
		f.statusChecks.Load(), f.lost.Load())
	if f.lost.Load() != 0 {
		t.Errorf("%d volumes lost", f.lost.Load())
	}
}

// Concurrent create, snapshot, restore and delete on a btrfs pool leaves
// quota accounting consistent and limits enforced. Destroying the quota
// group of a deleted subvolume while btrfs was still dropping it used to
// mark every group of the filesystem inconsistent, after which no limit
// held.
func TestBtrfsChurnKeepsLimits(t *testing.T) {
	d := churnDuration(t)
	mnt := testfs.Mount(t, testfs.Btrfs, 1<<30)
	b, err := NewBtrfs("bt", filepath.Join(mnt, "pool"))
	must(t, err)
	f := churn(t, b, 4, d)
	reportChurn(t, "btrfs pool", d, f)
	checkEnforced(t, b)
}

// The same on an image pool, which dirvol formats itself.
func TestImagePoolChurnKeepsLimits(t *testing.T) {
	d := churnDuration(t)
	e := newImageEnv(t)
	b := e.mustOpen(t, 1<<30)
	f := churn(t, b, 4, d)
	reportChurn(t, "image pool", d, f)
	checkEnforced(t, b)
}

// Package stress runs the volume core under concurrent churn on real
// filesystems and checks what must hold afterwards. Each test runs for
// DIRVOL_STRESS_DURATION (a Go duration; `make test-stress` sets a long
// one), or a few seconds in `make test`, and logs its figures.
package stress

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/internal/testfs"
	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"
)

// workers is how many goroutines churn at once: the lost-limit defect this
// guards against needed 4 (2 did not show it).
const workers = 4

// volumeBytes is the size of every churned volume.
const volumeBytes = 16 << 20

func duration(t *testing.T) time.Duration {
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

// figures are what a churn run did.
type figures struct {
	creates, deletes, snapshots, restores atomic.Int64
	checks, unenforced                    atomic.Int64
	lost                                  atomic.Int64
}

func (f *figures) log(t *testing.T, what string, d time.Duration) {
	t.Helper()
	ops := f.creates.Load() + f.deletes.Load() + f.snapshots.Load() + f.restores.Load()
	t.Logf("%s, %d workers, %s: %d operations (%.0f/s): %d creates, %d snapshots, %d restores, %d deletes; %d quota checks, %d found sizes not enforced; %d volumes lost",
		what, workers, d, ops, float64(ops)/d.Seconds(), f.creates.Load(), f.snapshots.Load(), f.restores.Load(), f.deletes.Load(),
		f.checks.Load(), f.unenforced.Load(), f.lost.Load())
}

// newManager returns a recovered volume core over pool p.
func newManager(t *testing.T, p pool.Pool) *volume.Manager {
	t.Helper()
	m, err := volume.New(catalog.New(t.TempDir()), map[string]pool.Pool{p.Name(): p}, p.Name(), volumeBytes, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

func request(name string) volume.CreateRequest {
	return volume.CreateRequest{
		Name:          name,
		RequiredBytes: volumeBytes,
		OnDelete:      volume.OnDeleteDelete,
		Permissions:   pool.Permissions{Mode: 0o777, UID: -1, GID: -1},
		Parameters:    map[string]string{"onDelete": "delete"},
	}
}

// churn runs workers goroutines that each create a volume, write into it,
// and every other round snapshot it, restore the snapshot into a new
// volume, check the copy and delete both, then delete the volume, until d
// has passed; meanwhile another goroutine checks the pool as the driver
// does every few seconds, here every 50 ms. A volume that does not hold
// what was written into it counts as lost.
func churn(t *testing.T, m *volume.Manager, d time.Duration) *figures {
	t.Helper()
	ctx := context.Background()
	f := &figures{}
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				if err := round(ctx, m, f, fmt.Sprintf("pv-%d-%d", w, i), i%2 == 0); err != nil {
					errs <- fmt.Errorf("worker %d, round %d: %w", w, i, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for time.Now().Before(stop) {
			m.CheckPools(ctx)
			f.checks.Add(1)
			if m.SizeProblem() != nil {
				f.unenforced.Add(1)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(m.List()); n != 0 {
		t.Errorf("%d volumes listed after every one was deleted", n)
	}
	return f
}

func round(ctx context.Context, m *volume.Manager, f *figures, name string, snapshot bool) error {
	v, err := m.Create(ctx, request(name))
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	f.creates.Add(1)
	p, err := m.Path(v)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p, "data"), []byte(name), 0o644); err != nil {
		return fmt.Errorf("write into %s: %w", name, err)
	}
	if snapshot {
		s, err := m.CreateSnapshot(ctx, volume.SnapshotRequest{Name: "snap-" + name, SourceVolumeID: v.ID})
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", name, err)
		}
		f.snapshots.Add(1)
		req := request("restore-" + name)
		req.SourceSnapshotID = s.ID
		r, err := m.Create(ctx, req)
		if err != nil {
			return fmt.Errorf("restore %s: %w", s.ID, err)
		}
		f.restores.Add(1)
		if err := holds(m, f, r, name); err != nil {
			return err
		}
		if err := m.DeleteSnapshot(ctx, s.ID); err != nil {
			return fmt.Errorf("delete snapshot %s: %w", s.ID, err)
		}
		if err := m.Delete(ctx, r.ID); err != nil {
			return fmt.Errorf("delete %s: %w", r.ID, err)
		}
		f.deletes.Add(1)
	}
	if err := holds(m, f, v, name); err != nil {
		return err
	}
	if err := m.Delete(ctx, v.ID); err != nil {
		return fmt.Errorf("delete %s: %w", v.ID, err)
	}
	f.deletes.Add(1)
	return nil
}

// holds checks that volume v is listed and its file holds want.
func holds(m *volume.Manager, f *figures, v volume.Volume, want string) error {
	if _, err := m.Get(v.ID); err != nil {
		f.lost.Add(1)
		return fmt.Errorf("volume %s (%s) lost: %w", v.ID, v.Name, err)
	}
	p, err := m.Path(v)
	if err != nil {
		return err
	}
	got, err := os.ReadFile(filepath.Join(p, "data"))
	if err != nil {
		f.lost.Add(1)
		return fmt.Errorf("volume %s (%s) lost its data: %w", v.ID, v.Name, err)
	}
	if string(got) != want {
		f.lost.Add(1)
		return fmt.Errorf("volume %s (%s) holds %q, want %q", v.ID, v.Name, got, want)
	}
	return nil
}

// checkFigures fails the test if a volume was lost or a check during the
// churn found sizes not enforced: the kernel must never lose count of what
// the pool does (the checks would repair it with a rescan, but limits did
// not hold until then).
func checkFigures(t *testing.T, f *figures) {
	t.Helper()
	if f.lost.Load() != 0 {
		t.Errorf("%d volumes lost", f.lost.Load())
	}
	if f.unenforced.Load() != 0 {
		t.Errorf("%d of %d checks during the churn found sizes not enforced (see the log and the kernel log)", f.unenforced.Load(), f.checks.Load())
	}
}

// checkEnforced waits until the pool's checks find sizes enforced (btrfs
// has dropped what the churn deleted, and any rescan has ended), then
// checks that a new volume's size holds: writing four times its size fails
// with EDQUOT.
func checkEnforced(t *testing.T, m *volume.Manager) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		m.CheckPools(ctx)
		err := m.SizeProblem()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sizes still not enforced 60s after the churn: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	v, err := m.Create(ctx, request("pv-enforced"))
	if err != nil {
		t.Fatal(err)
	}
	if issues := m.Health(v); len(issues) != 0 {
		t.Errorf("Health = %+v, want none", issues)
	}
	p, err := m.Path(v)
	if err != nil {
		t.Fatal(err)
	}
	n, err := fill(filepath.Join(p, "fill"), 4*volumeBytes)
	if !errors.Is(err, unix.EDQUOT) {
		t.Errorf("wrote %d bytes into a %d-byte volume after the churn (err %v); want EDQUOT before its size", n, volumeBytes, err)
	}
	if err := m.Delete(ctx, v.ID); err != nil {
		t.Error(err)
	}
}

// fill writes up to max bytes into file p, syncing, and returns what it
// wrote and the first error.
func fill(p string, max int64) (int64, error) {
	f, err := os.Create(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	var n int64
	for n < max {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			return n, err
		}
	}
	return n, f.Sync()
}

// Concurrent create, snapshot, restore and delete on a btrfs pool keep
// every volume and leave sizes enforced. Destroying the quota group of a
// deleted subvolume before btrfs has dropped and accounted it makes the
// kernel mark every group inconsistent, after which no limit holds; the
// pool must never do it, and must say so whenever limits do not hold.
func TestChurnBtrfsPool(t *testing.T) {
	d := duration(t)
	mnt := testfs.Mount(t, testfs.Btrfs, 1<<30)
	p, err := pool.NewBtrfs("bt", filepath.Join(mnt, "pool"))
	if err != nil {
		t.Fatal(err)
	}
	m := newManager(t, p)
	f := churn(t, m, d)
	f.log(t, "btrfs pool", d)
	checkFigures(t, f)
	checkEnforced(t, m)
}

// The same on an image pool, the filesystem dirvol formats and mounts
// itself (`--pool name=x,image=F,size=1Gi`).
func TestChurnImagePool(t *testing.T) {
	d := duration(t)
	if os.Geteuid() != 0 {
		t.Skip("an image pool needs root to loop-mount")
	}
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		t.Skipf("mkfs.btrfs not installed: %v", err)
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "pool")
	t.Cleanup(func() { unmount(t, mnt) })
	deps := pool.Deps{Mounter: mount.New(""), Exec: utilexec.New(), Loops: loopdev.New()}
	spec := pool.Spec{Name: "img", Image: filepath.Join(dir, "pool.img"), Size: 1 << 30, Path: mnt}
	p, err := pool.Open(context.Background(), spec, deps)
	if err != nil {
		t.Fatal(err)
	}
	m := newManager(t, p)
	f := churn(t, m, d)
	f.log(t, "image pool", d)
	checkFigures(t, f)
	checkEnforced(t, m)
}

// unmount unmounts what is mounted at mnt, lazily if it is busy, so the
// loop device is freed even after a failure.
func unmount(t *testing.T, mnt string) {
	for range 3 {
		if exec.Command("mountpoint", "-q", mnt).Run() != nil {
			return
		}
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
			_ = exec.Command("umount", "-l", mnt).Run()
			return
		}
	}
}

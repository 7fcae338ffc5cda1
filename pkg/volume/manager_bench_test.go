package volume

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/testfs"
	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// The benchmarks below run Create and Delete against a real catalog and
// pool, so every figure includes the fsyncs of the pool's filesystem. They
// run on each of benchBackends: the dir pool in the test temp dir
// (os.TempDir, as b.TempDir uses), and the dir and btrfs pools on a btrfs
// image of their own, so that the two backends meet on one filesystem. Each
// run starts from a data dir holding a number of volumes made through
// Manager.Create, opened and recovered as a fresh start does. `make bench`
// runs them.

// existingCounts are the numbers of volumes a run starts with.
var existingCounts = []int{0, 1000, 10000}

// imageExistingCounts are those numbers on a btrfs image: 10,000 volumes do
// not fit in benchImageBytes, and each run makes its own.
var imageExistingCounts = []int{0, 1000}

// benchImageBytes is the size of the btrfs image of a run: room for 1,000
// existing volumes and b.N more of benchRequest's size. The image is sparse.
const benchImageBytes = 2 << 30

// parallelCallers is the number of concurrent Create callers per CPU in
// BenchmarkCreateParallel: Create waits on fsync, and the external
// provisioner calls it from many workers at once.
const parallelCallers = 4

// quiet is the context of benchmark calls: the zero logger discards, so
// recovery's summary lines stay out of the figures.
var quiet = klog.NewContext(context.Background(), klog.Logger{})

// templates caches, for the life of the process, data dirs holding a given
// number of volumes; making 10,000 volumes costs several fsyncs each. A run
// copies a template rather than using it, so runs do not see each other's
// volumes. TestMain removes the cache.
var templates struct {
	mu   sync.Mutex
	root string
	dirs map[int]string // number of volumes -> data dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if templates.root != "" {
		_ = os.RemoveAll(templates.root)
	}
	os.Exit(code)
}

// benchBackend is a pool backend on a filesystem, as the benchmarks run it.
type benchBackend struct {
	// name says the backend and the filesystem: "btrfs-on-btrfs-image".
	name string
	// existing are the numbers of volumes a run starts with.
	existing []int
	// dataDir returns the data dir of a run, which does not exist yet.
	dataDir func(b *testing.B) string
	// newPool opens the pool "default" rooted at the data dir.
	newPool func(name, root string) (pool.Pool, error)
	// templated says a run copies its existing volumes from a cached data
	// dir. Only dir pools can: cp -a makes directories, not subvolumes.
	templated bool
}

// benchBackends returns the backends the benchmarks compare, each in its
// own sub-benchmark.
func benchBackends(b *testing.B) []benchBackend {
	b.Helper()
	return []benchBackend{
		{name: "dir-on-tmpdir-" + filesystemName(b, os.TempDir()), existing: existingCounts,
			dataDir: tempDataDir, newPool: newDirPool, templated: true},
		{name: "dir-on-btrfs-image", existing: imageExistingCounts, dataDir: imageDataDir, newPool: newDirPool},
		{name: "btrfs-on-btrfs-image", existing: imageExistingCounts, dataDir: imageDataDir, newPool: newBtrfsPool},
	}
}

func tempDataDir(b *testing.B) string { return filepath.Join(b.TempDir(), "data") }

// imageDataDir puts the data dir on a fresh loop-mounted btrfs filesystem,
// unmounted when the run ends. It skips the run when that cannot be made
// (not root, or no mkfs.btrfs).
func imageDataDir(b *testing.B) string {
	return filepath.Join(testfs.Mount(b, testfs.Btrfs, benchImageBytes), "data")
}

// The pools log nothing: quiet discards what recovery logs, and the zero
// klog.Logger does the same for what NewBtrfs logs.
func newDirPool(name, root string) (pool.Pool, error) {
	return pool.NewDir(name, root, pool.WithLogger(klog.Logger{}))
}

func newBtrfsPool(name, root string) (pool.Pool, error) {
	return pool.NewBtrfs(name, root, pool.WithLogger(klog.Logger{}))
}

// forEachRun runs fn as a sub-benchmark per backend and existing count.
func forEachRun(b *testing.B, fn func(b *testing.B, be benchBackend, n int)) {
	for _, be := range benchBackends(b) {
		b.Run(be.name, func(b *testing.B) {
			for _, n := range be.existing {
				b.Run(fmt.Sprintf("existing=%d", n), func(b *testing.B) { fn(b, be, n) })
			}
		})
	}
}

func BenchmarkCreate(b *testing.B) {
	forEachRun(b, func(b *testing.B, be benchBackend, n int) {
		m := benchManager(b, be, n)
		names := make([]string, b.N)
		for i := range names {
			names[i] = fmt.Sprintf("create-%d", i)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := m.Create(quiet, benchRequest(names[i])); err != nil {
				b.Fatalf("Create(%s): %v", names[i], err)
			}
		}
		reportOpsPerSecond(b)
	})
}

// BenchmarkCreateParallel measures the throughput of Create called by
// parallelCallers goroutines per CPU, each volume with its own name.
func BenchmarkCreateParallel(b *testing.B) {
	forEachRun(b, func(b *testing.B, be benchBackend, n int) {
		m := benchManager(b, be, n)
		var next atomic.Int64
		b.SetParallelism(parallelCallers)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				name := fmt.Sprintf("parallel-%d", next.Add(1))
				if _, err := m.Create(quiet, benchRequest(name)); err != nil {
					b.Errorf("Create(%s): %v", name, err)
					return
				}
			}
		})
		reportOpsPerSecond(b)
	})
}

// BenchmarkDelete deletes b.N volumes made, before the timer starts, on top
// of the existing ones.
func BenchmarkDelete(b *testing.B) {
	forEachRun(b, func(b *testing.B, be benchBackend, n int) {
		m := benchManager(b, be, n)
		ids := make([]string, b.N)
		for i := range ids {
			v, err := m.Create(quiet, benchRequest(fmt.Sprintf("delete-%d", i)))
			if err != nil {
				b.Fatalf("Create: %v", err)
			}
			ids[i] = v.ID
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := m.Delete(quiet, ids[i]); err != nil {
				b.Fatalf("Delete(%s): %v", ids[i], err)
			}
		}
		reportOpsPerSecond(b)
	})
}

func reportOpsPerSecond(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "ops/s")
	}
}

// benchRequest asks for a small volume so that 10,000 of them fit in what
// the pool's filesystem can promise.
func benchRequest(name string) CreateRequest {
	return CreateRequest{
		Name:          name,
		RequiredBytes: 1 << 20,
		OnDelete:      OnDeleteDelete,
		Permissions:   pool.Permissions{Mode: 0o777, UID: -1, GID: -1},
		Parameters:    map[string]string{"onDelete": "delete"},
	}
}

// benchManager returns a recovered manager of backend be over a fresh data
// dir holding n volumes, copied from a template or made in place, with the
// data flushed to disk so that its writeback does not land inside the timed
// loop.
func benchManager(b *testing.B, be benchBackend, n int) *Manager {
	b.Helper()
	dir := be.dataDir(b)
	switch {
	case n > 0 && be.templated:
		copyDir(b, template(b, n), dir)
	default:
		if err := os.Mkdir(dir, 0o711); err != nil {
			b.Fatal(err)
		}
		if n > 0 {
			populate(b, openManager(b, dir, be.newPool), 0, n)
			syncFS(b, dir)
		}
	}
	m := openManager(b, dir, be.newPool)
	if got := len(m.List()); got != n {
		b.Fatalf("data dir holds %d volumes after recovery, want %d", got, n)
	}
	return m
}

// openManager opens dir as the driver opens its data dir: the catalog under
// dir/catalog and the pool "default", made by newPool, rooted at dir. It
// returns the manager once recovered.
func openManager(b *testing.B, dir string, newPool func(name, root string) (pool.Pool, error)) *Manager {
	b.Helper()
	cat, problems, err := catalog.Open(filepath.Join(dir, "catalog"))
	if err != nil || len(problems) != 0 {
		b.Fatalf("catalog.Open: %v, problems %v", err, problems)
	}
	p, err := newPool("default", dir)
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(cat, map[string]pool.Pool{"default": p}, "default", defaultCap, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Recover(quiet); err != nil {
		b.Fatal(err)
	}
	return m
}

// template returns a cached data dir of a dir pool holding n volumes,
// making it from the largest smaller one when missing. Do not modify it:
// copy it.
func template(b *testing.B, n int) string {
	b.Helper()
	templates.mu.Lock()
	defer templates.mu.Unlock()
	if dir, ok := templates.dirs[n]; ok {
		return dir
	}
	if templates.root == "" {
		root, err := os.MkdirTemp("", "dirvol-bench-")
		if err != nil {
			b.Fatal(err)
		}
		templates.root, templates.dirs = root, make(map[int]string)
	}
	dir := filepath.Join(templates.root, fmt.Sprintf("existing-%d", n))
	if err := os.RemoveAll(dir); err != nil { // left by a failed run
		b.Fatal(err)
	}
	base, src := 0, ""
	for have, d := range templates.dirs {
		if have < n && have > base {
			base, src = have, d
		}
	}
	if src != "" {
		copyDir(b, src, dir)
	}
	populate(b, openManager(b, dir, newDirPool), base, n)
	syncFS(b, dir)
	templates.dirs[n] = dir
	return dir
}

// copyDir copies src to dst (which must not exist) with cp -a, then flushes
// dst's filesystem.
func copyDir(b *testing.B, src, dst string) {
	b.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		b.Fatalf("cp -a %s %s: %v: %s", src, dst, err, out)
	}
	syncFS(b, dst)
}

func syncFS(b *testing.B, path string) {
	b.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatalf("open %s: %v", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		b.Fatalf("syncfs %s: %v", path, err)
	}
}

// populate creates volumes named existing-<from> to existing-<to-1> through
// m, several at a time to shorten setup.
func populate(b *testing.B, m *Manager, from, to int) {
	b.Helper()
	var g errgroup.Group
	g.SetLimit(8)
	for i := from; i < to; i++ {
		g.Go(func() error {
			_, err := m.Create(quiet, benchRequest(fmt.Sprintf("existing-%05d", i)))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatalf("populate: %v", err)
	}
}

// filesystemName names the filesystem that dir is on, for benchmark names.
func filesystemName(b *testing.B, dir string) string {
	b.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		b.Fatalf("statfs %s: %v", dir, err)
	}
	names := map[uint32]string{
		unix.TMPFS_MAGIC: "tmpfs", unix.EXT4_SUPER_MAGIC: "ext4", unix.XFS_SUPER_MAGIC: "xfs",
		unix.BTRFS_SUPER_MAGIC: "btrfs", unix.OVERLAYFS_SUPER_MAGIC: "overlayfs", 0x2fc12fc1: "zfs",
	}
	if name, ok := names[uint32(st.Type)]; ok {
		return name
	}
	return fmt.Sprintf("fs0x%x", uint32(st.Type))
}

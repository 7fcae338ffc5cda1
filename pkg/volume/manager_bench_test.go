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

	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// The benchmarks below run Create and Delete against a real catalog and dir
// pool in the test temp dir (os.TempDir, as b.TempDir uses), so every figure
// includes the fsyncs of that filesystem; the first run logs which one it is.
// Each run starts from a data dir holding a number of volumes made through
// Manager.Create, opened and recovered as a fresh start does. `make bench`
// runs them.

// existingCounts are the numbers of volumes a run starts with.
var existingCounts = []int{0, 1000, 10000}

// parallelCallers is the number of concurrent Create callers per CPU in
// BenchmarkCreateParallel: Create waits on fsync, and the external
// provisioner calls it from many workers at once.
const parallelCallers = 4

// quiet is the context of benchmark calls: the zero logger discards, so
// recovery's summary lines stay out of the figures.
var quiet = klog.NewContext(context.Background(), klog.Logger{})

// filesystemLogged makes the filesystem show once in the output.
var filesystemLogged sync.Once

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

func BenchmarkCreate(b *testing.B) {
	for _, n := range existingCounts {
		b.Run(fmt.Sprintf("existing=%d", n), func(b *testing.B) {
			m := benchManager(b, n)
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
}

// BenchmarkCreateParallel measures the throughput of Create called by
// parallelCallers goroutines per CPU, each volume with its own name.
func BenchmarkCreateParallel(b *testing.B) {
	for _, n := range existingCounts {
		b.Run(fmt.Sprintf("existing=%d", n), func(b *testing.B) {
			m := benchManager(b, n)
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
}

// BenchmarkDelete deletes b.N volumes made, before the timer starts, on top
// of the existing ones.
func BenchmarkDelete(b *testing.B) {
	for _, n := range existingCounts {
		b.Run(fmt.Sprintf("existing=%d", n), func(b *testing.B) {
			m := benchManager(b, n)
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

// benchManager returns a recovered manager over a fresh copy of a data dir
// holding n volumes, with the copy flushed to disk so that its writeback
// does not land inside the timed loop.
func benchManager(b *testing.B, n int) *Manager {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "data")
	filesystemLogged.Do(func() { logFilesystem(b, filepath.Dir(dir)) })
	if n == 0 {
		if err := os.Mkdir(dir, 0o711); err != nil {
			b.Fatal(err)
		}
	} else {
		copyDir(b, template(b, n), dir)
	}
	m := openManager(b, dir)
	if got := len(m.List()); got != n {
		b.Fatalf("data dir holds %d volumes after recovery, want %d", got, n)
	}
	return m
}

// openManager opens dir as the driver opens its data dir: the catalog under
// dir/catalog and the pool "default" rooted at dir. It returns the manager
// once recovered.
func openManager(b *testing.B, dir string) *Manager {
	b.Helper()
	cat, problems, err := catalog.Open(filepath.Join(dir, "catalog"))
	if err != nil || len(problems) != 0 {
		b.Fatalf("catalog.Open: %v, problems %v", err, problems)
	}
	p, err := pool.NewDir("default", dir)
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

// template returns a cached data dir holding n volumes, making it from the
// largest smaller one when missing. Do not modify it: copy it.
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
	populate(b, openManager(b, dir), base, n)
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

// logFilesystem logs the filesystem that dir is on.
func logFilesystem(b *testing.B, dir string) {
	b.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		b.Fatalf("statfs %s: %v", dir, err)
	}
	names := map[uint32]string{
		unix.TMPFS_MAGIC: "tmpfs", unix.EXT4_SUPER_MAGIC: "ext2/3/4", unix.XFS_SUPER_MAGIC: "xfs",
		unix.BTRFS_SUPER_MAGIC: "btrfs", unix.OVERLAYFS_SUPER_MAGIC: "overlayfs", 0x2fc12fc1: "zfs",
	}
	name, ok := names[uint32(st.Type)]
	if !ok {
		name = "unknown"
	}
	b.Logf("data dirs under %s: filesystem %s (statfs magic 0x%x)", os.TempDir(), name, uint32(st.Type))
}

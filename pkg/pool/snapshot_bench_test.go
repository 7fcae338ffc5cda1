package pool

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/internal/testfs"

	"golang.org/x/sys/unix"
)

// benchBackend is one pool the snapshot benchmarks measure, made on a fresh
// filesystem image of its kind.
type benchBackend struct {
	name string
	fs   testfs.Kind
	open func(tb testing.TB, root string) Pool
}

func openBenchDir(tb testing.TB, root string) Pool {
	tb.Helper()
	d, err := NewDir("bench", root)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func openBenchBtrfs(tb testing.TB, root string) Pool {
	tb.Helper()
	b, err := NewBtrfs("bench", root)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// benchBackends are compared side by side; a backend joins with one entry.
var benchBackends = []benchBackend{
	{name: "btrfs", fs: testfs.Btrfs, open: openBenchBtrfs},
	{name: "dir-xfs-reflink", fs: testfs.XFS, open: openBenchDir},
	{name: "dir-btrfs-reflink", fs: testfs.Btrfs, open: openBenchDir},
	{name: "dir-ext4-copy", fs: testfs.Ext4, open: openBenchDir},
}

// benchVolumeBytes is what the benchmarked volume holds, spread over
// files files.
const benchVolumeBytes = 1 << 30

var benchLayouts = []struct {
	name  string
	files int
}{
	{name: "1000files", files: 1000},
	{name: "1file", files: 1},
}

// benchImageBytes holds the volume, one snapshot and one restore with room
// to spare; the image is sparse.
const benchImageBytes = 4 << 30

// benchSpec is the benchmarked volumes' size: room for the data and, where
// sizes are enforced, the metadata that counts against the limit.
var benchSpec = VolumeSpec{Bytes: 2 * benchVolumeBytes, Perm: Permissions{Mode: 0o777, UID: -1, GID: -1}}

// BenchmarkSnapshot measures Snapshot and restore (Create from the snapshot)
// of a volume holding 1 GiB, in 1,000 files or in one. Each operation starts
// with cold caches (the volume's files and the loop image evicted from the
// page cache) and ends with the copy on disk (the pool syncs it), so a plain
// copy reads and writes the whole GiB. Run with:
//
//	go test -run '^$' -bench Snapshot -benchtime 3x ./pkg/pool/
func BenchmarkSnapshot(b *testing.B) {
	for _, be := range benchBackends {
		for _, l := range benchLayouts {
			b.Run(be.name+"/"+l.name, func(b *testing.B) {
				mnt := testfs.Mount(b, be.fs, benchImageBytes)
				p := be.open(b, filepath.Join(mnt, "pool"))
				const volID, snapID = "vol-bench", "snap-bench"
				if err := p.Create(volID, benchSpec); err != nil {
					b.Fatal(err)
				}
				vol, err := p.Path(volID)
				if err != nil {
					b.Fatal(err)
				}
				per := int64(benchVolumeBytes / l.files)
				for i := range l.files {
					name := filepath.Join(vol, fmt.Sprintf("d%02d", i%100), fmt.Sprintf("f%04d", i))
					if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
						b.Fatal(err)
					}
					randomFile(b, name, per, uint64(i))
				}
				b.Run("snapshot", func(b *testing.B) {
					for range b.N {
						b.StopTimer()
						if err := p.RemoveSnapshot(snapID); err != nil {
							b.Fatal(err)
						}
						evictCaches(b, mnt)
						b.StartTimer()
						if err := p.Snapshot(volID, snapID); err != nil {
							b.Fatal(err)
						}
					}
					reportCopy(b)
				})
				b.Run("restore", func(b *testing.B) {
					ok, err := p.SnapshotExists(snapID)
					if err != nil {
						b.Fatal(err)
					}
					if !ok { // -bench selected restore alone
						if err := p.Snapshot(volID, snapID); err != nil {
							b.Fatal(err)
						}
					}
					const restoreID = "vol-restored"
					b.ResetTimer()
					for range b.N {
						b.StopTimer()
						if err := p.Remove(restoreID); err != nil {
							b.Fatal(err)
						}
						evictCaches(b, mnt)
						b.StartTimer()
						spec := benchSpec
						spec.FromSnapshot = snapID
						if err := p.Create(restoreID, spec); err != nil {
							b.Fatal(err)
						}
					}
					reportCopy(b)
				})
			})
		}
	}
}

func reportCopy(b *testing.B) {
	perOp := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(perOp*1000, "ms/op")
	b.ReportMetric(float64(benchVolumeBytes)/(1<<20)/perOp, "MiB/s")
	b.ReportMetric(0, "ns/op") // ms/op says it in a readable unit
}

// evictCaches writes everything under mnt to disk and drops it from the
// page cache: the files themselves, and the image file behind the loop
// device, which the host caches too.
func evictCaches(tb testing.TB, mnt string) {
	tb.Helper()
	if err := syncFS(mnt); err != nil {
		tb.Fatal(err)
	}
	err := filepath.Walk(mnt, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		return dropCache(p)
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := dropCache(backingFile(tb, mnt)); err != nil {
		tb.Fatal(err)
	}
}

// backingFile returns the image file of the loop device mounted at mnt.
func backingFile(tb testing.TB, mnt string) string {
	tb.Helper()
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(info), "\n") {
		fields := strings.Fields(line)
		sep := slices.Index(fields, "-")
		if len(fields) < 5 || sep < 0 || len(fields) < sep+3 || fields[4] != mnt {
			continue
		}
		dev := filepath.Base(fields[sep+2])
		backing, err := os.ReadFile(filepath.Join("/sys/block", dev, "loop", "backing_file"))
		if err != nil {
			tb.Fatal(err)
		}
		return strings.TrimSpace(string(backing))
	}
	tb.Fatalf("%s is not in /proc/self/mountinfo", mnt)
	return ""
}

func dropCache(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fdatasync(fd); err != nil {
		return err
	}
	return unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
}

package copytree

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/internal/testfs"

	"golang.org/x/sys/unix"
)

func randomFile(t testing.TB, p string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	buf := make([]byte, 1<<20)
	for left := size; left > 0; left -= int64(len(buf)) {
		n := min(left, int64(len(buf)))
		_, _ = r.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func freeBytes(t *testing.T, mnt string) int64 {
	t.Helper()
	fd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(fd)
	must(t, unix.Syncfs(fd))
	var st unix.Statfs_t
	must(t, unix.Fstatfs(fd, &st))
	return int64(st.Bfree) * st.Bsize
}

// With reflink the copy of a 64 MiB file takes next to no space; without,
// it takes 64 MiB.
func TestCopyReflinkSharesData(t *testing.T) {
	const size = 64 << 20
	for _, k := range kinds {
		t.Run(string(k), func(t *testing.T) {
			mnt := testfs.Mount(t, k, fsSize)
			src := filepath.Join(mnt, "src")
			must(t, os.Mkdir(src, 0o755))
			randomFile(t, filepath.Join(src, "big"), size, 1)
			before := freeBytes(t, mnt)
			st, err := Copy(src, filepath.Join(mnt, "dst"))
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			used := before - freeBytes(t, mnt)
			if got, want := hashFile(t, filepath.Join(mnt, "dst", "big")), hashFile(t, filepath.Join(src, "big")); string(got) != string(want) {
				t.Fatal("copied content differs")
			}
			switch k {
			case testfs.XFS:
				if st.Reflinked != 1 || st.Copied != 0 {
					t.Errorf("Stats = %+v, want one reflinked file", st)
				}
				if used > 4<<20 {
					t.Errorf("reflink copy of %d MiB used %d KiB of free space", size>>20, used>>10)
				}
			default:
				if st.Reflinked != 0 || st.Copied != 1 {
					t.Errorf("Stats = %+v, want one copied file", st)
				}
				if used < size {
					t.Errorf("plain copy of %d MiB used only %d KiB", size>>20, used>>10)
				}
			}
			if st.Bytes != size {
				t.Errorf("Stats.Bytes = %d, want %d", st.Bytes, size)
			}
			// The copy is independent: writing it leaves the source alone.
			f, err := os.OpenFile(filepath.Join(mnt, "dst", "big"), os.O_WRONLY, 0)
			must(t, err)
			_, err = f.WriteAt([]byte("changed"), 1<<20)
			must(t, err)
			must(t, f.Close())
			if got := hashFile(t, filepath.Join(mnt, "dst", "big")); string(got) == string(hashFile(t, filepath.Join(src, "big"))) {
				t.Error("write to the copy not visible in the copy")
			}
		})
	}
}

// dataRegions lists the [start, end) regions SEEK_DATA and SEEK_HOLE report.
func dataRegions(t *testing.T, p string) [][2]int64 {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY, 0)
	must(t, err)
	defer unix.Close(fd)
	var out [][2]int64
	for off := int64(0); ; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return out
		}
		must(t, err)
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		must(t, err)
		out = append(out, [2]int64{start, end})
		off = end
	}
}

func TestCopyKeepsFilesSparse(t *testing.T) {
	const size = 64 << 20
	for _, k := range kinds {
		t.Run(string(k), func(t *testing.T) {
			mnt := testfs.Mount(t, k, fsSize)
			src := filepath.Join(mnt, "src")
			must(t, os.Mkdir(src, 0o755))
			f, err := os.Create(filepath.Join(src, "sparse"))
			must(t, err)
			must(t, f.Truncate(size))
			for _, off := range []int64{0, 40 << 20, size - 4096} {
				_, err := f.WriteAt([]byte(strings.Repeat("d", 4096)), off)
				must(t, err)
			}
			must(t, f.Sync())
			must(t, f.Close())
			// A file that is all hole.
			must(t, os.WriteFile(filepath.Join(src, "hole"), nil, 0o644))
			must(t, os.Truncate(filepath.Join(src, "hole"), size))
			want := describe(t, src)

			dst := filepath.Join(mnt, "dst")
			if _, err := Copy(src, dst); err != nil {
				t.Fatalf("Copy: %v", err)
			}
			same(t, "copy", want, describe(t, dst))
			for _, name := range []string{"sparse", "hole"} {
				var st unix.Stat_t
				must(t, unix.Stat(filepath.Join(dst, name), &st))
				if st.Size != size || st.Blocks*512 > 4<<20 {
					t.Errorf("%s: size %d, %d KiB allocated; want %d bytes, sparse", name, st.Size, st.Blocks/2, int64(size))
				}
				if k == testfs.Ext4 {
					// A plain copy writes exactly the source's data
					// regions.
					if got, w := dataRegions(t, filepath.Join(dst, name)), dataRegions(t, filepath.Join(src, name)); fmt.Sprint(got) != fmt.Sprint(w) {
						t.Errorf("%s: data regions %v, want %v", name, got, w)
					}
				}
			}
		})
	}
}

func TestCanReflink(t *testing.T) {
	for _, k := range []testfs.Kind{testfs.XFS, testfs.Btrfs, testfs.Ext4} {
		t.Run(string(k), func(t *testing.T) {
			mnt := testfs.Mount(t, k, 0)
			ok, err := CanReflink(mnt)
			if err != nil {
				t.Fatal(err)
			}
			if want := k != testfs.Ext4; ok != want {
				t.Errorf("CanReflink = %v, want %v", ok, want)
			}
			if es, _ := os.ReadDir(mnt); len(es) > 1 { // lost+found on ext4
				t.Errorf("probe files left: %v", es)
			}
		})
	}
}

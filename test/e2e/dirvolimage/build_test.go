package dirvolimage

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Two builds of the same tree give the same image and the same archive
// bytes, holding the tools the node code runs. Needs a Debian host of the
// lock's release with apt (the .deb files are downloaded once, into the
// shared cache).
func TestBuildReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the image twice")
	}
	for _, tool := range []string{"apt-get", "dpkg-deb", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s: the recipe needs Debian's apt and dpkg-deb", tool)
		}
	}
	lock, err := DefaultLock()
	if err != nil {
		t.Fatal(err)
	}
	if rel := hostDebianRelease(); rel != lock.Release {
		t.Skipf("host is Debian %q, the lock pins Debian %s packages", rel, lock.Release)
	}
	cache, err := DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	opts := Options{Root: repoRoot, Version: "v0.0.0-test", Lock: lock, Cache: cache, Epoch: time.Unix(0, 0).UTC()}
	var digests, ids, archives []string
	var img v1.Image
	for i := range 2 {
		start := time.Now()
		img, err = Build(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		id, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		archive := filepath.Join(t.TempDir(), "image.tar")
		if err := WriteArchive(archive, img, "dirvol.csi.dev/dirvol:test"); err != nil {
			t.Fatal(err)
		}
		sum, err := fileSHA256(archive)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("build %d: %.1fs, image ID %s, manifest %s, archive sha256:%s", i+1, time.Since(start).Seconds(), id, d, sum)
		digests, ids, archives = append(digests, d.String()), append(ids, id.String()), append(archives, sum)
	}
	if digests[0] != digests[1] || ids[0] != ids[1] || archives[0] != archives[1] {
		t.Errorf("two builds of one tree differ: manifests %v, image IDs %v, archives %v", digests, ids, archives)
	}

	files := map[string]*tar.Header{}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			files[strings.TrimSuffix(hdr.Name, "/")] = hdr
		}
		rc.Close()
	}
	for _, want := range []string{
		strings.TrimPrefix(BinaryPath, "/"),
		"bin/mount", "bin/umount", "sbin/losetup", "sbin/blkid", "sbin/mkfs.btrfs", "bin/btrfs",
		"lib64/ld-linux-x86-64.so.2", "etc/passwd", "etc/os-release", "etc/mtab", "tmp",
		"var/lib/dpkg/status.d/mount",
	} {
		if files[want] == nil {
			t.Errorf("the image has no /%s", want)
		}
	}
	if h := files["bin/mount"]; h != nil && h.Mode&0o4000 == 0 {
		t.Errorf("/bin/mount: mode %o, want setuid as Debian ships it", h.Mode)
	}
}

func hostDebianRelease() string {
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return ""
	}
	if !strings.Contains(string(data), "\nID=debian\n") && !strings.HasPrefix(string(data), "ID=debian\n") {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VERSION_ID="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

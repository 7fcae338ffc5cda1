package images

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestBusybox: the archive holds one image under BusyboxRef whose single
// layer has the busybox binary, an applet link to it and a sticky /tmp,
// and writing it twice gives the same image.
func TestBusybox(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no /bin/busybox (apt-get install busybox-static)")
	}
	dir := t.TempDir()
	var digests []string
	for _, f := range []string{"a.tar", "b.tar"} {
		out := filepath.Join(dir, f)
		if err := Busybox(context.Background(), out, "/bin/busybox"); err != nil {
			t.Fatal(err)
		}
		tag, err := name.NewTag(BusyboxRef)
		if err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(out, &tag)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.OS != "linux" || !slices.Equal(cfg.Config.Cmd, []string{"sh"}) {
			t.Errorf("config: os %q cmd %q", cfg.OS, cfg.Config.Cmd)
		}
		entries := map[string]int64{}
		links := map[string]string{}
		r := mutate.Extract(img)
		defer r.Close()
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			n := strings.TrimSuffix(h.Name, "/")
			entries[n] = h.Mode
			links[n] = h.Linkname
		}
		if _, ok := entries["bin/busybox"]; !ok {
			t.Errorf("no bin/busybox in the layer")
		}
		if links["bin/sh"] != "/bin/busybox" {
			t.Errorf("bin/sh links to %q, want /bin/busybox", links["bin/sh"])
		}
		if entries["tmp"] != 0o1777 {
			t.Errorf("tmp mode %o, want 1777", entries["tmp"])
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("two writes gave digests %s and %s, want the same image", digests[0], digests[1])
	}
}

// TestBinary: a dynamically linked program's image holds the program as
// its entrypoint and every library ldd names.
func TestBinary(t *testing.T) {
	out := filepath.Join(t.TempDir(), "img.tar")
	bin, err := os.Executable() // this test binary
	if err != nil {
		t.Fatal(err)
	}
	if err := Binary(context.Background(), out, "dirvol.test/x:e2e", bin); err != nil {
		t.Fatal(err)
	}
	libs, err := sharedLibraries(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("dirvol.test/x:e2e")
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	entry := "/" + filepath.Base(bin)
	if !slices.Equal(cfg.Config.Entrypoint, []string{entry}) {
		t.Errorf("entrypoint %q, want %q", cfg.Config.Entrypoint, entry)
	}
	names := map[string]bool{}
	r := mutate.Extract(img)
	defer r.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names["/"+strings.TrimSuffix(h.Name, "/")] = true
	}
	for _, want := range append(libs, entry) {
		if !names[want] {
			t.Errorf("image lacks %s", want)
		}
	}
}

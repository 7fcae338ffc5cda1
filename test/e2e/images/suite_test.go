package images

import (
	"archive/tar"
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestSuite: each of the suite's images is in its own archive under its
// manifest name; glibc-dns-testing has GNU dd and a shell of its own
// (regular files, not busybox applet links: busybox's dd lacks
// oflag=nocache, and busybox's shell prefers its applets) and the libraries
// they link; agnhost runs /agnhost pause and has a shell and nsenter.
func TestSuite(t *testing.T) {
	for _, p := range []string{"/bin/busybox", "/bin/dd", "/bin/dash", "/bin/true"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("no %s", p)
		}
	}
	dir := t.TempDir()
	// /bin/true stands in for agnhost: any dynamically linked program.
	archives, err := Suite(context.Background(), dir, "/bin/busybox", map[string]string{"bin/dd": "/bin/dd", "bin/sh": "/bin/dash"}, "/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"suite-busybox.tar":           SuiteBusyboxRef,
		"suite-nginx.tar":             SuiteNginxRef,
		"suite-glibc-dns-testing.tar": SuiteGlibcDNSTestingRef,
		"suite-agnhost.tar":           SuiteAgnhostRef,
	}
	if len(archives) != len(want) {
		t.Fatalf("archives %q, want %d", archives, len(want))
	}
	for _, a := range archives {
		base := a[strings.LastIndex(a, "/")+1:]
		ref, ok := want[base]
		if !ok {
			t.Fatalf("unexpected archive %s", a)
		}
		tag, err := name.NewTag(ref)
		if err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(a, &tag)
		if err != nil {
			t.Fatalf("%s: no image %s: %v", a, ref, err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		types := map[string]byte{}
		r := mutate.Extract(img)
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			types[strings.TrimPrefix(strings.TrimSuffix(h.Name, "/"), "/")] = h.Typeflag
		}
		r.Close()
		if _, ok := types["bin/sh"]; !ok {
			t.Errorf("%s: no bin/sh", ref)
		}
		switch ref {
		case SuiteGlibcDNSTestingRef:
			if types["bin/dd"] != tar.TypeReg {
				t.Errorf("%s: bin/dd is type %q, want the GNU dd program", ref, types["bin/dd"])
			}
			if types["bin/sh"] != tar.TypeReg {
				t.Errorf("%s: bin/sh is type %q, want a shell that runs dd from PATH, not busybox's", ref, types["bin/sh"])
			}
			if !hasPrefix(types, "lib") {
				t.Errorf("%s: no shared libraries for dd", ref)
			}
		case SuiteAgnhostRef:
			if types["agnhost"] != tar.TypeReg {
				t.Errorf("%s: no agnhost program", ref)
			}
			if _, ok := types["usr/bin/nsenter"]; !ok {
				if _, ok := types["bin/nsenter"]; !ok {
					t.Errorf("%s: no nsenter", ref)
				}
			}
			if !slices.Equal(cfg.Config.Entrypoint, []string{"/agnhost"}) || !slices.Equal(cfg.Config.Cmd, []string{"pause"}) {
				t.Errorf("%s: entrypoint %q cmd %q, want /agnhost pause", ref, cfg.Config.Entrypoint, cfg.Config.Cmd)
			}
		default:
			if types["bin/dd"] != tar.TypeSymlink {
				t.Errorf("%s: bin/dd is type %q, want busybox's link", ref, types["bin/dd"])
			}
		}
	}
}

func hasPrefix(m map[string]byte, prefix string) bool {
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

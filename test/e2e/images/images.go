// Package images writes the container images the real node of the cluster
// tests runs, without a registry or a container engine: one-layer images
// written as docker archives (go-containerregistry's tarball format) that
// `ctr images import` loads into containerd. Layers are built from files
// with fixed timestamps and owners, so the same inputs give the same image.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// References of the images the harness makes. A domain with a dot keeps
// containerd from rewriting them to docker.io; nothing is ever pulled.
const (
	PauseRef   = "dirvol.test/pause:e2e"
	BusyboxRef = "dirvol.test/busybox:e2e"
)

// File is one entry of an image's single layer.
type File struct {
	// Path inside the image, without a leading slash.
	Path string
	Mode int64
	// Data is a regular file's content; Link makes the entry a symlink to
	// Link; Dir makes it a directory.
	Data []byte
	Link string
	Dir  bool
}

// epoch is every entry's and the image's timestamp.
var epoch = time.Unix(0, 0).UTC()

// Write writes an image named ref, of one layer holding files, with
// config's entrypoint, command and environment, to the docker archive at
// out.
func Write(out, ref string, files []File, config v1.Config) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	layerTar, err := layer(files)
	if err != nil {
		return err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return err
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		Config:       config,
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return err
	}
	img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "dirvol e2e images"}})
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		return fmt.Errorf("write image %s to %s: %w", ref, out, err)
	}
	return nil
}

// layer returns the uncompressed tar of files, parents first, with the
// directories they need added.
func layer(files []File) ([]byte, error) {
	all := map[string]File{}
	for _, f := range files {
		p := strings.TrimPrefix(path.Clean(f.Path), "/")
		f.Path = p
		all[p] = f
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := all[d]; !ok {
				all[d] = File{Path: d, Mode: 0o755, Dir: true}
			}
		}
	}
	paths := make([]string, 0, len(all))
	for p := range all {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := all[p]
		h := &tar.Header{Name: p, Mode: f.Mode, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case f.Dir:
			h.Typeflag, h.Name = tar.TypeDir, p+"/"
		case f.Link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.Link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Busybox writes BusyboxRef: the static busybox binary at bin (Debian's
// busybox-static installs it as /bin/busybox) with a symlink per applet, a
// world-writable /tmp, and sh as the command.
func Busybox(ctx context.Context, out, bin string) error {
	files, err := busyboxFiles(ctx, bin)
	if err != nil {
		return err
	}
	return Write(out, BusyboxRef, files, busyboxConfig)
}

// busyboxConfig runs a shell.
var busyboxConfig = v1.Config{
	Cmd: []string{"sh"},
	Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
}

// busyboxFiles are the files of the busybox image: the binary, a link per
// applet, /tmp, a passwd and group file.
func busyboxFiles(ctx context.Context, bin string) ([]File, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("busybox for the test pods' image (apt-get install busybox-static): %w", err)
	}
	list, err := exec.CommandContext(ctx, bin, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", bin, err)
	}
	files := []File{
		{Path: "bin/busybox", Mode: 0o755, Data: data},
		{Path: "tmp", Mode: 0o1777, Dir: true},
		{Path: "etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")},
		{Path: "etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnobody:x:65534:\n")},
	}
	for _, d := range []string{"proc", "sys", "dev", "root", "var"} {
		files = append(files, File{Path: d, Mode: 0o755, Dir: true})
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "bin/busybox" {
			continue
		}
		files = append(files, File{Path: applet, Mode: 0o777, Link: "/bin/busybox"})
	}
	return files, nil
}

// Pause writes PauseRef: ./images/pause of the e2e module at moduleRoot,
// built static, as /pause.
func Pause(ctx context.Context, out, moduleRoot string) error {
	bin := filepath.Join(filepath.Dir(out), "pause.bin")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./images/pause")
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the pause binary: %w\n%s", err, b)
	}
	defer os.Remove(bin)
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	return Write(out, PauseRef, []File{{Path: "pause", Mode: 0o755, Data: data}}, v1.Config{Entrypoint: []string{"/pause"}})
}

// Binary writes an image named ref that runs the program at bin as its
// entrypoint, at /<base name of bin>, with the shared libraries it links
// (as ldd lists them, so a binary built with cgo runs too) at their paths.
func Binary(ctx context.Context, out, ref, bin string) error {
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	entry := "/" + filepath.Base(bin)
	files := []File{{Path: entry, Mode: 0o755, Data: data}, {Path: "tmp", Mode: 0o1777, Dir: true}}
	libs, err := libraryFiles(ctx, bin)
	if err != nil {
		return err
	}
	files = append(files, libs...)
	return Write(out, ref, files, v1.Config{Entrypoint: []string{entry}})
}

// libraryFiles returns the shared libraries bin links, at their paths.
func libraryFiles(ctx context.Context, bin string) ([]File, error) {
	libs, err := sharedLibraries(ctx, bin)
	if err != nil {
		return nil, err
	}
	var files []File
	for _, lib := range libs {
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(real)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: lib, Mode: 0o755, Data: b})
	}
	return files, nil
}

// sharedLibraries returns the absolute paths ldd prints for bin; none for a
// static binary.
func sharedLibraries(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", bin).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %w: %s", bin, err, out)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				libs = append(libs, f)
			}
		}
	}
	return libs, nil
}

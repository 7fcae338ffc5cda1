package images

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The images the Kubernetes external storage suite's specs run, with the
// names and tags of test/utils/image/manifest.go in the pinned Kubernetes
// release (build/kubernetes/suitecheck checks them against it). None is
// pulled: the harness makes stand-ins from what the host has and imports
// them under these names.
const (
	// SuiteBusyboxRef is the default test image: busybox, as BusyboxRef.
	SuiteBusyboxRef = "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"
	// SuiteNginxRef runs the volumes suite's exec spec, which needs only
	// /bin/sh: a busybox stand-in.
	SuiteNginxRef = "registry.k8s.io/e2e-test-images/nginx:1.27.0-2"
	// SuiteGlibcDNSTestingRef runs the multiVolume suite's pods, which
	// need a shell, sha256sum, base64 and GNU dd (upstream's image is
	// glibc-based; the block-mode checks write with oflag=nocache, which
	// busybox's dd refuses): busybox with the host's coreutils dd, and the
	// host's dash as /bin/sh (busybox's shell runs its own applets before
	// anything on PATH, so it would still run busybox's dd).
	SuiteGlibcDNSTestingRef = "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1"
	// SuiteAgnhostRef runs the host-exec and some client pods: the
	// agnhost program built from the same release, with busybox for the
	// shell and nsenter its host-exec pods run.
	SuiteAgnhostRef = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"
)

// Suite writes the storage suite's images into dir, one docker archive
// each, and returns the archives: busybox (the static binary at busybox)
// under SuiteBusyboxRef and SuiteNginxRef; the same with the host's programs
// in glibc (image path: host path; GNU dd and a shell that is not busybox)
// under SuiteGlibcDNSTestingRef; and SuiteAgnhostRef with the agnhost binary
// at agnhost.
func Suite(ctx context.Context, dir, busybox string, glibc map[string]string, agnhost string) ([]string, error) {
	files, err := busyboxFiles(ctx, busybox)
	if err != nil {
		return nil, err
	}
	var out []string
	for name, ref := range map[string]string{
		"suite-busybox.tar": SuiteBusyboxRef,
		"suite-nginx.tar":   SuiteNginxRef,
	} {
		archive := filepath.Join(dir, name)
		if err := Write(archive, ref, files, busyboxConfig); err != nil {
			return nil, err
		}
		out = append(out, archive)
	}
	glibcFiles := files
	for _, path := range slices.Sorted(maps.Keys(glibc)) {
		if glibcFiles, err = withProgram(ctx, glibcFiles, glibc[path], path); err != nil {
			return nil, err
		}
	}
	archive := filepath.Join(dir, "suite-glibc-dns-testing.tar")
	if err := Write(archive, SuiteGlibcDNSTestingRef, glibcFiles, busyboxConfig); err != nil {
		return nil, err
	}
	out = append(out, archive)
	// As upstream's image: /agnhost as the entrypoint, pause by default.
	agn, err := withProgram(ctx, files, agnhost, "agnhost")
	if err != nil {
		return nil, err
	}
	archive = filepath.Join(dir, "suite-agnhost.tar")
	if err := Write(archive, SuiteAgnhostRef, agn, v1.Config{
		Entrypoint: []string{"/agnhost"},
		Cmd:        []string{"pause"},
		Env:        busyboxConfig.Env,
	}); err != nil {
		return nil, err
	}
	return append(out, archive), nil
}

// withProgram returns files with the program at bin added at path (in
// place of an entry already there, such as a busybox applet's link) and the
// shared libraries it links.
func withProgram(ctx context.Context, files []File, bin, path string) ([]File, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	libs, err := libraryFiles(ctx, bin)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	out := make([]File, 0, len(files)+1+len(libs))
	for _, f := range files {
		if f.Path != path {
			out = append(out, f)
			have[f.Path] = true
		}
	}
	// Two programs may link the same library: one entry each.
	var newLibs []File
	for _, l := range libs {
		if !have[l.Path] {
			newLibs = append(newLibs, l)
		}
	}
	libs = newLibs
	out = append(out, File{Path: path, Mode: 0o755, Data: data})
	return append(out, libs...), nil
}

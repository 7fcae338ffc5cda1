package images

import (
	"context"
	"os"
	"path/filepath"

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
	// need a shell, dd, sha256sum and base64: a busybox stand-in.
	SuiteGlibcDNSTestingRef = "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1"
	// SuiteAgnhostRef runs the host-exec and some client pods: the
	// agnhost program built from the same release, with busybox for the
	// shell and nsenter its host-exec pods run.
	SuiteAgnhostRef = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"
)

// Suite writes the storage suite's images into dir, one docker archive
// each, and returns the archives: busybox (the static binary at busybox)
// under SuiteBusyboxRef, SuiteNginxRef and SuiteGlibcDNSTestingRef, and
// SuiteAgnhostRef with the agnhost binary at agnhost.
func Suite(ctx context.Context, dir, busybox, agnhost string) ([]string, error) {
	files, err := busyboxFiles(ctx, busybox)
	if err != nil {
		return nil, err
	}
	var out []string
	for name, ref := range map[string]string{
		"suite-busybox.tar":           SuiteBusyboxRef,
		"suite-nginx.tar":             SuiteNginxRef,
		"suite-glibc-dns-testing.tar": SuiteGlibcDNSTestingRef,
	} {
		archive := filepath.Join(dir, name)
		if err := Write(archive, ref, files, busyboxConfig); err != nil {
			return nil, err
		}
		out = append(out, archive)
	}
	data, err := os.ReadFile(agnhost)
	if err != nil {
		return nil, err
	}
	// As upstream's image: /agnhost as the entrypoint, pause by default.
	agn := append(files, File{Path: "agnhost", Mode: 0o755, Data: data})
	libs, err := libraryFiles(ctx, agnhost)
	if err != nil {
		return nil, err
	}
	agn = append(agn, libs...)
	archive := filepath.Join(dir, "suite-agnhost.tar")
	if err := Write(archive, SuiteAgnhostRef, agn, v1.Config{
		Entrypoint: []string{"/agnhost"},
		Cmd:        []string{"pause"},
		Env:        busyboxConfig.Env,
	}); err != nil {
		return nil, err
	}
	return append(out, archive), nil
}

//go:build linux

package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/volume"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Seeds: the hostile inputs of test/hostile and the cases of the validator
// tables.
var (
	seedIDs = []string{
		goodID, "", "pvc-123", "vol-XYZ", "../../etc", "vol-0123456789abcdef0123456789abcdeg",
		"vol-0123456789ABCDEF0123456789ABCDEF", "vol-0123456789abcdef0123456789abcdef/..", "vol-\x00",
		strings.Repeat("v", 300), "vol-0123456789abcdef0123456789abcde\u00e9",
		"csi-" + strings.Repeat("0f", 32), "csi-" + strings.Repeat("0F", 32), "csi-" + strings.Repeat("0f", 32) + "/..",
	}
	seedPaths = []string{
		goodTP, "", ".", "a/b", "a/../../outside", "/pods/x/../../outside", "/pods/..", "/pods/a\x00b",
		"/", "//", "/pods//x/./mount", "/pods/x/", "/pods/" + strings.Repeat("x", 255), "/pods/" + strings.Repeat("x", 256),
		"/pods/" + strings.Repeat("x", 300) + "/mount", strings.Repeat("/"+strings.Repeat("y", 200), 21),
		"/pods/\u00e9\u00e8/mount", "/pods/x\n/mount", "/var/lib/kubelet/../x", "mount",
	}
)

// wantValidatorResult checks what every validator promises: nil, or a
// status error with InvalidArgument or NotFound and a bounded message.
func wantValidatorResult(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v is not a status", err)
	}
	if c := st.Code(); c != codes.InvalidArgument && c != codes.NotFound {
		t.Fatalf("code %s (%v), want InvalidArgument or NotFound", c, err)
	}
	if len(st.Message()) > 2000 {
		t.Fatalf("message of %d bytes echoes too much of the request", len(st.Message()))
	}
}

// wantUsablePath checks what an accepted path must be.
func wantUsablePath(t *testing.T, field, p string) {
	t.Helper()
	if !filepath.IsAbs(p) || strings.ContainsRune(p, 0) || len(p) > maxPathBytes {
		t.Fatalf("%s %q accepted", field, p)
	}
	for _, elem := range strings.Split(p, "/") {
		if elem == ".." || len(elem) > maxNameBytes {
			t.Fatalf("%s %q accepted with element %q", field, p, elem)
		}
	}
}

func FuzzValidateNodePublishVolume(f *testing.F) {
	for i, id := range seedIDs {
		for j, p := range seedPaths {
			f.Add(id, p, (i+j)%2 == 0, int32((i+j)%8), j%3 == 0, []byte("nosuid,noexec"))
		}
	}
	f.Add(goodID, goodTP, true, int32(1), false, []byte("rw"))
	f.Add(goodID, goodTP, false, int32(1), false, []byte("ro,rw,discard,uid=1000,remount"))
	f.Fuzz(func(t *testing.T, id, target string, ro bool, mode int32, block bool, flags []byte) {
		c := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_Mode(mode)}}
		if block {
			c.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
		} else {
			var fl []string
			if len(flags) > 0 {
				fl = strings.Split(string(flags), ",")
			}
			c.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{MountFlags: fl}}
		}
		req := &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, Readonly: ro, VolumeCapability: c}
		err := validateNodePublishVolume(req)
		wantValidatorResult(t, err)
		if err != nil {
			return
		}
		wantUsablePath(t, "target_path", target)
		if !volume.ValidID(id) {
			t.Fatalf("volume_id %q accepted", id)
		}
		// Every accepted flag can be given to the kernel.
		if _, err := mountAttr(mountOptions(req)[1:]); err != nil {
			t.Fatalf("accepted flags %q: %v", flags, err)
		}
	})
}

func FuzzValidateNodeUnpublishVolume(f *testing.F) {
	for _, id := range seedIDs {
		for _, p := range seedPaths {
			f.Add(id, p)
		}
	}
	f.Fuzz(func(t *testing.T, id, target string) {
		err := validateNodeUnpublishVolume(&csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
		wantValidatorResult(t, err)
		if err == nil {
			wantUsablePath(t, "target_path", target)
			if !volume.ValidID(id) && !ephemeralHandle.MatchString(id) {
				t.Fatalf("volume_id %q accepted", id)
			}
		}
	})
}

func FuzzValidateNodeGetVolumeStats(f *testing.F) {
	for _, id := range seedIDs {
		for _, p := range seedPaths {
			f.Add(id, p)
		}
	}
	f.Fuzz(func(t *testing.T, id, path string) {
		err := validateNodeGetVolumeStats(&csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: path})
		wantValidatorResult(t, err)
		if err == nil && (path == "" || (!volume.ValidID(id) && !ephemeralHandle.MatchString(id))) {
			t.Fatalf("volume_id %q, volume_path %q accepted", id, path)
		}
	})
}

func FuzzValidateNodeGetVolumeHealth(f *testing.F) {
	for _, id := range seedIDs {
		for _, p := range seedPaths {
			f.Add(id, p)
		}
	}
	f.Fuzz(func(t *testing.T, id, path string) {
		err := validateNodeGetVolumeHealth(&csi.NodeGetVolumeHealthRequest{VolumeId: id, VolumePublishPath: path})
		wantValidatorResult(t, err)
		if err != nil {
			return
		}
		if path != "" {
			wantUsablePath(t, "volume_publish_path", path)
		}
		if !volume.ValidID(id) {
			t.Fatalf("volume_id %q accepted", id)
		}
	})
}

func FuzzValidateNodeExpandVolume(f *testing.F) {
	for i, id := range seedIDs {
		for j, p := range seedPaths {
			f.Add(id, p, int64(i-3)<<30, int64(j-5)<<29, (i+j)%3 != 0)
		}
	}
	f.Fuzz(func(t *testing.T, id, path string, required, limit int64, withRange bool) {
		req := &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: path}
		if withRange {
			req.CapacityRange = &csi.CapacityRange{RequiredBytes: required, LimitBytes: limit}
		}
		err := validateNodeExpandVolume(req)
		wantValidatorResult(t, err)
		if err != nil {
			return
		}
		if path == "" || strings.ContainsRune(path, 0) || !volume.ValidID(id) {
			t.Fatalf("volume_id %q, volume_path %q accepted", id, path)
		}
		if withRange && (required < 0 || limit < 0 || (required == 0 && limit == 0) || (limit > 0 && required > limit)) {
			t.Fatalf("capacity range %d..%d accepted", required, limit)
		}
	})
}

// FuzzOpenTarget resolves paths that the validators accept inside a tree
// with links out of it, a file and directories: a path that opens has no
// link in it and opens what it names; whatever the path, the tree the
// links point to is never changed, even when missing directories are
// created.
func FuzzOpenTarget(f *testing.F) {
	for _, p := range []string{
		"pods/p/mount", "pods/link/mount", "pods/link", "pods/rel/x/y", "pods/file/x", "pods/file", "pods/fifo",
		"pods/p//mount/./x", "pods/new/dirs/here", "pods/p/" + strings.Repeat("x", 255), "pods/p/" + strings.Repeat("x", 256),
		"pods/../outside/etc", "outside/etc", "pods/dangling/x", "pods/p/mount/", "pods/link/../p",
	} {
		f.Add(p, false)
		f.Add(p, true)
	}
	root := f.TempDir()
	outside := filepath.Join(root, "outside")
	for _, d := range []string{"outside/etc", "pods/p/mount"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o750); err != nil {
			f.Fatal(err)
		}
	}
	for link, to := range map[string]string{
		"pods/link": outside, "pods/rel": "../outside", "pods/dangling": filepath.Join(outside, "missing"),
	} {
		if err := os.Symlink(to, filepath.Join(root, link)); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "pods/file"), []byte("data"), 0o600); err != nil {
		f.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(root, "pods/fifo"), 0o600); err != nil {
		f.Fatal(err)
	}
	outsideBefore, err := os.ReadDir(filepath.Join(outside, "etc"))
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, rel string, mkParents bool) {
		// Only what the validators let through reaches openTarget, and the
		// pods directory stands for the kubelet's.
		target := filepath.Join(root, "pods") + "/" + rel
		if checkPath("target_path", target) != nil {
			return
		}
		target = filepath.Clean(target)
		if !strings.HasPrefix(target, filepath.Join(root, "pods")+"/") {
			return
		}
		opened, err := openTarget(target, mkParents)
		if err == nil {
			defer opened.Close()
			// No component is a link, so the kernel's name for the parent
			// is the path's.
			got, rerr := fdPath(opened.parent)
			if rerr != nil || got != filepath.Dir(target) {
				t.Fatalf("openTarget(%q) opened parent %q (%v), want %q", target, got, rerr, filepath.Dir(target))
			}
			if opened.file != nil && opened.st.Mode&unix.S_IFMT == unix.S_IFLNK {
				t.Fatalf("openTarget(%q) opened a link", target)
			}
			for p := target; p != root; p = filepath.Dir(p) {
				if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
					t.Fatalf("openTarget(%q) succeeded through link %s", target, p)
				}
			}
		} else if !errors.Is(err, errSymlink) && !errors.Is(err, errNotDir) && !errors.Is(err, unix.ENOENT) &&
			!errors.Is(err, unix.ENAMETOOLONG) && !errors.Is(err, unix.EEXIST) {
			t.Fatalf("openTarget(%q): unexpected error %v", target, err)
		}
		after, err := os.ReadDir(filepath.Join(outside, "etc"))
		if err != nil || len(after) != len(outsideBefore) {
			t.Fatalf("openTarget(%q, %t) changed the tree behind the links: %v %v", target, mkParents, after, err)
		}
		if _, err := os.Lstat(filepath.Join(outside, "missing")); err == nil {
			t.Fatalf("openTarget(%q, %t) created the destination of a dangling link", target, mkParents)
		}
	})
}

func FuzzParseEphemeralAttributes(f *testing.F) {
	for _, kv := range [][2]string{{"size", "1Gi"}, {"size", "-1"}, {"size", "1e30"}, {"size", "0.5"}, {"pool", "../x"},
		{"pool", ""}, {"onDelete", "archive"}, {"csi.storage.k8s.io/pod.name", "web-0"}, {"size", "9223372036854775807"}} {
		f.Add(kv[0], kv[1])
	}
	f.Fuzz(func(t *testing.T, k, v string) {
		a, err := parseEphemeralAttributes(map[string]string{k: v, attrEphemeral: "true"})
		if err != nil {
			if st, ok := status.FromError(err); !ok || st.Code() != codes.InvalidArgument {
				t.Fatalf("refusal %v is not InvalidArgument", err)
			}
			return
		}
		switch k {
		case attrSize:
			if a.bytes <= 0 || a.bytes > maxEphemeralBytes {
				t.Fatalf("size %q accepted as %d bytes", v, a.bytes)
			}
		case attrPool:
			if a.pool == "" {
				t.Fatal("empty pool accepted")
			}
		case attrEphemeral, attrPodName, attrPodNamespace, attrPodUID, attrServiceAccount:
		default:
			t.Fatalf("attribute %q accepted", k)
		}
	})
}

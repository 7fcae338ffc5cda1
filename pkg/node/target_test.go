package node

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestTargetsOverlappingPoolsRefused(t *testing.T) {
	e := newEnv(t)
	v, dir := e.create(t, "pv-1")
	other, otherDir := e.create(t, "pv-2")
	poolRoot := filepath.Dir(filepath.Dir(dir))
	link := filepath.Join(e.pods, "link")
	if err := os.MkdirAll(e.pods, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(poolRoot, "volumes"), link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		target string
	}{
		{"pool root", poolRoot},
		{"another volume's directory", otherDir},
		{"the volume's own directory", dir},
		{"archive", filepath.Join(poolRoot, "archive")},
		{"inside trash", filepath.Join(poolRoot, ".trash", "t")},
		{"parent of the pool", filepath.Dir(poolRoot)},
		{"through a symlink into the pool", filepath.Join(link, other.ID)},
		{"dot-dot", e.target("x") + "/../../../pool/volumes/" + other.ID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.srv.NodePublishVolume(context.Background(), rwReq(v.ID, tc.target))
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("publish at %s: %v, want InvalidArgument", tc.target, err)
			}
			_, err = e.srv.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: other.ID, TargetPath: tc.target})
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("unpublish at %s: %v, want InvalidArgument", tc.target, err)
			}
			for _, d := range []string{dir, otherDir, filepath.Join(poolRoot, "archive"), filepath.Join(poolRoot, ".trash")} {
				if _, err := os.Stat(d); err != nil {
					t.Errorf("%s is gone: %v", d, err)
				}
			}
		})
	}
	if len(e.mnt.GetLog()) != 0 {
		t.Errorf("mounter was called: %v", e.mnt.GetLog())
	}
}

func TestResolve(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "real")
	if err := os.Mkdir(real, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{filepath.Join(root, "link", "a", "b"), filepath.Join(real, "a", "b")},
		{filepath.Join(root, "real"), real},
		{filepath.Join(root, "missing"), filepath.Join(root, "missing")},
	}
	for _, tc := range tests {
		if got := resolve(tc.in); got != tc.want {
			t.Errorf("resolve(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"
)

const missingID = "vol-00000000000000000000000000000000"

// mountsAt returns the fake mounts at path.
func (e *testEnv) mountsAt(path string) []mount.MountPoint {
	mps, _ := e.mnt.List()
	var out []mount.MountPoint
	for _, mp := range mps {
		if mp.Path == path {
			out = append(out, mp)
		}
	}
	return out
}

// wantMount fails unless exactly one mount of source is at target, with opts.
func wantMount(t *testing.T, e *testEnv, source, target string, opts ...string) {
	t.Helper()
	mps := e.mountsAt(target)
	if len(mps) != 1 {
		t.Fatalf("%d mounts at %s, want 1: %v", len(mps), target, mps)
	}
	if mps[0].Device != source || !slices.Equal(mps[0].Opts, opts) {
		t.Fatalf("mount at %s = %s %v, want %s %v", target, mps[0].Device, mps[0].Opts, source, opts)
	}
}

func wantNoPath(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists (Lstat: %v), want it absent", p, err)
	}
}

func TestNodePublishVolume(t *testing.T) {
	rw := csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	tests := []struct {
		name string
		// prepare sets the scene and returns the request under test.
		prepare func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest
		want    codes.Code
		check   func(t *testing.T, e *testEnv, source string, req *csi.NodePublishVolumeRequest)
	}{
		{
			name: "read-write",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				return rwReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodePublishVolumeRequest) {
				wantMount(t, e, source, req.GetTargetPath(), "bind")
				fi, err := os.Stat(req.GetTargetPath())
				if err != nil || !fi.IsDir() || fi.Mode().Perm()&^targetMode != 0 {
					t.Fatalf("target: %v %v, want a directory with mode within %o", fi, err, targetMode)
				}
			},
		},
		{
			name: "readonly field",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				r := rwReq(id, e.target("a"))
				r.Readonly = true
				return r
			},
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodePublishVolumeRequest) {
				wantMount(t, e, source, req.GetTargetPath(), "bind", "ro")
			},
		},
		{
			name: "reader-only access mode",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				return publishReq(id, e.target("a"), mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY))
			},
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodePublishVolumeRequest) {
				wantMount(t, e, source, req.GetTargetPath(), "bind", "ro")
			},
		},
		{
			name: "mount flags",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				return publishReq(id, e.target("a"), mountCap(rw, "nosuid", "noexec"))
			},
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodePublishVolumeRequest) {
				wantMount(t, e, source, req.GetTargetPath(), "bind", "nosuid", "noexec")
			},
		},
		{
			name: "existing empty target directory",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				mkdir(t, e.target("a"))
				return rwReq(id, e.target("a"))
			},
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodePublishVolumeRequest) {
				wantMount(t, e, source, req.GetTargetPath(), "bind")
			},
		},
		{
			name: "again with the same request",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				e.publish(t, rwReq(id, e.target("a")))
				return rwReq(id, e.target("a")+"/")
			},
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodePublishVolumeRequest) {
				wantMount(t, e, source, e.target("a"), "bind")
			},
		},
		{
			name: "again read-only over read-write",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				e.publish(t, rwReq(id, e.target("a")))
				r := rwReq(id, e.target("a"))
				r.Readonly = true
				return r
			},
			want: codes.AlreadyExists,
		},
		{
			name: "again read-write over read-only",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				e.publish(t, publishReq(id, e.target("a"), mountCap(rw, "ro")))
				return rwReq(id, e.target("a"))
			},
			want: codes.AlreadyExists,
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodePublishVolumeRequest) {
				wantMount(t, e, source, req.GetTargetPath(), "bind", "ro")
			},
		},
		{
			name: "single writer while published elsewhere",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				e.publish(t, rwReq(id, e.target("a")))
				return publishReq(id, e.target("b"), mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER))
			},
			want: codes.FailedPrecondition,
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodePublishVolumeRequest) {
				wantNoPath(t, req.GetTargetPath())
			},
		},
		{
			name: "single writer again at the same target",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				req := publishReq(id, e.target("a"), mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER))
				e.publish(t, req)
				return req
			},
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodePublishVolumeRequest) {
				wantMount(t, e, source, req.GetTargetPath(), "bind")
			},
		},
		{
			name: "multi writer at a second target",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				e.publish(t, rwReq(id, e.target("a")))
				return publishReq(id, e.target("b"), mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER))
			},
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodePublishVolumeRequest) {
				wantMount(t, e, source, e.target("a"), "bind")
				wantMount(t, e, source, e.target("b"), "bind")
			},
		},
		{
			name: "another volume at the target",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				other, _ := e.create(t, "v2")
				e.publish(t, rwReq(other.ID, e.target("a")))
				return rwReq(id, e.target("a"))
			},
			want: codes.FailedPrecondition,
		},
		{
			name: "something else mounted at the target",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				mkdir(t, e.target("a"))
				if err := e.mnt.Mount("/dev/sdb", e.target("a"), "ext4", nil); err != nil {
					t.Fatal(err)
				}
				return rwReq(id, e.target("a"))
			},
			want: codes.FailedPrecondition,
		},
		{
			name: "unknown volume",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				return rwReq(missingID, e.target("a"))
			},
			want: codes.NotFound,
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodePublishVolumeRequest) {
				wantNoPath(t, req.GetTargetPath())
			},
		},
		{
			name: "not a dirvol ID",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				return rwReq("pvc-1", e.target("a"))
			},
			want: codes.NotFound,
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodePublishVolumeRequest) {
				wantNoPath(t, req.GetTargetPath())
			},
		},
		{
			name: "volume directory missing",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				v, err := e.vols.Get(id)
				if err != nil {
					t.Fatal(err)
				}
				dir, _ := e.vols.Path(v)
				if err := os.Remove(dir); err != nil {
					t.Fatal(err)
				}
				return rwReq(id, e.target("a"))
			},
			want: codes.FailedPrecondition,
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodePublishVolumeRequest) {
				wantNoPath(t, req.GetTargetPath())
			},
		},
		{
			name: "target is a file",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				mkdir(t, filepath.Dir(e.target("a")))
				if err := os.WriteFile(e.target("a"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return rwReq(id, e.target("a"))
			},
			want: codes.InvalidArgument,
		},
		{
			name: "operation in flight",
			prepare: func(t *testing.T, e *testEnv, id string) *csi.NodePublishVolumeRequest {
				e.srv.targets.TryLock(publishKey{volumeID: id, targetPath: e.target("a")})
				return rwReq(id, e.target("a")+"/")
			},
			want: codes.Aborted,
			check: func(t *testing.T, e *testEnv, source string, req *csi.NodePublishVolumeRequest) {
				wantNoPath(t, e.target("a"))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			v, source := e.create(t, "v1")
			req := tt.prepare(t, e, v.ID)
			_, err := e.srv.NodePublishVolume(context.Background(), req)
			if status.Code(err) != tt.want {
				t.Fatalf("NodePublishVolume() = %v, want code %s", err, tt.want)
			}
			if tt.check != nil {
				tt.check(t, e, source, req)
			}
		})
	}
}

// failingBind fails every bind mount of e's server, as the kernel may
// (a missing mount API, a full mount table).
func failingBind(e *testEnv) {
	e.srv.binds = fakeBinder{mounter: e.mnt, bindErr: errors.New("attach the bind mount: permission denied")}
}

func TestNodePublishVolumeMountFails(t *testing.T) {
	tests := []struct {
		name          string
		targetExists  bool
		wantTargetDir bool
	}{
		{name: "target created by the publish is removed"},
		{name: "existing target is kept", targetExists: true, wantTargetDir: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			failingBind(e)
			v, _ := e.create(t, "v1")
			target := e.target("a")
			if tt.targetExists {
				mkdir(t, target)
			}
			req := rwReq(v.ID, target)
			req.Readonly = true
			_, err := e.srv.NodePublishVolume(context.Background(), req)
			checkCode(t, err, codes.Internal, "permission denied")
			if mps := e.mountsAt(target); len(mps) != 0 {
				t.Errorf("mounts left at %s: %v", target, mps)
			}
			if _, err := os.Stat(target); (err == nil) != tt.wantTargetDir {
				t.Errorf("target after failure: Stat = %v, want exists=%t", err, tt.wantTargetDir)
			}
		})
	}
}

func TestNodePublishVolumeNotRecovered(t *testing.T) {
	root := t.TempDir()
	srv, err := New(Config{NodeID: testNode}, newManager(t, root, false), mount.NewFakeMounter(nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = srv.NodePublishVolume(context.Background(), rwReq(missingID, filepath.Join(root, "t")))
	checkCode(t, err, codes.Unavailable, "recovered")
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o750); err != nil {
		t.Fatal(err)
	}
}

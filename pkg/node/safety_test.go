//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/disktree"
	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"
)

// newMountEnv is a node service with real bind mounts. Whatever a test
// leaves mounted under its directory on purpose (foreign mounts) is
// unmounted when it ends.
func newMountEnv(t *testing.T) *testEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("real bind mounts need root")
	}
	mounter := mount.New("")
	skipWithoutBindMounts(t, mounter)
	e := newEnvWith(t, mounter)
	t.Cleanup(func() { releaseUnder(e.root) })
	return e
}

// sentinel plants a tree outside every pool and pod directory that no
// request may change, and returns it with its description.
func sentinel(t *testing.T, root string) (string, map[string]string) {
	t.Helper()
	dir := filepath.Join(root, "outside")
	mkdir(t, filepath.Join(dir, "etc", "mount"))
	writeData(t, filepath.Join(dir, "etc"))
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, describe(t, dir)
}

func describe(t *testing.T, dir string) map[string]string {
	t.Helper()
	d, err := disktree.Describe(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func unchanged(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for _, d := range disktree.Diff(before, after) {
		t.Errorf("%s changed: %s", what, d)
	}
}

// mountsUnder lists the mount points at or under dir.
func mountsUnder(t *testing.T, mounter mount.Interface, dir string) []string {
	t.Helper()
	mps, err := mounter.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mp := range mps {
		if mp.Path == dir || mount.PathWithinBase(mp.Path, dir) {
			out = append(out, mp.Path)
		}
	}
	return out
}

func symlink(t *testing.T, to, link string) {
	t.Helper()
	mkdir(t, filepath.Dir(link))
	if err := os.Symlink(to, link); err != nil {
		t.Fatal(err)
	}
}

// TestSymlinkedTargetsRefused plants symbolic links in target paths, to the
// sentinel tree (standing for /etc): publish and unpublish answer
// InvalidArgument, nothing is mounted over or inside the sentinel, and
// nothing on disk changes.
func TestSymlinkedTargetsRefused(t *testing.T) {
	tests := []struct {
		name  string
		block bool
		// plant makes the links and returns the target.
		plant func(t *testing.T, e *testEnv, outside string) string
	}{
		{name: "parent is a link", plant: func(t *testing.T, e *testEnv, outside string) string {
			symlink(t, filepath.Join(outside, "etc"), filepath.Join(e.pods, "p"))
			return filepath.Join(e.pods, "p", "mount")
		}},
		{name: "target is a link", plant: func(t *testing.T, e *testEnv, outside string) string {
			symlink(t, filepath.Join(outside, "etc"), filepath.Join(e.pods, "p", "mount"))
			return filepath.Join(e.pods, "p", "mount")
		}},
		{name: "link above missing directories", plant: func(t *testing.T, e *testEnv, outside string) string {
			symlink(t, filepath.Join(outside, "etc"), filepath.Join(e.pods, "p"))
			return filepath.Join(e.pods, "p", "new", "dirs", "mount")
		}},
		{name: "relative link", plant: func(t *testing.T, e *testEnv, outside string) string {
			symlink(t, "../outside/etc", filepath.Join(e.pods, "p"))
			return filepath.Join(e.pods, "p", "mount")
		}},
		{name: "block target is a link to a file", block: true, plant: func(t *testing.T, e *testEnv, outside string) string {
			symlink(t, filepath.Join(outside, "file"), filepath.Join(e.pods, "p", "dev"))
			return filepath.Join(e.pods, "p", "dev")
		}},
		{name: "block target under a linked parent", block: true, plant: func(t *testing.T, e *testEnv, outside string) string {
			symlink(t, filepath.Join(outside, "etc"), filepath.Join(e.pods, "p"))
			return filepath.Join(e.pods, "p", "dev")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e *testEnv
			if tt.block {
				e = newRealEnv(t)
			} else {
				e = newMountEnv(t)
			}
			var req *csi.NodePublishVolumeRequest
			if tt.block {
				v, _ := e.createBlock(t, "v1", blockSize)
				req = blockReq(v.ID, "")
			} else {
				v, _ := e.create(t, "v1")
				req = rwReq(v.ID, "")
			}
			outside, sentinelBefore := sentinel(t, e.root)
			req.TargetPath = tt.plant(t, e, outside)
			before := describe(t, e.root)

			_, err := e.srv.NodePublishVolume(context.Background(), req)
			checkCode(t, err, codes.InvalidArgument, "symbolic link")
			_, err = e.srv.NodeUnpublishVolume(context.Background(), unpublishReq(req.GetVolumeId(), req.GetTargetPath()))
			checkCode(t, err, codes.InvalidArgument, "symbolic link")

			if m := mountsUnder(t, e.srv.mounter, e.root); len(m) != 0 {
				t.Errorf("mounted: %v", m)
			}
			unchanged(t, "the sentinel", sentinelBefore, describe(t, outside))
			unchanged(t, "the test directory", before, describe(t, e.root))
		})
	}
}

// TestBindLandsOnTheOpenedTarget swaps a directory of the target path for a
// link to the sentinel between opening the target and mounting on it, as
// a pod racing the publish would: the mount lands on the directory that was
// opened and checked, never behind the link.
func TestBindLandsOnTheOpenedTarget(t *testing.T) {
	e := newMountEnv(t)
	_, source := e.create(t, "v1")
	writeData(t, source)
	outside, sentinelBefore := sentinel(t, e.root)
	target := filepath.Join(e.pods, "p", "mount")
	mkdir(t, target)

	opened, err := openTarget(target, false)
	if err != nil {
		t.Fatal(err)
	}
	defer opened.Close()
	moved := filepath.Join(e.pods, "p-moved")
	if err := os.Rename(filepath.Join(e.pods, "p"), moved); err != nil {
		t.Fatal(err)
	}
	symlink(t, filepath.Join(outside, "etc"), filepath.Join(e.pods, "p"))

	if err := (kernelBinder{}).Bind(source, opened.file, []string{"ro"}); err != nil {
		t.Fatalf("Bind: %v", err)
	}
	if got := mountsUnder(t, e.srv.mounter, e.root); !slices.Equal(got, []string{filepath.Join(moved, "mount")}) {
		t.Fatalf("mounts = %v, want only %s", got, filepath.Join(moved, "mount"))
	}
	wantFile(t, filepath.Join(moved, "mount", "data"))
	unchanged(t, "the sentinel", sentinelBefore, describe(t, outside))

	// The unmount, too, acts on the opened mount, not on the path.
	if err := opened.reopenAt(moved); err != nil {
		t.Fatal(err)
	}
	if err := (kernelBinder{}).Unmount(opened.file); err != nil {
		t.Fatalf("Unmount: %v", err)
	}
	if got := mountsUnder(t, e.srv.mounter, e.root); len(got) != 0 {
		t.Fatalf("mounts after Unmount = %v, want none", got)
	}
}

// reopenAt opens the target again under another path of its parent, for a
// test that moved the parent away.
func (t *openedTarget) reopenAt(parent string) error {
	p, err := os.OpenFile(parent, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	t.parent.Close()
	t.parent = p
	return t.reopen()
}

// TestUnpublishTouchesOnlyItsOwn puts at the target what is not the
// volume's, on top of it or instead of it: unpublish never unmounts or
// removes any of it, answering OK where the volume is simply not there and
// FailedPrecondition where it cannot be reached or the target holds
// something the driver never makes.
func TestUnpublishTouchesOnlyItsOwn(t *testing.T) {
	tests := []struct {
		name string
		// prepare sets the target up and returns what must still be
		// mounted there afterwards.
		prepare func(t *testing.T, e *testEnv, id, target string) []string
		want    codes.Code
		msg     string
	}{
		{
			name: "foreign tmpfs at the target",
			prepare: func(t *testing.T, e *testEnv, id, target string) []string {
				mkdir(t, target)
				if err := e.srv.mounter.Mount("tmpfs", target, "tmpfs", []string{"size=1m"}); err != nil {
					t.Fatal(err)
				}
				writeData(t, target)
				return []string{target}
			},
		},
		{
			name: "another volume at the target",
			prepare: func(t *testing.T, e *testEnv, id, target string) []string {
				other, src := e.create(t, "v2")
				writeData(t, src)
				e.publish(t, rwReq(other.ID, target))
				return []string{target}
			},
		},
		{
			name: "foreign tmpfs over this volume",
			prepare: func(t *testing.T, e *testEnv, id, target string) []string {
				e.publish(t, rwReq(id, target))
				if err := e.srv.mounter.Mount("tmpfs", target, "tmpfs", []string{"size=1m"}); err != nil {
					t.Fatal(err)
				}
				writeData(t, target)
				return []string{target, target}
			},
			want: codes.FailedPrecondition, msg: "tmpfs",
		},
		{
			name: "FIFO",
			prepare: func(t *testing.T, e *testEnv, id, target string) []string {
				mkdir(t, filepath.Dir(target))
				if err := unix.Mkfifo(target, 0o600); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			want: codes.FailedPrecondition, msg: "FIFO",
		},
		{
			name: "device node",
			prepare: func(t *testing.T, e *testEnv, id, target string) []string {
				mkdir(t, filepath.Dir(target))
				if err := unix.Mknod(target, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			want: codes.FailedPrecondition, msg: "device node",
		},
		{
			name: "socket",
			prepare: func(t *testing.T, e *testEnv, id, target string) []string {
				mkdir(t, filepath.Dir(target))
				l, err := net.Listen("unix", target)
				if err != nil {
					t.Fatal(err)
				}
				l.(*net.UnixListener).SetUnlinkOnClose(false)
				t.Cleanup(func() { l.Close() })
				return nil
			},
			want: codes.FailedPrecondition, msg: "socket",
		},
		{
			name: "file holding data",
			prepare: func(t *testing.T, e *testEnv, id, target string) []string {
				mkdir(t, filepath.Dir(target))
				if err := os.WriteFile(target, []byte("keep me"), 0o600); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			want: codes.FailedPrecondition, msg: "left in place",
		},
		{
			name: "empty file where a directory belongs",
			prepare: func(t *testing.T, e *testEnv, id, target string) []string {
				mkdir(t, filepath.Dir(target))
				if err := os.WriteFile(target, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			want: codes.FailedPrecondition, msg: "not the target of a filesystem volume",
		},
		{
			name: "directory holding files",
			prepare: func(t *testing.T, e *testEnv, id, target string) []string {
				mkdir(t, target)
				writeData(t, target)
				return nil
			},
			want: codes.FailedPrecondition, msg: "holds files",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newMountEnv(t)
			v, _ := e.create(t, "v1")
			target := e.target("a")
			stay := tt.prepare(t, e, v.ID, target)
			mountsBefore := realMountsAt(t, e.srv.mounter, target)
			before := describe(t, e.root)

			_, err := e.srv.NodeUnpublishVolume(context.Background(), unpublishReq(v.ID, target))
			checkCode(t, err, tt.want, tt.msg)

			if got := realMountsAt(t, e.srv.mounter, target); len(got) != len(stay) || !slices.EqualFunc(got, mountsBefore, sameMount) {
				t.Errorf("mounts at the target = %v, want %v untouched", got, mountsBefore)
			}
			unchanged(t, "the test directory", before, describe(t, e.root))
		})
	}
}

// TestBlockTargetHoldingData publishes a block volume on a target that
// already holds something: refused, and the following unpublish leaves it.
func TestBlockTargetHoldingData(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T, target string)
	}{
		{"file with data", func(t *testing.T, target string) {
			if err := os.WriteFile(target, []byte("keep me"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"FIFO", func(t *testing.T, target string) {
			if err := unix.Mkfifo(target, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"directory", func(t *testing.T, target string) { mkdir(t, target) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			v, _ := e.createBlock(t, "v1", blockSize)
			target := e.target("a")
			mkdir(t, filepath.Dir(target))
			tt.make(t, target)
			before := describe(t, e.pods)
			_, err := e.srv.NodePublishVolume(context.Background(), blockReq(v.ID, target))
			checkCode(t, err, codes.InvalidArgument, "target_path")
			wantNoLeak(t, e)
			if mps := e.mountsAt(target); len(mps) != 0 {
				t.Errorf("mounted: %v", mps)
			}
			_, _ = e.srv.NodeUnpublishVolume(context.Background(), unpublishReq(v.ID, target))
			if tt.name != "directory" {
				unchanged(t, "the pods directory", before, describe(t, e.pods))
			}
		})
	}
}

// newDataDirEnv lays the node out as --pool name=default,path=P does: the
// catalog in a data directory of its own, the pool elsewhere, the data
// directory protected by Config.Protected.
func newDataDirEnv(t *testing.T, mounter mount.Interface) (e *testEnv, data string) {
	t.Helper()
	root := t.TempDir()
	data = filepath.Join(root, "data")
	cat, problems, err := catalog.Open(filepath.Join(data, "catalog"))
	if err != nil || len(problems) > 0 {
		t.Fatalf("catalog.Open: %v %v", err, problems)
	}
	mkdir(t, filepath.Join(data, "pools", "img"))
	p, err := pool.NewDir("default", filepath.Join(root, "pool"))
	if err != nil {
		t.Fatal(err)
	}
	vols, err := volume.New(cat, map[string]pool.Pool{"default": p}, "default", 1<<30, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := vols.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv, err := newServer(Config{NodeID: testNode, Protected: []string{data}}, vols, mounter, binderFor(mounter), newFakeLoops(mounter))
	if err != nil {
		t.Fatal(err)
	}
	fake, _ := mounter.(*mount.FakeMounter)
	return &testEnv{srv: srv, vols: vols, mnt: fake, loops: srv.loops, root: root, pods: filepath.Join(root, "pods")}, data
}

// TestDataDirTargetsRefused publishes at and inside the data directory when
// the default pool lives elsewhere: a pod given the catalog could read and
// plant records.
func TestDataDirTargetsRefused(t *testing.T) {
	e, data := newDataDirEnv(t, mount.NewFakeMounter(nil))
	v, _ := e.create(t, "v1")
	for _, target := range []string{
		data,
		filepath.Join(data, "catalog"),
		filepath.Join(data, "catalog", "volumes"),
		filepath.Join(data, "catalog", "new"),
		filepath.Join(data, "pools", "img"),
	} {
		t.Run(target, func(t *testing.T) {
			before := describe(t, e.root)
			_, err := e.srv.NodePublishVolume(context.Background(), rwReq(v.ID, target))
			checkCode(t, err, codes.InvalidArgument, "data directory")
			_, err = e.srv.NodeUnpublishVolume(context.Background(), unpublishReq(v.ID, target))
			checkCode(t, err, codes.InvalidArgument, "data directory")
			unchanged(t, "the test directory", before, describe(t, e.root))
		})
	}
	if log := e.mnt.GetLog(); len(log) != 0 {
		t.Errorf("mounter was called: %v", log)
	}
}

// TestDataDirAliasRefused reaches the data directory through a bind mount
// of it elsewhere, as a hostPath would: the path does not name it, its
// inode does.
func TestDataDirAliasRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("real bind mounts need root")
	}
	mounter := mount.New("")
	skipWithoutBindMounts(t, mounter)
	e, data := newDataDirEnv(t, mounter)
	t.Cleanup(func() { releaseUnder(e.root) })
	v, _ := e.create(t, "v1")
	alias := filepath.Join(e.root, "alias")
	mkdir(t, alias)
	if err := mounter.Mount(data, alias, "", []string{"bind"}); err != nil {
		t.Fatal(err)
	}
	before := describe(t, data)
	for _, target := range []string{filepath.Join(alias, "catalog"), filepath.Join(alias, "catalog", "new")} {
		_, err := e.srv.NodePublishVolume(context.Background(), rwReq(v.ID, target))
		checkCode(t, err, codes.InvalidArgument, "another mount")
	}
	unchanged(t, "the data directory", before, describe(t, data))
	if got := mountsUnder(t, mounter, e.root); !slices.Equal(got, []string{alias}) {
		t.Errorf("mounts = %v, want only the alias", got)
	}
}

// TestSingleWriterPublishRace publishes one SINGLE_NODE_SINGLE_WRITER volume
// to many targets at once, over several rounds: exactly one publish of each
// round succeeds and the volume is mounted once.
func TestSingleWriterPublishRace(t *testing.T) {
	const targets, rounds = 16, 5
	for _, real := range []bool{false, true} {
		t.Run(map[bool]string{false: "fake mounts", true: "real mounts"}[real], func(t *testing.T) {
			e := newEnv(t)
			if real {
				e = newMountEnv(t)
			}
			v, source := e.create(t, "v1")
			ctx := context.Background()
			for round := range rounds {
				var mu sync.Mutex
				var ok []string
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range targets {
					target := e.target(fmt.Sprintf("r%d-%d", round, i))
					wg.Go(func() {
						<-start
						_, err := e.srv.NodePublishVolume(ctx, publishReq(v.ID, target, mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)))
						switch status.Code(err) {
						case codes.OK:
							mu.Lock()
							ok = append(ok, target)
							mu.Unlock()
						case codes.Aborted, codes.FailedPrecondition:
						default:
							t.Errorf("publish at %s: %v", target, err)
						}
					})
				}
				close(start)
				wg.Wait()
				refs, err := e.srv.mounter.GetMountRefs(source)
				if err != nil {
					t.Fatal(err)
				}
				if len(ok) > 1 || len(refs) > 1 {
					t.Fatalf("round %d: %d publishes succeeded (%v), volume mounted at %v; want at most one", round, len(ok), ok, refs)
				}
				for _, target := range ok {
					if _, err := e.srv.NodeUnpublishVolume(ctx, unpublishReq(v.ID, target)); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

// TestUnconfiguredPool restarts the node without the pool of a volume: the
// volume is not gone, the start is missing a pool, as the controller says.
func TestUnconfiguredPool(t *testing.T) {
	root := t.TempDir()
	open := func(names ...string) *volume.Manager {
		cat, problems, err := catalog.Open(filepath.Join(root, "catalog"))
		if err != nil || len(problems) > 0 {
			t.Fatalf("catalog.Open: %v %v", err, problems)
		}
		pools := map[string]pool.Pool{}
		for _, n := range names {
			p, err := pool.NewDir(n, filepath.Join(root, n))
			if err != nil {
				t.Fatal(err)
			}
			pools[n] = p
		}
		m, err := volume.New(cat, pools, "default", 1<<30, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		return m
	}
	first := open("default", "fast")
	v, err := first.Create(context.Background(), volume.CreateRequest{Name: "pv-1", Pool: "fast", OnDelete: volume.OnDeleteDelete,
		Permissions: pool.Permissions{Mode: 0o777, UID: -1, GID: -1}})
	if err != nil {
		t.Fatal(err)
	}
	fake := mount.NewFakeMounter(nil)
	e := newEnvAt(t, root, open("default"), fake, newFakeLoops(fake))
	_, err = e.srv.NodePublishVolume(context.Background(), rwReq(v.ID, e.target("a")))
	checkCode(t, err, codes.FailedPrecondition, "--pool")
	wantNoPath(t, e.target("a"))
	// Where the volume may be mounted, its mounts cannot be recognised.
	mkdir(t, e.target("a"))
	_, err = e.srv.NodeUnpublishVolume(context.Background(), unpublishReq(v.ID, e.target("a")))
	checkCode(t, err, codes.FailedPrecondition, "--pool")
	if _, err := os.Stat(e.target("a")); err != nil {
		t.Errorf("target: %v, want it left", err)
	}
}

func sameMount(a, b mount.MountPoint) bool {
	return a.Device == b.Device && a.Path == b.Path && a.Type == b.Type && slices.Equal(a.Opts, b.Opts)
}

// TestLegacyRemount publishes through the path kernels without
// mount_setattr take (attach, then a bind remount through the attached
// mount's descriptor): the flags reach the kernel, and the pool's own
// mount keeps its flags.
func TestLegacyRemount(t *testing.T) {
	e := newMountEnv(t)
	e.srv.binds = kernelBinder{legacyRemount: true}
	v, source := e.create(t, "v1")
	ro := publishReq(v.ID, e.target("ro"), mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER, "nosuid", "noexec", "noatime"))
	ro.Readonly = true
	e.publish(t, ro)
	rw := publishReq(v.ID, e.target("rw"), mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER))
	e.publish(t, rw)

	if err := os.WriteFile(filepath.Join(e.target("ro"), "x"), nil, 0o600); !errors.Is(err, unix.EROFS) {
		t.Errorf("write through the read-only target: %v, want EROFS", err)
	}
	if mps := realMountsAt(t, e.srv.mounter, e.target("ro")); len(mps) != 1 || !hasAll(mps[0].Opts, "ro", "nosuid", "noexec", "noatime") {
		t.Errorf("mount at the read-only target = %v, want ro,nosuid,noexec,noatime", mps)
	}
	if err := os.WriteFile(filepath.Join(e.target("rw"), "x"), []byte("data"), 0o600); err != nil {
		t.Errorf("write through the read-write target: %v", err)
	}
	if err := os.WriteFile(filepath.Join(source, "y"), nil, 0o600); err != nil {
		t.Errorf("the volume's directory became read-only: %v", err)
	}
	for _, target := range []string{e.target("ro"), e.target("rw")} {
		if _, err := e.srv.NodeUnpublishVolume(context.Background(), unpublishReq(v.ID, target)); err != nil {
			t.Fatal(err)
		}
		wantNoPath(t, target)
	}
}

// TestPublishWhileDeleting publishes a volume the volume core is deleting
// (holding it): Aborted, and nothing is mounted.
func TestPublishWhileDeleting(t *testing.T) {
	e := newEnv(t)
	v, _ := e.create(t, "v1")
	release, err := e.vols.Hold(v.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.srv.NodePublishVolume(context.Background(), rwReq(v.ID, e.target("a")))
	checkCode(t, err, codes.Aborted, "being deleted")
	wantNoPath(t, e.target("a"))
	release()
	e.publish(t, rwReq(v.ID, e.target("a")))
	if err := e.vols.Delete(context.Background(), v.ID); err != nil {
		t.Fatalf("Delete without a mount checker: %v", err)
	}
}

//go:build linux

package node

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/internal/disktree"
	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/internal/mountuse"
	"github.com/dirvol/dirvol/pkg/volume"
	"golang.org/x/sys/unix"
)

// These tests attach block volumes as a driver whose container has since
// restarted did: through a mount of the pool that is no longer in any mount
// table. The
// kernel then reports the backing file relative to that mount's root
// (/volumes/vol-.../block.img), a path in no pool, and only the file's
// device and inode numbers still tie the device to its volume.

// attachFromGoneMount attaches file, which lies under dir, to a loop
// device through a bind mount of dir, as a driver container sees the pool,
// and then detaches that mount from the mount table (MNT_DETACH), as the
// end of the container's mount namespace does: the device keeps the mount
// alive, unreachable. It returns the device as the kernel then describes
// it, and detaches it when the test ends if it is still attached (the
// package's leak check matches backing files by path and would miss it).
func attachFromGoneMount(t *testing.T, file, dir string) loopdev.Device {
	t.Helper()
	alias := filepath.Join(t.TempDir(), "container-view")
	if err := os.Mkdir(alias, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dir, alias, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("bind-mount %s: %v", dir, err)
	}
	rel, err := filepath.Rel(dir, file)
	if err != nil {
		t.Fatal(err)
	}
	d, err := loopdev.New().Attach(filepath.Join(alias, rel), loopdev.Options{})
	if uerr := unix.Unmount(alias, unix.MNT_DETACH); uerr != nil {
		t.Errorf("detach the mount %s: %v", alias, uerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// By the path the kernel reports, since the file may have been
		// moved or removed: the volume's directory name is unique.
		tail := "/" + filepath.Base(filepath.Dir(file)) + "/" + filepath.Base(file)
		all, _ := loopdev.New().List()
		if slices.ContainsFunc(all, func(o loopdev.Device) bool {
			return o.Path == d.Path && strings.HasSuffix(o.BackingFile, tail)
		}) {
			t.Errorf("device %s of %s left attached; detaching it", d.Path, file)
			_ = loopdev.New().Detach(d.Path)
		}
	})
	devs, err := loopdev.New().Find(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].Path != d.Path {
		t.Fatalf("devices of %s: %+v, want %s", file, devs, d.Path)
	}
	if want := "/" + rel; devs[0].BackingFile != want {
		t.Fatalf("device %s reports its file as %s once the mount it was reached by is gone, want %s", d.Path, devs[0].BackingFile, want)
	}
	return devs[0]
}

// newRestartEnv is a real node service whose volume core refuses to delete
// a volume in use, as cmd/driver wires it.
func newRestartEnv(t *testing.T) (*testEnv, string) {
	t.Helper()
	mounter := needRealBlock(t)
	root := t.TempDir()
	t.Cleanup(func() { releaseEnv(t, root) })
	loops := loopdev.New()
	vols := newManager(t, root, true, volume.WithUseChecker(mountuse.New(mounter, loops)))
	return newEnvAt(t, root, vols, mounter, loops), filepath.Join(root, "pool")
}

// TestRealBlockUnpublishAfterRestart publishes a block volume whose device
// a previous driver container attached: unpublish detaches it.
func TestRealBlockUnpublishAfterRestart(t *testing.T) {
	e, poolDir := newRestartEnv(t)
	v, file := e.createBlock(t, "v1", blockSize)
	d := attachFromGoneMount(t, file, poolDir)

	e.publish(t, blockReq(v.ID, e.target("a")))
	if got := realDevice(t, e, e.target("a")); got.Path != d.Path {
		t.Fatalf("published device %s, want the attached %s reused", got.Path, d.Path)
	}
	data := pattern(4096)
	if err := writeDevice(t, e.target("a"), data, 0); err != nil {
		t.Fatal(err)
	}
	unpublish(t, e, v.ID, e.target("a"))
	wantNoRealDevices(t, e, file)
	if got := readDevice(t, file, len(data), 0); !bytes.Equal(got, data) {
		t.Fatal("the file does not hold what was written to the device")
	}
	if err := e.vols.Delete(context.Background(), v.ID); err != nil {
		t.Fatalf("Delete after unpublish: %v", err)
	}
}

// TestRealBlockSweepAfterRestart leaves such a device attached and
// unmounted: Recover, and a later Sweep, detach it.
func TestRealBlockSweepAfterRestart(t *testing.T) {
	for _, sweep := range []string{"Recover", "Sweep"} {
		t.Run(sweep, func(t *testing.T) {
			e, poolDir := newRestartEnv(t)
			_, file := e.createBlock(t, "v1", blockSize)
			attachFromGoneMount(t, file, poolDir)
			call := e.srv.Recover
			if sweep == "Sweep" {
				call = e.srv.Sweep
			}
			if err := call(context.Background()); err != nil {
				t.Fatalf("%s() = %v", sweep, err)
			}
			wantNoRealDevices(t, e, file)
		})
	}
}

// TestRealBlockDeleteRefusedWhileAttached: a block volume with a loop
// device attached to its file is in use even when the device is mounted
// nowhere (a detach failed or was deferred, or the device is the previous
// container's): DeleteVolume refuses it, naming the device, and changes
// nothing on disk; once a sweep has detached it, the delete goes ahead.
func TestRealBlockDeleteRefusedWhileAttached(t *testing.T) {
	e, poolDir := newRestartEnv(t)
	ctx := context.Background()
	v, file := e.createBlock(t, "v1", blockSize)
	d := attachFromGoneMount(t, file, poolDir)

	before, err := disktree.Describe(e.root)
	if err != nil {
		t.Fatal(err)
	}
	err = e.vols.Delete(ctx, v.ID)
	if !errors.Is(err, volume.ErrInUse) || !strings.Contains(err.Error(), d.Path) {
		t.Fatalf("Delete of a volume with an attached device = %v, want ErrInUse naming %s", err, d.Path)
	}
	after, err := disktree.Describe(e.root)
	if err != nil {
		t.Fatal(err)
	}
	if diff := disktree.Diff(before, after); len(diff) > 0 {
		t.Fatalf("a refused delete changed the disk:\n%s", strings.Join(diff, "\n"))
	}
	wantLive(t, e, file, 1)

	if err := e.srv.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	wantNoRealDevices(t, e, file)
	if err := e.vols.Delete(ctx, v.ID); err != nil {
		t.Fatalf("Delete once the device is detached: %v", err)
	}
}

//go:build linux

package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/internal/loopdev"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"
)

// These tests publish block volumes through the kernel's loop devices and
// real bind mounts: what the fakes cannot show is that a pod writing to the
// target writes the volume's file, that a read-only target refuses writes,
// that the mount table really finds the bind mounts of a device, that a
// device takes its file's new size, and that nothing is left attached.

// newRealEnv returns a node service over the real mounter and loop
// devices, and releases, when the test ends, whatever is still mounted or
// attached under its directory, failing the test when it finds anything.
func newRealEnv(t *testing.T) *testEnv {
	t.Helper()
	mounter := needRealBlock(t)
	e := newEnvWith(t, mounter)
	t.Cleanup(func() { releaseEnv(t, e.root) })
	return e
}

// needRealBlock skips the test where root cannot bind-mount or attach loop
// devices, and returns the real mounter.
func needRealBlock(t *testing.T) mount.Interface {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("real loop devices and bind mounts need root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop devices here: %v", err)
	}
	mounter := mount.New("")
	skipWithoutBindMounts(t, mounter)
	return mounter
}

// releaseEnv unmounts and detaches what a test left under root. Leftovers
// fail the test, unless it failed already.
func releaseEnv(t *testing.T, root string) {
	t.Helper()
	left := releaseUnder(root)
	if len(left) > 0 && !t.Failed() {
		t.Errorf("left behind: %s", strings.Join(left, "; "))
	}
}

// realDevice returns the loop device published at target.
func realDevice(t *testing.T, e *testEnv, target string) loopdev.Device {
	t.Helper()
	d, ok, err := e.loops.At(target)
	if err != nil || !ok {
		t.Fatalf("At(%s) = %+v, %t, %v; want a loop device", target, d, ok, err)
	}
	return d
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/4093)
	}
	return b
}

func writeDevice(t *testing.T, path string, b []byte, off int64) error {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		return err
	}
	return f.Sync()
}

func readDevice(t *testing.T, path string, n int, off int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return b
}

// wantLive fails unless n loop devices are attached to file, and returns
// them. A detach can be deferred by the kernel while another program (a
// concurrent losetup or mount -o loop scanning the devices) has the device
// open for a moment: the device is then marked autoclear and goes at that
// program's close. Such devices are waited for, a few seconds at most.
func wantLive(t *testing.T, e *testEnv, file string, n int) []loopdev.Device {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		devs := e.devicesOf(t, file)
		closing := slices.ContainsFunc(devs, func(d loopdev.Device) bool { return d.Autoclear })
		if !closing || time.Now().After(deadline) {
			if len(devs) != n || closing {
				t.Fatalf("loop devices attached to %s: %+v, want %d without autoclear", file, devs, n)
			}
			return devs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func wantNoRealDevices(t *testing.T, e *testEnv, file string) {
	t.Helper()
	wantLive(t, e, file, 0)
}

func unpublish(t *testing.T, e *testEnv, id, target string) {
	t.Helper()
	if _, err := e.srv.NodeUnpublishVolume(context.Background(), unpublishReq(id, target)); err != nil {
		t.Fatalf("NodeUnpublishVolume(%s): %v", target, err)
	}
	wantNoPath(t, target)
}

func TestRealBlockRoundTrip(t *testing.T) {
	e := newRealEnv(t)
	ctx := context.Background()
	v, file := e.createBlock(t, "v1", blockSize)
	a, b, c := e.target("a"), e.target("b"), e.target("c")
	data := pattern(1 << 20)

	// Publish: the target is the device, of the volume's size; what is
	// written there is in the volume's file.
	e.publish(t, blockReq(v.ID, a))
	d := realDevice(t, e, a)
	if size, err := e.loops.Size(d.Path); err != nil || size != blockSize {
		t.Fatalf("device size = %d, %v; want %d", size, err, blockSize)
	}
	if err := writeDevice(t, a, data, 1<<20); err != nil {
		t.Fatalf("write through the target: %v", err)
	}
	if got := readDevice(t, file, len(data), 1<<20); !bytes.Equal(got, data) {
		t.Fatal("the volume's file does not hold what was written through the target")
	}

	// A second target shares the device; a repeated publish changes nothing.
	e.publish(t, blockReq(v.ID, b))
	e.publish(t, blockReq(v.ID, a))
	if db := realDevice(t, e, b); db.Path != d.Path {
		t.Fatalf("second target got %s, want the shared %s", db.Path, d.Path)
	}
	if n := realMountsAt(t, mount.New(""), a); len(n) != 1 {
		t.Fatalf("mounts at %s after a repeated publish: %v, want 1", a, n)
	}

	// A read-only target gets a read-only device: the data is there and
	// writes are refused, though a read-only bind mount alone would let them
	// through.
	e.publish(t, roBlockReq(v.ID, c))
	dc := realDevice(t, e, c)
	if !dc.ReadOnly || dc.Path == d.Path {
		t.Fatalf("read-only target got %+v, want a read-only device of its own", dc)
	}
	if got := readDevice(t, c, len(data), 1<<20); !bytes.Equal(got, data) {
		t.Fatal("the read-only target does not show the volume's data")
	}
	if err := writeDevice(t, c, []byte("nope"), 0); err == nil {
		t.Fatal("writing through a read-only target succeeded")
	}
	wantLive(t, e, file, 2)

	// Stats and health see the published targets only.
	for path, want := range map[string]codes.Code{a: codes.OK, c: codes.OK, e.target("none"): codes.NotFound, file: codes.NotFound} {
		resp, err := e.srv.NodeGetVolumeStats(ctx, statsReq(v.ID, path))
		checkCode(t, err, want, "")
		if err == nil && resp.GetUsage()[0].GetTotal() != blockSize {
			t.Errorf("NodeGetVolumeStats(%s) total = %d, want %d", path, resp.GetUsage()[0].GetTotal(), blockSize)
		}
	}
	h, err := e.srv.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: v.ID, VolumePublishPath: b})
	if err != nil || len(h.GetVolumeHealth().GetHealthStatuses()) != 0 {
		t.Fatalf("NodeGetVolumeHealth() = %v, %v; want healthy", h, err)
	}

	// Unpublish: the read-write device stays while a target uses it.
	unpublish(t, e, v.ID, a)
	wantLive(t, e, file, 2)
	unpublish(t, e, v.ID, c)
	wantLive(t, e, file, 1)
	unpublish(t, e, v.ID, b)
	unpublish(t, e, v.ID, b)
	wantNoRealDevices(t, e, file)

	// Publish again: the data is still there.
	e.publish(t, blockReq(v.ID, a))
	if got := readDevice(t, a, len(data), 1<<20); !bytes.Equal(got, data) {
		t.Fatal("data written before an unpublish is gone after publishing again")
	}

	// Expand while published: the device takes the new size at once.
	resp, err := e.srv.NodeExpandVolume(ctx, expandReq(v.ID, a, 2*blockSize, 0))
	if err != nil || resp.GetCapacityBytes() != 2*blockSize {
		t.Fatalf("NodeExpandVolume() = %v, %v; want %d bytes", resp, err, 2*blockSize)
	}
	if size, _ := e.loops.Size(realDevice(t, e, a).Path); size != 2*blockSize {
		t.Fatalf("device size after NodeExpandVolume = %d, want %d", size, 2*blockSize)
	}
	if err := writeDevice(t, a, data, 2*blockSize-int64(len(data))); err != nil {
		t.Fatalf("write to the grown end of the device: %v", err)
	}
	if st, err := e.srv.NodeGetVolumeStats(ctx, statsReq(v.ID, a)); err != nil || st.GetUsage()[0].GetTotal() != 2*blockSize {
		t.Fatalf("NodeGetVolumeStats() after expansion = %v, %v; want total %d", st, err, 2*blockSize)
	}
	unpublish(t, e, v.ID, a)
	wantNoRealDevices(t, e, file)
	if got := readDevice(t, file, len(data), 2*blockSize-int64(len(data))); !bytes.Equal(got, data) {
		t.Fatal("the grown part of the file does not hold what was written")
	}
}

// TestRealBlockFailedPublish checks that a publish that fails after it
// attached a device detaches it again.
func TestRealBlockFailedPublish(t *testing.T) {
	e := newRealEnv(t)
	ctx := context.Background()
	v, file := e.createBlock(t, "v1", blockSize)
	fsVol, _ := e.create(t, "fs")

	danglingParent(t, e, e.target("a"))
	_, err := e.srv.NodePublishVolume(ctx, blockReq(v.ID, e.target("a")))
	checkCode(t, err, codes.InvalidArgument, "symbolic link")
	wantNoRealDevices(t, e, file)

	mkdir(t, e.target("b"))
	_, err = e.srv.NodePublishVolume(ctx, blockReq(v.ID, e.target("b")))
	checkCode(t, err, codes.InvalidArgument, "directory")
	wantNoRealDevices(t, e, file)

	_, err = e.srv.NodePublishVolume(ctx, rwReq(v.ID, e.target("c")))
	checkCode(t, err, codes.InvalidArgument, "block volume")
	_, err = e.srv.NodePublishVolume(ctx, blockReq(fsVol.ID, e.target("c")))
	checkCode(t, err, codes.InvalidArgument, "filesystem volume")
	wantNoRealDevices(t, e, file)
	wantNoPath(t, e.target("c"))
}

// TestRealBlockConcurrentPublish publishes one volume at several targets
// at once, then unpublishes them at once: one device, then none.
func TestRealBlockConcurrentPublish(t *testing.T) {
	e := newRealEnv(t)
	v, file := e.createBlock(t, "v1", blockSize)
	const n = 6
	retry := func(call func() error) error {
		for {
			err := call()
			if status.Code(err) != codes.Aborted {
				return err
			}
		}
	}
	run := func(op func(target string) error) {
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { errs[i] = retry(func() error { return op(e.target(fmt.Sprint(i))) }) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	run(func(target string) error {
		req := publishReq(v.ID, target, blockCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER))
		_, err := e.srv.NodePublishVolume(ctx, req)
		return err
	})
	d := wantLive(t, e, file, 1)[0]
	for i := range n {
		if got := realDevice(t, e, e.target(fmt.Sprint(i))); got.Path != d.Path {
			t.Fatalf("target %d has %s, want the shared %s", i, got.Path, d.Path)
		}
	}
	run(func(target string) error {
		_, err := e.srv.NodeUnpublishVolume(ctx, unpublishReq(v.ID, target))
		return err
	})
	wantNoRealDevices(t, e, file)
}

// TestRealBlockRestart leaves devices behind as a crash would and starts a
// new node service over the same pool: Recover detaches the devices of pool
// files that nothing uses, keeps the one a target still uses, and never
// touches devices another program made for files outside the pools.
func TestRealBlockRestart(t *testing.T) {
	mounter := needRealBlock(t)
	ctx := context.Background()
	root := t.TempDir()
	t.Cleanup(func() { releaseEnv(t, root) })
	e := newEnvAt(t, root, newManager(t, root, true), mounter, loopdev.New())

	published, publishedFile := e.createBlock(t, "published", blockSize)
	left, leftFile := e.createBlock(t, "left", blockSize)
	deleted, deletedFile := e.createBlock(t, "deleted", blockSize)
	data := pattern(64 << 10)

	e.publish(t, blockReq(published.ID, e.target("a")))
	if err := writeDevice(t, e.target("a"), data, 0); err != nil {
		t.Fatal(err)
	}
	// A crash between the unmount and the detach of an unpublish.
	e.publish(t, blockReq(left.ID, e.target("b")))
	if err := mounter.Unmount(e.target("b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(e.target("b")); err != nil {
		t.Fatal(err)
	}
	// A device whose volume was deleted meanwhile: its file is gone.
	e.attach(t, deletedFile, loopdev.Options{})
	if err := e.vols.Delete(ctx, deleted.ID); err != nil {
		t.Fatal(err)
	}
	// Devices other programs made for files outside the pools, one of them
	// bind-mounted nowhere and unused: they must stay.
	other := t.TempDir()
	foreign := make(map[string]string)
	for i, attach := range []func(string) (string, error){
		func(f string) (string, error) {
			d, err := loopdev.New().Attach(f, loopdev.Options{})
			return d.Path, err
		},
		func(f string) (string, error) {
			out, err := exec.Command("losetup", "--find", "--show", f).Output()
			return strings.TrimSpace(string(out)), err
		},
	} {
		f := filepath.Join(other, fmt.Sprintf("foreign%d.img", i))
		if err := os.WriteFile(f, make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		dev, err := attach(f)
		if errors.Is(err, exec.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		foreign[dev] = f
	}
	t.Cleanup(func() {
		for dev := range foreign {
			if err := loopdev.New().Detach(dev); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	publishedDev := realDevice(t, e, e.target("a"))

	// Restart: a new volume manager over the same catalog, a new node
	// service.
	e2 := newEnvAt(t, root, newManager(t, root, true), mounter, loopdev.New())
	if err := e2.srv.Recover(ctx); err != nil {
		t.Fatalf("Recover() = %v", err)
	}
	wantNoRealDevices(t, e2, leftFile)
	all, err := e2.loops.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range all {
		if strings.HasPrefix(d.BackingFile, filepath.Dir(deletedFile)) {
			t.Fatalf("device %s of the deleted volume's file is still attached", d.Path)
		}
	}
	for dev, f := range foreign {
		if found := e2.devicesOf(t, f); len(found) != 1 || found[0].Path != dev {
			t.Fatalf("foreign device %s of %s after Recover: %+v, want it untouched", dev, f, found)
		}
	}
	if d := wantLive(t, e2, publishedFile, 1)[0]; d.Path != publishedDev.Path {
		t.Fatalf("published volume's device is %s, want %s kept", d.Path, publishedDev.Path)
	}
	if got := readDevice(t, e2.target("a"), len(data), 0); !bytes.Equal(got, data) {
		t.Fatal("the published target lost its data across the restart")
	}

	// The new service unpublishes what the old one published.
	unpublish(t, e2, published.ID, e2.target("a"))
	wantNoRealDevices(t, e2, publishedFile)
}

package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/internal/mountuse"
	"github.com/dirvol/dirvol/pkg/volume"
	mount "k8s.io/mount-utils"
)

func (e *testEnv) attach(t *testing.T, file string, opts loopdev.Options) loopdev.Device {
	t.Helper()
	d, err := e.loops.Attach(file, opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRecover(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	published, _ := e.createBlock(t, "published", blockSize)
	_, leftFile := e.createBlock(t, "left", blockSize)
	deleted, deletedFile := e.createBlock(t, "deleted", blockSize)
	busy, busyFile := e.createBlock(t, "busy", blockSize)
	_, closingFile := e.createBlock(t, "closing", blockSize)
	foreignFile := filepath.Join(t.TempDir(), "other-program.img")
	if err := os.WriteFile(foreignFile, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}

	e.publish(t, blockReq(published.ID, e.target("a")))
	keep := []string{wantDevices(t, e, mustBlockPath(t, e, published.ID), 1)[0].Path}
	drop := []string{
		e.attach(t, leftFile, loopdev.Options{}).Path,
		e.attach(t, leftFile, loopdev.Options{ReadOnly: true}).Path,
		e.attach(t, deletedFile, loopdev.Options{}).Path,
	}
	if err := e.vols.Delete(ctx, deleted.ID); err != nil {
		t.Fatal(err)
	}
	keep = append(keep,
		e.attach(t, busyFile, loopdev.Options{}).Path,
		e.attach(t, foreignFile, loopdev.Options{}).Path,
	)
	closing := e.attach(t, closingFile, loopdev.Options{})
	e.fakeLoops().set(closing.Path, func(d *loopdev.Device) { d.Autoclear = true })
	keep = append(keep, closing.Path)
	e.srv.volumes.TryLock(busy.ID)

	if err := e.srv.Recover(ctx); err != nil {
		t.Fatalf("Recover() = %v", err)
	}
	devs, _ := e.loops.List()
	var left []string
	for _, d := range devs {
		left = append(left, d.Path)
	}
	slices.Sort(left)
	slices.Sort(keep)
	if !slices.Equal(left, keep) {
		t.Fatalf("devices after Recover: %v, want %v (detached: %v)", left, keep, drop)
	}

	// Once the volume is no longer busy, the next start detaches its device.
	e.srv.volumes.Unlock(busy.ID)
	if err := e.srv.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	wantDevices(t, e, busyFile, 0)
	wantDevices(t, e, foreignFile, 1)
}

func TestRecoverNotRecovered(t *testing.T) {
	srv, err := newServer(Config{NodeID: testNode}, newManager(t, t.TempDir(), false), mount.NewFakeMounter(nil), kernelBinder{}, newFakeLoops(mount.NewFakeMounter(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Recover(context.Background()); err == nil {
		t.Fatal("Recover() before the volume manager recovered = nil, want an error")
	}
}

func mustBlockPath(t *testing.T, e *testEnv, id string) string {
	t.Helper()
	v, err := e.vols.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.vols.BlockPath(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunSweeps: Run detaches, at its interval, a device that nothing uses
// and that was attached after the start (a detach that failed at
// unpublish), keeps a published volume's device, and returns when its
// context ends.
func TestRunSweeps(t *testing.T) {
	e := newEnv(t)
	published, _ := e.createBlock(t, "published", blockSize)
	_, leftFile := e.createBlock(t, "left", blockSize)
	e.publish(t, blockReq(published.ID, e.target("a")))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Run(ctx, 5*time.Millisecond) }()
	e.attach(t, leftFile, loopdev.Options{})
	for deadline := time.Now().Add(10 * time.Second); len(e.devicesOf(t, leftFile)) > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not detach the unused device within 10s")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}
	wantDevices(t, e, mustBlockPath(t, e, published.ID), 1)
	if err := e.srv.Run(context.Background(), 0); err == nil {
		t.Fatal("Run with interval 0 = nil, want an error")
	}
}

// TestDeferredDetachKeepsVolume: at unpublish the kernel defers the detach
// of the volume's device because a program holds it open (the kubelet's
// own loop device on the published device node does): the unpublish
// succeeds, but DeleteVolume refuses the volume, naming the device, until
// the device is gone.
func TestDeferredDetachKeepsVolume(t *testing.T) {
	mounter := mount.NewFakeMounter(nil)
	loops := newFakeLoops(mounter)
	root := t.TempDir()
	vols := newManager(t, root, true, volume.WithUseChecker(mountuse.New(mounter, loops)))
	e := newEnvAt(t, root, vols, mounter, loops)
	ctx := context.Background()
	v, file := e.createBlock(t, "v1", blockSize)
	e.publish(t, blockReq(v.ID, e.target("a")))
	dev := wantDevices(t, e, file, 1)[0]

	loops.mu.Lock()
	loops.detachErr = fmt.Errorf("detach %s: %w", dev.Path, loopdev.ErrDeferred)
	loops.mu.Unlock()
	if _, err := e.srv.NodeUnpublishVolume(ctx, unpublishReq(v.ID, e.target("a"))); err != nil {
		t.Fatalf("NodeUnpublishVolume with the detach deferred: %v", err)
	}
	loops.set(dev.Path, func(d *loopdev.Device) { d.Autoclear = true })
	err := e.vols.Delete(ctx, v.ID)
	if !errors.Is(err, volume.ErrInUse) || !strings.Contains(err.Error(), dev.Path) {
		t.Fatalf("Delete with the device still attached = %v, want ErrInUse naming %s", err, dev.Path)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the refused delete touched the volume's file: %v", err)
	}

	// The holder closes the device: the kernel detaches it.
	loops.mu.Lock()
	loops.detachErr = nil
	loops.mu.Unlock()
	if err := loops.Detach(dev.Path); err != nil {
		t.Fatal(err)
	}
	if err := e.vols.Delete(ctx, v.ID); err != nil {
		t.Fatalf("Delete once the device is gone: %v", err)
	}
}

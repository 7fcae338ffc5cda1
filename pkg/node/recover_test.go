package node

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/loopdev"
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

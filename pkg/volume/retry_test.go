package volume

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"golang.org/x/sys/unix"
)

// readOnlyPool refuses every write with EROFS while ro is set, as a pool
// whose filesystem was remounted read-only for a while does: making a
// volume or snapshot fails, and so does removing what a failed attempt may
// have left.
type readOnlyPool struct {
	pool.Pool
	ro *atomic.Bool
}

func (p readOnlyPool) refuse(op, id string) error {
	if p.ro.Load() {
		return fmt.Errorf("%s %s: %w", op, id, unix.EROFS)
	}
	return nil
}

func (p readOnlyPool) Create(id string, spec pool.VolumeSpec) error {
	if err := p.refuse("create", id); err != nil {
		return err
	}
	return p.Pool.Create(id, spec)
}

func (p readOnlyPool) Remove(id string) error {
	if err := p.refuse("remove", id); err != nil {
		return err
	}
	return p.Pool.Remove(id)
}

func (p readOnlyPool) Snapshot(volID, snapID string) error {
	if err := p.refuse("snapshot", snapID); err != nil {
		return err
	}
	return p.Pool.Snapshot(volID, snapID)
}

func (p readOnlyPool) RemoveSnapshot(snapID string) error {
	if err := p.refuse("remove snapshot", snapID); err != nil {
		return err
	}
	return p.Pool.RemoveSnapshot(snapID)
}

// A create that fails on a pool that is read-only for a while, and cannot
// roll back either, must not hold its name: while the pool still refuses,
// a retry says so (not ErrBusy); once the pool accepts writes again, a
// retry succeeds without a restart.
func TestRetryAfterTransientPoolFault(t *testing.T) {
	e := newEnv(t)
	var ro atomic.Bool
	e.pools["default"] = readOnlyPool{Pool: e.dirs["default"], ro: &ro}
	m := e.recovered(t)
	ctx := context.Background()
	src := mustCreate(t, m, request("pv-src"))
	writeFile(t, filepath.Join(e.volPath("default", src.ID), "data"), "source")
	before := tree(t, e.root)

	ro.Store(true)
	if _, err := m.Create(ctx, request("pv-1")); !errors.Is(err, unix.EROFS) {
		t.Fatalf("Create on a read-only pool = %v, want EROFS", err)
	}
	if _, err := m.CreateSnapshot(ctx, snapRequest("snap-1", src.ID)); !errors.Is(err, unix.EROFS) {
		t.Fatalf("CreateSnapshot on a read-only pool = %v, want EROFS", err)
	}
	for range 2 {
		if _, err := m.Create(ctx, request("pv-1")); errors.Is(err, ErrBusy) || !errors.Is(err, unix.EROFS) {
			t.Errorf("retried Create while the pool is read-only = %v, want EROFS, not ErrBusy", err)
		}
		if _, err := m.CreateSnapshot(ctx, snapRequest("snap-1", src.ID)); errors.Is(err, ErrBusy) || !errors.Is(err, unix.EROFS) {
			t.Errorf("retried CreateSnapshot while the pool is read-only = %v, want EROFS, not ErrBusy", err)
		}
	}
	if _, err := m.Get(src.ID); err != nil {
		t.Errorf("the source volume is gone: %v", err)
	}

	ro.Store(false)
	v, err := m.Create(ctx, request("pv-1"))
	// The rollback of what the failed attempts left removed nothing but
	// their own records: all else is as it was, plus the new volume.
	sameTree(t, "disk", without(before, "catalog"),
		without(tree(t, e.root), "catalog", "pools/default/volumes/"+v.ID))
	if err != nil || v.State != catalog.StateReady {
		t.Fatalf("Create once the pool is writable = %+v, %v", v, err)
	}
	s, err := m.CreateSnapshot(ctx, snapRequest("snap-1", src.ID))
	if err != nil || s.State != catalog.StateReady {
		t.Fatalf("CreateSnapshot once the pool is writable = %+v, %v", s, err)
	}
	if n := len(m.cat.List()); n != 2 {
		t.Errorf("catalog holds %d volume records, want 2: %+v", n, m.cat.List())
	}
	if n := len(m.cat.ListSnapshots()); n != 1 {
		t.Errorf("catalog holds %d snapshot records, want 1: %+v", n, m.cat.ListSnapshots())
	}
	if again, err := m.Create(ctx, request("pv-1")); err != nil || again.ID != v.ID {
		t.Errorf("idempotent Create = %+v, %v, want %s", again, err, v.ID)
	}
	if c, _ := m.Capacity(""); c.Promised != src.CapacityBytes+v.CapacityBytes {
		t.Errorf("promised %d bytes, want the two volumes' %d", c.Promised, src.CapacityBytes+v.CapacityBytes)
	}
}

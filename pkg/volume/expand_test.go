package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
)

func TestExpand(t *testing.T) {
	const avail = int64(100 << 20)
	tests := []struct {
		name              string
		block             bool
		required, limit   int64
		wantBytes         int64 // capacity afterwards
		wantErr           error
		words             []string
		wantPromisedAfter int64
	}{
		{name: "grow", required: 20 << 20, wantBytes: 20 << 20, wantPromisedAfter: 20 << 20},
		{name: "grow within limit", required: 20 << 20, limit: 30 << 20, wantBytes: 20 << 20, wantPromisedAfter: 20 << 20},
		{name: "grow block", block: true, required: 20 << 20, wantBytes: 20 << 20, wantPromisedAfter: 20 << 20},
		{name: "same size", required: 10 << 20, wantBytes: 10 << 20, wantPromisedAfter: 10 << 20},
		{name: "smaller required", required: 1 << 20, wantBytes: 10 << 20, wantPromisedAfter: 10 << 20},
		{name: "no required", limit: 50 << 20, wantBytes: 10 << 20, wantPromisedAfter: 10 << 20},
		{name: "limit below current", required: 1 << 20, limit: 5 << 20, wantBytes: 10 << 20, wantErr: ErrOutOfRange,
			words: []string{"limit_bytes 5Mi", "10Mi", "cannot shrink"}, wantPromisedAfter: 10 << 20},
		{name: "all that is left", required: avail, wantBytes: avail, wantPromisedAfter: avail},
		{name: "more than the pool can promise", required: avail + 1, wantBytes: 10 << 20, wantErr: ErrNoSpace,
			words: []string{"can promise 90Mi", "filesystem free 100Mi"}, wantPromisedAfter: 10 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.pools["default"] = fixedStat{Pool: e.pools["default"], fs: pool.FS{AvailableBytes: avail, TotalBytes: 200 << 20}}
			m := e.recovered(t)
			req := request("pv-1")
			req.Block = tt.block
			v := mustCreate(t, m, req)
			before := tree(t, e.root)
			got, err := m.Expand(context.Background(), v.ID, tt.required, tt.limit)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Expand = %v, want %v", err, tt.wantErr)
			}
			for _, w := range tt.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if err == nil && got.CapacityBytes != tt.wantBytes {
				t.Errorf("Expand returned capacity %d, want %d", got.CapacityBytes, tt.wantBytes)
			}
			if tt.wantBytes == v.CapacityBytes {
				sameTree(t, "disk", before, tree(t, e.root))
			}
			for _, m := range []*Manager{m, e.recovered(t)} {
				if r, err := m.Get(v.ID); err != nil || r.CapacityBytes != tt.wantBytes {
					t.Errorf("record = %+v, %v; want capacity %d", r, err, tt.wantBytes)
				}
			}
			if c, _ := m.Capacity(""); c.Promised != tt.wantPromisedAfter {
				t.Errorf("promised %d, want %d", c.Promised, tt.wantPromisedAfter)
			}
			if tt.block {
				fi, err := os.Stat(filepath.Join(e.volPath("default", v.ID), pool.BlockFile))
				if err != nil || fi.Size() != tt.wantBytes {
					t.Errorf("block file %v, %v; want %d bytes", fi, err, tt.wantBytes)
				}
			}
		})
	}
}

func TestExpandRefused(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	v := mustCreate(t, m, request("pv-1"))
	for i, st := range []catalog.State{catalog.StateCreating, catalog.StateDeleting} {
		r := record(id(i+1), string(st), "default", st, OnDeleteDelete)
		if err := m.cat.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	gone := record(id(3), "gone", "gone", catalog.StateReady, OnDeleteDelete)
	if err := m.cat.Put(gone); err != nil {
		t.Fatal(err)
	}
	before := tree(t, e.root)
	for _, tc := range []struct {
		id   string
		want error
	}{
		{id(99), ErrNotFound},
		{"../../etc", ErrNotFound},
		{v.ID + "/", ErrNotFound},
		{"", ErrNotFound},
		{id(1), ErrBusy},
		{id(2), ErrNotFound},
		{id(3), ErrPoolNotConfigured},
	} {
		if _, err := m.Expand(context.Background(), tc.id, 20<<20, 0); !errors.Is(err, tc.want) {
			t.Errorf("Expand(%q) = %v, want %v", tc.id, err, tc.want)
		}
	}
	sameTree(t, "disk", before, tree(t, e.root))
	if _, err := e.manager(t).Expand(context.Background(), v.ID, 20<<20, 0); !errors.Is(err, ErrNotReady) {
		t.Errorf("Expand before Recover = %v, want ErrNotReady", err)
	}
}

type failingExpand struct{ pool.Pool }

func (failingExpand) Expand(string, int64) error { return errInjected }

func TestExpandFailureChangesNothing(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	v := mustCreate(t, m, request("pv-1"))
	e.pools["default"] = failingExpand{e.dirs["default"]}
	m = e.recovered(t)
	before := tree(t, e.root)
	if _, err := m.Expand(context.Background(), v.ID, 20<<20, 0); !errors.Is(err, errInjected) {
		t.Fatalf("Expand = %v, want the pool's error", err)
	}
	sameTree(t, "disk", before, tree(t, e.root))
	if c, _ := m.Capacity(""); c.Promised != 10<<20 {
		t.Errorf("failed expansion left %d promised, want 10Mi", c.Promised)
	}
}

// recordingExpand blocks in Expand until released, to hold one expansion
// in flight.
type blockingExpand struct {
	pool.Pool
	entered, release chan struct{}
}

func (p blockingExpand) Expand(id string, bytes int64) error {
	p.entered <- struct{}{}
	<-p.release
	return p.Pool.Expand(id, bytes)
}

func TestExpandConcurrent(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	v := mustCreate(t, m, request("pv-1"))
	bp := blockingExpand{e.dirs["default"], make(chan struct{}), make(chan struct{})}
	e.pools["default"] = bp
	m = e.recovered(t)
	var wg sync.WaitGroup
	var first error
	wg.Go(func() { _, first = m.Expand(context.Background(), v.ID, 20<<20, 0) })
	<-bp.entered
	if _, err := m.Expand(context.Background(), v.ID, 30<<20, 0); !errors.Is(err, ErrBusy) {
		t.Errorf("second Expand while one runs = %v, want ErrBusy", err)
	}
	close(bp.release)
	wg.Wait()
	if first != nil {
		t.Fatalf("first Expand: %v", first)
	}
	if got, _ := m.Get(v.ID); got.CapacityBytes != 20<<20 {
		t.Errorf("capacity %d, want 20Mi", got.CapacityBytes)
	}
}

func TestHolds(t *testing.T) {
	e := newEnv(t)
	if _, err := e.manager(t).Holds(id(1)); !errors.Is(err, ErrNotReady) {
		t.Errorf("Holds before Recover = %v", err)
	}
	m := e.recovered(t)
	v := mustCreate(t, m, request("pv-1"))
	if err := m.cat.Put(record(id(1), "creating", "default", catalog.StateCreating, OnDeleteDelete)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   string
		want bool
	}{{v.ID, true}, {id(1), true}, {id(2), false}, {"../x", false}, {"", false}} {
		if got, err := m.Holds(tc.id); err != nil || got != tc.want {
			t.Errorf("Holds(%q) = %v, %v; want %v", tc.id, got, err, tc.want)
		}
	}
}

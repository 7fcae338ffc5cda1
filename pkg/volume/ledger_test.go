package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/pkg/pool"
)

func TestLedger(t *testing.T) {
	type step struct {
		op        string // reserve, add, remove, setUsed, grow, setCapacity
		id, pool  string
		n         int64 // capacity or used
		available int64
		wantErr   error
		// promised after the step, per pool
		want map[string]int64
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "reserve and remove", steps: []step{
			{op: "reserve", id: "a", pool: "p", n: 100, available: 1000, want: map[string]int64{"p": 100}},
			{op: "reserve", id: "b", pool: "p", n: 900, available: 1000, want: map[string]int64{"p": 1000}},
			{op: "remove", id: "a", want: map[string]int64{"p": 900}},
			{op: "remove", id: "a", want: map[string]int64{"p": 900}},
			{op: "remove", id: "unknown", want: map[string]int64{"p": 900}},
			{op: "remove", id: "b", want: map[string]int64{"p": 0}},
		}},
		{name: "reserve counts what is promised", steps: []step{
			{op: "reserve", id: "a", pool: "p", n: 600, available: 1000, want: map[string]int64{"p": 600}},
			{op: "reserve", id: "b", pool: "p", n: 401, available: 1000, wantErr: ErrNoSpace, want: map[string]int64{"p": 600}},
			{op: "reserve", id: "b", pool: "p", n: 400, available: 1000, want: map[string]int64{"p": 1000}},
			{op: "reserve", id: "c", pool: "p", n: 1, available: 1000, wantErr: ErrNoSpace, want: map[string]int64{"p": 1000}},
		}},
		{name: "pools are separate", steps: []step{
			{op: "reserve", id: "a", pool: "p", n: 1000, available: 1000, want: map[string]int64{"p": 1000}},
			{op: "reserve", id: "b", pool: "q", n: 1000, available: 1000, want: map[string]int64{"p": 1000, "q": 1000}},
			{op: "remove", id: "a", want: map[string]int64{"p": 0, "q": 1000}},
		}},
		{name: "written bytes are no longer promised", steps: []step{
			{op: "reserve", id: "a", pool: "p", n: 1000, available: 1000, want: map[string]int64{"p": 1000}},
			{op: "setUsed", id: "a", n: 300, want: map[string]int64{"p": 700}},
			{op: "setUsed", id: "a", n: 100, want: map[string]int64{"p": 900}},
			{op: "setUsed", id: "a", n: 5000, want: map[string]int64{"p": 0}},
			{op: "setUsed", id: "unknown", n: 5, want: map[string]int64{"p": 0}},
			{op: "setUsed", id: "a", n: 0, want: map[string]int64{"p": 1000}},
			{op: "remove", id: "a", want: map[string]int64{"p": 0}},
		}},
		{name: "reserve after writes", steps: []step{
			{op: "reserve", id: "a", pool: "p", n: 800, available: 1000, want: map[string]int64{"p": 800}},
			{op: "setUsed", id: "a", n: 500, want: map[string]int64{"p": 300}},
			// The filesystem now has 500 fewer bytes free.
			{op: "reserve", id: "b", pool: "p", n: 201, available: 500, wantErr: ErrNoSpace, want: map[string]int64{"p": 300}},
			{op: "reserve", id: "b", pool: "p", n: 200, available: 500, want: map[string]int64{"p": 500}},
		}},
		{name: "add replaces", steps: []step{
			{op: "add", id: "a", pool: "p", n: 100, want: map[string]int64{"p": 100}},
			{op: "add", id: "a", pool: "p", n: 300, want: map[string]int64{"p": 300}},
			{op: "add", id: "a", pool: "q", n: 50, want: map[string]int64{"p": 0, "q": 50}},
		}},
		{name: "grow counts only the extra bytes", steps: []step{
			{op: "reserve", id: "a", pool: "p", n: 600, available: 1000, want: map[string]int64{"p": 600}},
			{op: "grow", id: "a", pool: "p", n: 1001, available: 1000, wantErr: ErrNoSpace, want: map[string]int64{"p": 600}},
			{op: "grow", id: "a", pool: "p", n: 1000, available: 1000, want: map[string]int64{"p": 1000}},
			{op: "setCapacity", id: "a", n: 600, want: map[string]int64{"p": 600}},
		}},
		{name: "grow after writes", steps: []step{
			{op: "reserve", id: "a", pool: "p", n: 500, available: 1000, want: map[string]int64{"p": 500}},
			{op: "setUsed", id: "a", n: 800, want: map[string]int64{"p": 0}},
			// Written past its size: growing to what is written promises nothing more.
			{op: "grow", id: "a", pool: "p", n: 800, available: 0, want: map[string]int64{"p": 0}},
			{op: "grow", id: "a", pool: "p", n: 900, available: 100, want: map[string]int64{"p": 100}},
			{op: "grow", id: "a", pool: "p", n: 901, available: 100, wantErr: ErrNoSpace, want: map[string]int64{"p": 100}},
		}},
		{name: "grow of an untracked volume adds it", steps: []step{
			{op: "grow", id: "a", pool: "p", n: 300, available: 1000, want: map[string]int64{"p": 300}},
			{op: "setCapacity", id: "unknown", n: 5, want: map[string]int64{"p": 300}},
		}},
		{name: "reserve may overcommit nothing when the disk is over-promised", steps: []step{
			{op: "add", id: "a", pool: "p", n: 2000, want: map[string]int64{"p": 2000}},
			{op: "reserve", id: "b", pool: "p", n: 0, available: 1000, wantErr: ErrNoSpace, want: map[string]int64{"p": 2000}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger()
			for i, s := range tt.steps {
				var err error
				switch s.op {
				case "reserve":
					err = l.reserve(s.id, s.pool, s.n, s.available)
				case "add":
					l.add(s.id, s.pool, s.n)
				case "remove":
					l.remove(s.id)
				case "setUsed":
					l.setUsed(s.id, s.n)
				case "grow":
					err = l.grow(s.id, s.pool, s.n, s.available)
				case "setCapacity":
					l.setCapacity(s.id, s.n)
				}
				if !errors.Is(err, s.wantErr) || (err != nil) != (s.wantErr != nil) {
					t.Fatalf("step %d %s(%s): %v, want %v", i, s.op, s.id, err, s.wantErr)
				}
				for p, want := range s.want {
					if got := l.promised(p); got != want {
						t.Fatalf("step %d %s(%s): pool %s promised %d, want %d", i, s.op, s.id, p, got, want)
					}
				}
			}
		})
	}
}

func TestReserveMessage(t *testing.T) {
	l := newLedger()
	l.add("a", "fast", 2<<30)
	err := l.reserve("b", "fast", 5<<40, 10<<30)
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("reserve = %v, want ErrNoSpace", err)
	}
	for _, want := range []string{"5Ti", `"fast"`, "8Gi", "10Gi", "2Gi"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not say %s", err, want)
		}
	}
}

func TestHuman(t *testing.T) {
	tests := []struct {
		name string
		in   int64
		want string
	}{
		{name: "zero", in: 0, want: "0"},
		{name: "bytes", in: 1000, want: "1000"},
		{name: "Ki", in: 1 << 10, want: "1Ki"},
		{name: "Mi not Ki", in: 1536 << 10, want: "1536Ki"},
		{name: "Mi", in: 1536 << 20, want: "1536Mi"},
		{name: "Gi", in: 10 << 30, want: "10Gi"},
		{name: "Ti", in: 5 << 40, want: "5Ti"},
		{name: "Pi", in: 3 << 50, want: "3Pi"},
		{name: "Ei", in: 1 << 62, want: "4Ei"},
		{name: "odd", in: 1<<30 + 1, want: "1073741825"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := human(tt.in); got != tt.want {
				t.Errorf("human(%d) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// fixedStat reports a fixed filesystem, so capacity figures do not move with
// whatever else writes to the machine's disk.
type fixedStat struct {
	pool.Pool
	fs pool.FS
}

func (p fixedStat) Stat() (pool.FS, error) { return p.fs, nil }

func TestCapacity(t *testing.T) {
	e := newEnv(t, "default", "other")
	const avail = int64(100 << 20)
	for name, d := range e.dirs {
		e.pools[name] = fixedStat{Pool: d, fs: pool.FS{AvailableBytes: avail, TotalBytes: 200 << 20}}
	}
	m := e.recovered(t)
	check := func(t *testing.T, poolName string, promised int64) {
		t.Helper()
		c, err := m.Capacity(poolName)
		if err != nil {
			t.Fatalf("Capacity(%q): %v", poolName, err)
		}
		free := max(0, avail-promised)
		want := Capacity{Available: free, MaxVolume: free, Promised: promised}
		if c != want {
			t.Errorf("Capacity(%q) = %+v, want %+v", poolName, c, want)
		}
	}
	check(t, "", 0)

	v := mustCreate(t, m, request("pv-1")) // 10Mi
	check(t, "", 10<<20)
	check(t, "default", 10<<20)
	check(t, "other", 0)

	// Data written counts against the filesystem, not the promise.
	writeFile(t, filepath.Join(e.volPath("default", v.ID), "data"), string(make([]byte, 3<<20)))
	u, err := m.Usage(v)
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	if u.Bytes < 3<<20 || u.Inodes != 2 {
		t.Errorf("Usage = %+v, want at least 3Mi in 2 inodes", u)
	}
	check(t, "", 10<<20-u.Bytes)

	big := request("pv-big")
	big.RequiredBytes = avail - (10<<20 - u.Bytes) + 1
	if _, err := m.Create(context.Background(), big); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Create beyond what is left = %v, want ErrNoSpace", err)
	}
	big.RequiredBytes--
	mustCreate(t, m, big)
	check(t, "", avail)

	if err := m.Delete(context.Background(), v.ID); err != nil {
		t.Fatal(err)
	}
	check(t, "", big.RequiredBytes)

	if _, err := m.Capacity("fast"); !errors.Is(err, ErrUnknownPool) {
		t.Errorf("Capacity of an unknown pool = %v, want ErrUnknownPool", err)
	}
}

// Available never goes below zero, even when more is promised than the
// filesystem has left (recovered volumes are counted whole).
func TestCapacityOverPromised(t *testing.T) {
	e := newEnv(t)
	e.craft(t, record(id(1), "pv-1", "default", "ready", OnDeleteDelete))
	if err := os.MkdirAll(e.volPath("default", id(1)), 0o755); err != nil {
		t.Fatal(err)
	}
	e.pools["default"] = fixedStat{Pool: e.dirs["default"], fs: pool.FS{AvailableBytes: 1 << 10}}
	m := e.recovered(t)
	c, err := m.Capacity("")
	if err != nil {
		t.Fatal(err)
	}
	if c != (Capacity{Available: 0, MaxVolume: 0, Promised: 1 << 20}) {
		t.Errorf("Capacity = %+v", c)
	}
}

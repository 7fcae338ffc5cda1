package volume

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/disktree"

	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
)

// fixedNow is the test clock; archive names carry it in UTC as fixedStamp.
var fixedNow = time.Date(2024, 3, 5, 7, 8, 9, 0, time.FixedZone("CET", 3600))

const (
	fixedStamp = "20240305T060809Z"
	defaultCap = int64(1 << 30)
)

// env is one node: a catalog directory, pools under root/pools, and a
// directory outside every pool that nothing may touch.
type env struct {
	root    string
	catDir  string
	outside string
	dirs    map[string]*pool.Dir
	// pools is what the next manager is built with; tests may wrap entries.
	pools map[string]pool.Pool
	clock time.Time
}

func newEnv(t *testing.T, poolNames ...string) *env {
	t.Helper()
	if len(poolNames) == 0 {
		poolNames = []string{"default"}
	}
	root := t.TempDir()
	e := &env{
		root:    root,
		catDir:  filepath.Join(root, "catalog"),
		outside: filepath.Join(root, "outside"),
		dirs:    make(map[string]*pool.Dir),
		pools:   make(map[string]pool.Pool),
		clock:   fixedNow,
	}
	for _, name := range poolNames {
		d, err := pool.NewDir(name, filepath.Join(root, "pools", name))
		if err != nil {
			t.Fatal(err)
		}
		e.dirs[name], e.pools[name] = d, d
	}
	writeFile(t, filepath.Join(e.outside, "file"), "outside the pools")
	return e
}

// manager opens the catalog from disk, as a fresh start does, and returns a
// manager that has not recovered yet.
func (e *env) manager(t *testing.T) *Manager {
	t.Helper()
	cat, problems, err := catalog.Open(e.catDir)
	if err != nil || len(problems) != 0 {
		t.Fatalf("catalog.Open: %v, problems %v", err, problems)
	}
	m, err := New(cat, maps.Clone(e.pools), "default", defaultCap, func() time.Time { return e.clock })
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

func (e *env) recovered(t *testing.T) *Manager {
	t.Helper()
	m := e.manager(t)
	if err := m.Recover(context.Background()); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	return m
}

// craft writes records straight into the catalog, as a crash would have
// left them.
func (e *env) craft(t *testing.T, vols ...Volume) {
	t.Helper()
	cat, _, err := catalog.Open(e.catDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		if err := cat.Put(v); err != nil {
			t.Fatal(err)
		}
	}
}

// records reads the catalog back from disk.
func (e *env) records(t *testing.T) []Volume {
	t.Helper()
	cat, _, err := catalog.Open(e.catDir)
	if err != nil {
		t.Fatal(err)
	}
	return cat.List()
}

func (e *env) volPath(name, id string) string {
	return filepath.Join(e.dirs[name].Root(), "volumes", id)
}

func (e *env) archivePath(name, dest string) string {
	return filepath.Join(e.dirs[name].Root(), "archive", dest)
}

func request(name string) CreateRequest {
	return CreateRequest{
		Name:          name,
		RequiredBytes: 10 << 20,
		OnDelete:      OnDeleteDelete,
		Permissions:   pool.Permissions{Mode: 0o777, UID: -1, GID: -1},
		Parameters:    map[string]string{"onDelete": "delete"},
	}
}

func mustCreate(t *testing.T, m *Manager, req CreateRequest) Volume {
	t.Helper()
	v, err := m.Create(context.Background(), req)
	if err != nil {
		t.Fatalf("Create(%s): %v", req.Name, err)
	}
	return v
}

// record is a crafted catalog record.
func record(id, name, poolName string, state catalog.State, onDelete OnDelete) Volume {
	return Volume{
		ID: id, Name: name, Pool: poolName, CapacityBytes: 1 << 20,
		OnDelete: string(onDelete), PVName: name, CreatedAt: fixedNow.UTC(), State: state,
	}
}

// id returns a well-formed volume ID built from n.
func id(n int) string { return fmt.Sprintf("vol-%032x", n) }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Lstat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// tree describes every entry under root: type, permissions, owner, and the
// content of files or the target of links.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out, err := disktree.Describe(root)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// without drops prefix and everything under it from a tree listing.
func without(tr map[string]string, prefixes ...string) map[string]string {
	out := make(map[string]string, len(tr))
	for k, v := range tr {
		keep := true
		for _, p := range prefixes {
			if k == p || strings.HasPrefix(k, p+"/") {
				keep = false
			}
		}
		if keep {
			out[k] = v
		}
	}
	return out
}

func sameTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for _, d := range disktree.Diff(before, after) {
		t.Errorf("%s: %s", what, d)
	}
}

func TestNew(t *testing.T) {
	e := newEnv(t)
	cat, _, err := catalog.Open(e.catDir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		defaultPool string
		capacity    int64
		wantErr     error
	}{
		{name: "ok", defaultPool: "default", capacity: 1},
		{name: "unknown default pool", defaultPool: "fast", capacity: 1, wantErr: ErrUnknownPool},
		{name: "zero capacity", defaultPool: "default", capacity: 0},
		{name: "negative capacity", defaultPool: "default", capacity: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(cat, e.pools, tt.defaultPool, tt.capacity, time.Now)
			switch {
			case tt.name == "ok":
				if err != nil || m.Ready() || m.DefaultPool() != "default" {
					t.Errorf("New = %v, ready %v", err, m != nil && m.Ready())
				}
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("New = %v, want %v", err, tt.wantErr)
			case err == nil:
				t.Error("New succeeded")
			}
		})
	}
}

func TestConditionPathFS(t *testing.T) {
	e := newEnv(t, "default", "other")
	m := e.recovered(t)
	if got := m.PoolNames(); !reflect.DeepEqual(got, []string{"default", "other"}) {
		t.Errorf("PoolNames = %v", got)
	}
	v := mustCreate(t, m, request("pv-1"))
	if p, err := m.Path(v); err != nil || p != e.volPath("default", v.ID) {
		t.Errorf("Path = %q, %v", p, err)
	}
	if abnormal, msg := condition(m, v); abnormal {
		t.Errorf("Condition of a fresh volume: %s", msg)
	}
	if fs, err := m.FS(v); err != nil || fs.TotalBytes <= 0 {
		t.Errorf("FS = %+v, %v", fs, err)
	}
	if err := m.Writable(); err != nil {
		t.Errorf("Writable: %v", err)
	}
	if err := os.Remove(e.volPath("default", v.ID)); err != nil {
		t.Fatal(err)
	}
	if abnormal, msg := condition(m, v); !abnormal || !strings.Contains(msg, e.volPath("default", v.ID)) {
		t.Errorf("Condition of a volume whose directory is gone = %v, %q", abnormal, msg)
	}
	lost := v
	lost.Pool = "gone"
	if abnormal, msg := condition(m, lost); !abnormal || !strings.Contains(msg, `"gone"`) {
		t.Errorf("Condition in an unknown pool = %v, %q", abnormal, msg)
	}
	for name, f := range map[string]func() error{
		"Path":  func() error { _, err := m.Path(lost); return err },
		"FS":    func() error { _, err := m.FS(lost); return err },
		"Usage": func() error { _, err := m.Usage(lost); return err },
	} {
		if err := f(); !errors.Is(err, ErrPoolNotConfigured) {
			t.Errorf("%s in an unknown pool = %v, want ErrPoolNotConfigured", name, err)
		}
	}
}

// condition is whether a volume has a health issue, and the first message.
func condition(m *Manager, v Volume) (bool, string) {
	if issues := m.Health(v); len(issues) > 0 {
		return true, issues[0].Message
	}
	return false, ""
}

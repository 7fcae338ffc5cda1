package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
)

// sources is a node with a filesystem volume (10Mi, in pool "other", data
// "source data"), a snapshot of it, a block volume (1Mi, default pool) and
// a snapshot of that.
type sources struct {
	e               *env
	m               *Manager
	vol, blockVol   Volume
	snap, blockSnap Snapshot
}

func newSources(t *testing.T) *sources {
	t.Helper()
	e := newEnv(t, "default", "other")
	m := e.recovered(t)
	req := request("src")
	req.Pool = "other"
	v := mustCreate(t, m, req)
	writeFile(t, filepath.Join(e.volPath("other", v.ID), "data"), "source data")
	s := mustSnapshot(t, m, snapRequest("src-snap", v.ID))
	// Written after the snapshot: a clone sees it, a restore does not.
	writeFile(t, filepath.Join(e.volPath("other", v.ID), "later"), "after the snapshot")
	breq := request("src-block")
	breq.Block, breq.RequiredBytes = true, 1<<20
	bv := mustCreate(t, m, breq)
	bs := mustSnapshot(t, m, snapRequest("src-block-snap", bv.ID))
	return &sources{e: e, m: m, vol: v, blockVol: bv, snap: s, blockSnap: bs}
}

func restoreRequest(name, snap string) CreateRequest {
	r := request(name)
	r.RequiredBytes = 0
	r.SourceSnapshotID = snap
	return r
}

func cloneRequest(name, vol string) CreateRequest {
	r := request(name)
	r.RequiredBytes = 0
	r.SourceVolumeID = vol
	return r
}

func TestCreateFromSource(t *testing.T) {
	tests := []struct {
		name      string
		req       func(s *sources) CreateRequest
		wantPool  string
		wantBytes int64
		wantFiles map[string]string // file -> content; "" = must not exist
		wantBlock bool
	}{
		{
			name:      "restore, size of the snapshot",
			req:       func(s *sources) CreateRequest { return restoreRequest("r", s.snap.ID) },
			wantPool:  "other",
			wantBytes: 10 << 20,
			wantFiles: map[string]string{"data": "source data", "later": ""},
		},
		{
			name: "restore, larger",
			req: func(s *sources) CreateRequest {
				r := restoreRequest("r", s.snap.ID)
				r.RequiredBytes = 20 << 20
				return r
			},
			wantPool:  "other",
			wantBytes: 20 << 20,
			wantFiles: map[string]string{"data": "source data"},
		},
		{
			name: "restore, pool of the source named",
			req: func(s *sources) CreateRequest {
				r := restoreRequest("r", s.snap.ID)
				r.Pool = "other"
				r.LimitBytes = 10 << 20
				return r
			},
			wantPool:  "other",
			wantBytes: 10 << 20,
		},
		{
			name:      "clone",
			req:       func(s *sources) CreateRequest { return cloneRequest("c", s.vol.ID) },
			wantPool:  "other",
			wantBytes: 10 << 20,
			wantFiles: map[string]string{"data": "source data", "later": "after the snapshot"},
		},
		{
			name: "block restore",
			req: func(s *sources) CreateRequest {
				r := restoreRequest("r", s.blockSnap.ID)
				r.Block = true
				return r
			},
			wantPool:  "default",
			wantBytes: 1 << 20,
			wantBlock: true,
		},
		{
			name: "block clone, larger",
			req: func(s *sources) CreateRequest {
				r := cloneRequest("c", s.blockVol.ID)
				r.Block, r.RequiredBytes = true, 3<<20
				return r
			},
			wantPool:  "default",
			wantBytes: 3 << 20,
			wantBlock: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSources(t)
			req := tt.req(s)
			v := mustCreate(t, s.m, req)
			if v.Pool != tt.wantPool || v.CapacityBytes != tt.wantBytes || v.Block != tt.wantBlock ||
				v.SourceSnapshotID != req.SourceSnapshotID || v.SourceVolumeID != req.SourceVolumeID || v.State != catalog.StateReady {
				t.Errorf("Create = %+v, want pool %s, %d bytes, block %v, source %q/%q",
					v, tt.wantPool, tt.wantBytes, tt.wantBlock, req.SourceSnapshotID, req.SourceVolumeID)
			}
			dir := s.e.volPath(v.Pool, v.ID)
			for f, want := range tt.wantFiles {
				path := filepath.Join(dir, f)
				if want == "" {
					if exists(t, path) {
						t.Errorf("%s exists in the new volume", f)
					}
				} else if got := readFile(t, path); got != want {
					t.Errorf("%s holds %q, want %q", f, got, want)
				}
			}
			if tt.wantBlock {
				fi, err := os.Stat(filepath.Join(dir, pool.BlockFile))
				if err != nil || fi.Size() != tt.wantBytes {
					t.Errorf("block file: %v, %v; want %d bytes", fi, err, tt.wantBytes)
				}
			}
			if got, err := s.e.recovered(t).Get(v.ID); err != nil || got.SourceSnapshotID != v.SourceSnapshotID ||
				got.SourceVolumeID != v.SourceVolumeID || got.Block != v.Block {
				t.Errorf("record after restart = %+v, %v", got, err)
			}

			// A retry returns the same volume, also once the source is gone.
			before := tree(t, s.e.root)
			if again := mustCreate(t, s.m, req); again.ID != v.ID {
				t.Errorf("retry made %s, first was %s", again.ID, v.ID)
			}
			sameTree(t, "disk after a retry", before, tree(t, s.e.root))
			if req.SourceSnapshotID != "" {
				if err := s.m.DeleteSnapshot(context.Background(), req.SourceSnapshotID); err != nil {
					t.Fatal(err)
				}
			} else if err := s.m.Delete(context.Background(), req.SourceVolumeID); err != nil {
				t.Fatal(err)
			}
			if again := mustCreate(t, s.m, req); again.ID != v.ID {
				t.Errorf("retry after the source was deleted made %s, first was %s", again.ID, v.ID)
			}
		})
	}
}

func TestCreateFromSourceRefused(t *testing.T) {
	tests := []struct {
		name    string
		req     func(s *sources) CreateRequest
		wantErr error
		words   []string
	}{
		{"unknown snapshot", func(s *sources) CreateRequest { return restoreRequest("r", snapID(99)) },
			ErrSourceNotFound, []string{"source snapshot", snapID(99)}},
		{"malformed snapshot ID", func(s *sources) CreateRequest { return restoreRequest("r", "non-existing-snapshot-id") },
			ErrSourceNotFound, []string{`"non-existing-snapshot-id"`}},
		{"traversal snapshot ID", func(s *sources) CreateRequest { return restoreRequest("r", "../../etc") },
			ErrSourceNotFound, nil},
		{"volume ID as snapshot", func(s *sources) CreateRequest { return restoreRequest("r", s.vol.ID) },
			ErrSourceNotFound, nil},
		{"unknown volume", func(s *sources) CreateRequest { return cloneRequest("c", id(99)) },
			ErrSourceNotFound, []string{"source volume", id(99)}},
		{"snapshot ID as volume", func(s *sources) CreateRequest { return cloneRequest("c", s.snap.ID) },
			ErrSourceNotFound, nil},
		{"both sources", func(s *sources) CreateRequest {
			r := restoreRequest("r", s.snap.ID)
			r.SourceVolumeID = s.vol.ID
			return r
		}, ErrSourceMismatch, nil},
		{"smaller than the snapshot", func(s *sources) CreateRequest {
			r := restoreRequest("r", s.snap.ID)
			r.RequiredBytes = 5 << 20
			return r
		}, ErrOutOfRange, []string{"5Mi", "10Mi", "snapshot"}},
		{"limit below the snapshot", func(s *sources) CreateRequest {
			r := restoreRequest("r", s.snap.ID)
			r.LimitBytes = 1 << 20
			return r
		}, ErrOutOfRange, []string{"limit_bytes 1Mi"}},
		{"smaller than the volume", func(s *sources) CreateRequest {
			r := cloneRequest("c", s.vol.ID)
			r.RequiredBytes = 1 << 20
			return r
		}, ErrOutOfRange, []string{"1Mi", "10Mi"}},
		{"another pool", func(s *sources) CreateRequest {
			r := restoreRequest("r", s.snap.ID)
			r.Pool = "default"
			return r
		}, ErrSourceMismatch, []string{`pool "default"`, `"other"`}},
		{"unknown pool", func(s *sources) CreateRequest {
			r := cloneRequest("c", s.vol.ID)
			r.Pool = "nope"
			return r
		}, ErrSourceMismatch, []string{`"nope"`}},
		{"block from a filesystem snapshot", func(s *sources) CreateRequest {
			r := restoreRequest("r", s.snap.ID)
			r.Block = true
			return r
		}, ErrSourceMismatch, []string{"filesystem", "block"}},
		{"filesystem clone of a block volume", func(s *sources) CreateRequest { return cloneRequest("c", s.blockVol.ID) },
			ErrSourceMismatch, []string{"block volume"}},
		{"larger than the pool can promise", func(s *sources) CreateRequest {
			r := restoreRequest("r", s.snap.ID)
			r.RequiredBytes = 1 << 60
			return r
		}, ErrNoSpace, []string{"1Ei requested", "can promise"}},
		{"name of a volume made from another source", func(s *sources) CreateRequest {
			return restoreRequest("src", s.snap.ID)
		}, ErrConflict, []string{"content source"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSources(t)
			req := tt.req(s)
			before := tree(t, s.e.root)
			_, err := s.m.Create(context.Background(), req)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Create = %v, want %v", err, tt.wantErr)
			}
			for _, w := range tt.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			sameTree(t, "disk", before, tree(t, s.e.root))
			if n := len(s.m.List()); n != 2 {
				t.Errorf("%d volumes listed, want the 2 sources", n)
			}
		})
	}
}

func TestCreateFromSourceRetryConflicts(t *testing.T) {
	s := newSources(t)
	first := mustCreate(t, s.m, restoreRequest("r", s.snap.ID))
	other := mustSnapshot(t, s.m, snapRequest("other-snap", s.vol.ID))
	for name, req := range map[string]CreateRequest{
		"other snapshot":       restoreRequest("r", other.ID),
		"clone instead":        cloneRequest("r", s.vol.ID),
		"no source":            request("r"),
		"block instead":        func() CreateRequest { r := restoreRequest("r", s.snap.ID); r.Block = true; return r }(),
		"another pool instead": func() CreateRequest { r := restoreRequest("r", s.snap.ID); r.Pool = "default"; return r }(),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := s.m.Create(context.Background(), req); !errors.Is(err, ErrConflict) {
				t.Errorf("retry with %s = %v, want ErrConflict", name, err)
			}
		})
	}
	if v, err := s.m.Get(first.ID); err != nil || v.SourceSnapshotID != s.snap.ID {
		t.Errorf("first volume = %+v, %v", v, err)
	}
}

// failingCreate after a copy: the partial copy and the record go.
func TestCreateFromSourceRollsBack(t *testing.T) {
	s := newSources(t)
	before := tree(t, s.e.root)
	s.e.pools["other"] = failingCreate{s.e.dirs["other"]}
	m := s.e.recovered(t)
	if _, err := m.Create(context.Background(), restoreRequest("r", s.snap.ID)); !errors.Is(err, errInjected) {
		t.Fatalf("Create = %v, want the pool's error", err)
	}
	sameTree(t, "disk", before, tree(t, s.e.root))
	if n := len(m.cat.List()); n != 2 {
		t.Errorf("catalog holds %d volume records, want the 2 sources", n)
	}
}

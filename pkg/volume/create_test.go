package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
)

func TestCreate(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	req := request("pv-1")
	req.Permissions = pool.Permissions{Mode: 0o750, UID: 1000, GID: 2000}
	req.PVCNamespace, req.PVCName, req.PVName = "ns", "claim", "pv-1"
	v := mustCreate(t, m, req)
	req.Parameters["onDelete"] = "changed by the caller after Create"

	if !ValidID(v.ID) {
		t.Errorf("ID %q has not the issued shape", v.ID)
	}
	want := Volume{
		ID: v.ID, Name: "pv-1", Pool: "default", CapacityBytes: 10 << 20,
		Parameters: map[string]string{"onDelete": "delete"}, OnDelete: "delete",
		PVCNamespace: "ns", PVCName: "claim", PVName: "pv-1",
		CreatedAt: fixedNow.UTC(), State: catalog.StateReady,
	}
	if fmt.Sprint(v) != fmt.Sprint(want) || v.CreatedAt.Location().String() != "UTC" {
		t.Errorf("Create = %+v, want %+v", v, want)
	}
	fi, err := os.Lstat(e.volPath("default", v.ID))
	if err != nil || !fi.IsDir() {
		t.Fatalf("volume directory: %v", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o750 || st.Uid != 1000 || st.Gid != 2000 {
		t.Errorf("directory mode %v owner %d:%d, want 0750 1000:2000", fi.Mode().Perm(), st.Uid, st.Gid)
	}
	for _, got := range []func() (Volume, error){
		func() (Volume, error) { return m.Get(v.ID) },
		func() (Volume, error) { return e.records(t)[0], nil },
		func() (Volume, error) { return e.recovered(t).Get(v.ID) },
	} {
		if g, err := got(); err != nil || fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("record = %+v, %v; want %+v", g, err, want)
		}
	}
	if list := m.List(); len(list) != 1 || list[0].ID != v.ID {
		t.Errorf("List = %v", list)
	}
}

func TestCreateIdempotent(t *testing.T) {
	tests := []struct {
		name  string
		retry func(r *CreateRequest)
	}{
		{name: "same request"},
		{name: "default pool named", retry: func(r *CreateRequest) { r.Pool = "default" }},
		{name: "smaller required", retry: func(r *CreateRequest) { r.RequiredBytes = 1 << 20 }},
		{name: "no size", retry: func(r *CreateRequest) { r.RequiredBytes = 0 }},
		{name: "limit equal", retry: func(r *CreateRequest) { r.LimitBytes = 10 << 20 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.recovered(t)
			first := mustCreate(t, m, request("pv-1"))
			before := tree(t, e.root)
			req := request("pv-1")
			if tt.retry != nil {
				tt.retry(&req)
			}
			again := mustCreate(t, m, req)
			if fmt.Sprint(again) != fmt.Sprint(first) {
				t.Errorf("retry = %+v, want %+v", again, first)
			}
			sameTree(t, "disk", before, tree(t, e.root))
			if c, _ := m.Capacity(""); c.Promised != 10<<20 {
				t.Errorf("retry promised space again: %d", c.Promised)
			}
		})
	}
	t.Run("no parameters", func(t *testing.T) {
		m := newEnv(t).recovered(t)
		req := request("pv-1")
		req.Parameters = nil
		first := mustCreate(t, m, req)
		req.Parameters = map[string]string{}
		if again := mustCreate(t, m, req); again.ID != first.ID {
			t.Errorf("retry with empty parameters made %s, first was %s", again.ID, first.ID)
		}
	})
}

func TestCreateConflict(t *testing.T) {
	tests := []struct {
		name    string
		retry   func(r *CreateRequest)
		wantErr error
	}{
		{name: "bigger required", retry: func(r *CreateRequest) { r.RequiredBytes = 20 << 20 }, wantErr: ErrConflict},
		{name: "smaller limit", retry: func(r *CreateRequest) { r.LimitBytes = 5 << 20; r.RequiredBytes = 0 }, wantErr: ErrConflict},
		{name: "other parameters", retry: func(r *CreateRequest) { r.Parameters = map[string]string{"onDelete": "retain"} }, wantErr: ErrConflict},
		{name: "extra parameter", retry: func(r *CreateRequest) { r.Parameters["mode"] = "0700" }, wantErr: ErrConflict},
		{name: "no parameters", retry: func(r *CreateRequest) { r.Parameters = nil }, wantErr: ErrConflict},
		{name: "other pool", retry: func(r *CreateRequest) { r.Pool = "other" }, wantErr: ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, "default", "other")
			m := e.recovered(t)
			first := mustCreate(t, m, request("pv-1"))
			before := tree(t, e.root)
			req := request("pv-1")
			tt.retry(&req)
			if _, err := m.Create(context.Background(), req); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Create = %v, want %v", err, tt.wantErr)
			}
			sameTree(t, "disk", before, tree(t, e.root))
			if got, err := m.Get(first.ID); err != nil || fmt.Sprint(got) != fmt.Sprint(first) {
				t.Errorf("first volume = %+v, %v", got, err)
			}
		})
	}
}

func TestCreateBusy(t *testing.T) {
	for _, state := range []catalog.State{catalog.StateCreating, catalog.StateDeleting} {
		t.Run(string(state), func(t *testing.T) {
			e := newEnv(t)
			m := e.recovered(t)
			if err := m.cat.Put(record(id(1), "pv-1", "default", state, OnDeleteDelete)); err != nil {
				t.Fatal(err)
			}
			if state == catalog.StateCreating {
				m.creating.TryLock(id(1)) // its Create is in flight
			}
			if _, err := m.Create(context.Background(), request("pv-1")); !errors.Is(err, ErrBusy) {
				t.Errorf("Create = %v, want ErrBusy", err)
			}
		})
	}
}

func TestCreateSize(t *testing.T) {
	tests := []struct {
		name            string
		required, limit int64
		want            int64
	}{
		{name: "no range", want: defaultCap},
		{name: "required", required: 5 << 20, want: 5 << 20},
		{name: "required and limit", required: 5 << 20, limit: 6 << 20, want: 5 << 20},
		{name: "limit below default", limit: 64 << 20, want: 64 << 20},
		{name: "limit above default", limit: 2 * defaultCap, want: defaultCap},
		{name: "limit equal to default", limit: defaultCap, want: defaultCap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newEnv(t).recovered(t)
			req := request("pv-1")
			req.RequiredBytes, req.LimitBytes = tt.required, tt.limit
			if v := mustCreate(t, m, req); v.CapacityBytes != tt.want {
				t.Errorf("CapacityBytes = %d, want %d", v.CapacityBytes, tt.want)
			}
		})
	}
}

func TestCreateRefused(t *testing.T) {
	huge := request("pv-1")
	huge.RequiredBytes = 1 << 62
	unknown := request("pv-1")
	unknown.Pool = "fast"
	tests := []struct {
		name    string
		ready   bool
		req     CreateRequest
		wantErr error
		wantMsg []string
	}{
		{name: "no space", ready: true, req: huge, wantErr: ErrNoSpace, wantMsg: []string{"4Ei", `"default"`}},
		{name: "unknown pool", ready: true, req: unknown, wantErr: ErrUnknownPool, wantMsg: []string{`"fast"`, "default"}},
		{name: "before recovery", req: request("pv-1"), wantErr: ErrNotReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.manager(t)
			if tt.ready {
				m = e.recovered(t)
			}
			before := tree(t, e.root)
			_, err := m.Create(context.Background(), tt.req)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Create = %v, want %v", err, tt.wantErr)
			}
			for _, s := range tt.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q does not say %s", err, s)
				}
			}
			sameTree(t, "disk", before, tree(t, e.root))
			if n := len(m.cat.List()); n != 0 {
				t.Errorf("catalog holds %d records", n)
			}
			if c, _ := m.Capacity(""); c.Promised != 0 {
				t.Errorf("refused create left %d bytes promised", c.Promised)
			}
		})
	}
}

// failingCreate makes the directory, then reports failure, as a full disk
// or an EIO after mkdir would.
type failingCreate struct{ pool.Pool }

var errInjected = errors.New("injected failure")

func (p failingCreate) Create(id string, spec pool.VolumeSpec) error {
	if err := p.Pool.Create(id, spec); err != nil {
		return err
	}
	return errInjected
}

func TestCreateRollsBack(t *testing.T) {
	e := newEnv(t)
	e.pools["default"] = failingCreate{e.dirs["default"]}
	m := e.recovered(t)
	before := tree(t, e.root)
	if _, err := m.Create(context.Background(), request("pv-1")); !errors.Is(err, errInjected) {
		t.Fatalf("Create = %v, want the pool's error", err)
	}
	sameTree(t, "disk", before, tree(t, e.root))
	if n := len(m.cat.List()); n != 0 {
		t.Errorf("catalog holds %d records", n)
	}
	if c, _ := m.Capacity(""); c.Promised != 0 {
		t.Errorf("failed create left %d bytes promised", c.Promised)
	}
	e.pools["default"] = e.dirs["default"]
	if v, err := e.recovered(t).Create(context.Background(), request("pv-1")); err != nil || v.State != catalog.StateReady {
		t.Errorf("Create after a failed one = %+v, %v", v, err)
	}
}

func TestCreateConcurrent(t *testing.T) {
	e := newEnv(t)
	m := e.recovered(t)
	const names, perName = 16, 4
	type result struct {
		v   Volume
		err error
	}
	results := make([][]result, names)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for n := range names {
		results[n] = make([]result, perName)
		for i := range perName {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				v, err := m.Create(context.Background(), request(fmt.Sprintf("pv-%d", n)))
				results[n][i] = result{v, err}
			}()
		}
	}
	close(start)
	wg.Wait()
	for n, rs := range results {
		var got string
		for _, r := range rs {
			switch {
			case r.err == nil && got == "":
				got = r.v.ID
			case r.err == nil && r.v.ID != got:
				t.Errorf("pv-%d created twice: %s and %s", n, got, r.v.ID)
			case r.err != nil && !errors.Is(r.err, ErrBusy):
				t.Errorf("pv-%d: %v, want success or ErrBusy", n, r.err)
			}
		}
		if got == "" {
			t.Errorf("pv-%d: every create failed", n)
		}
	}
	if got := entries(t, e.dirs["default"].Root()+"/volumes"); len(got) != names {
		t.Errorf("%d volume directories, want %d", len(got), names)
	}
	if got := len(m.List()); got != names {
		t.Errorf("%d volumes listed, want %d", got, names)
	}
	if c, _ := m.Capacity(""); c.Promised != names*(10<<20) {
		t.Errorf("promised %d, want %d", c.Promised, names*(10<<20))
	}
}

// fullPool fails every create as a full filesystem or a btrfs limit does.
type fullPool struct {
	pool.Pool
	errno error
}

func (p fullPool) Create(string, pool.VolumeSpec) error {
	return &os.PathError{Op: "write", Path: "block.img", Err: p.errno}
}

func TestCreateOnFullPoolIsNoSpace(t *testing.T) {
	for _, errno := range []error{syscall.ENOSPC, syscall.EDQUOT} {
		t.Run(errno.Error(), func(t *testing.T) {
			e := newEnv(t)
			e.pools["default"] = fullPool{e.dirs["default"], errno}
			m := e.recovered(t)
			_, err := m.Create(context.Background(), request("pv-1"))
			if !errors.Is(err, ErrNoSpace) || !errors.Is(err, errno) {
				t.Fatalf("Create = %v, want ErrNoSpace wrapping %v", err, errno)
			}
			if n := len(m.List()); n != 0 {
				t.Errorf("%d volumes listed after a failed create", n)
			}
		})
	}
}

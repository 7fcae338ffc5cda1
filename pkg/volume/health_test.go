package volume

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/dirvol/dirvol/internal/testfs"
	"github.com/dirvol/dirvol/pkg/pool"
)

// A volume in a btrfs pool whose limits stopped holding reports a Degraded
// issue that does not block its use; block volumes, sized by their file,
// and volumes of healthy pools report nothing; Probe's SizeProblem and the
// metrics' Sizes say the same.
func TestHealthSizeNotEnforced(t *testing.T) {
	if _, err := exec.LookPath("btrfs"); err != nil {
		t.Skipf("btrfs not installed: %v", err)
	}
	ctx := context.Background()
	e := newEnv(t)
	mnt := testfs.Mount(t, testfs.Btrfs, 0)
	bt, err := pool.NewBtrfs("bt", filepath.Join(mnt, "pool"))
	if err != nil {
		t.Fatal(err)
	}
	e.pools["bt"] = bt
	m := e.recovered(t)
	req := request("pv-bt")
	req.Pool = "bt"
	v := mustCreate(t, m, req)
	breq := request("pv-block")
	breq.Pool, breq.Block = "bt", true
	bv := mustCreate(t, m, breq)
	dv := mustCreate(t, m, request("pv-dir"))

	m.CheckPools(ctx)
	if issues := m.Health(v); len(issues) != 0 || m.SizeProblem() != nil {
		t.Fatalf("healthy pool: Health = %+v, SizeProblem %v", issues, m.SizeProblem())
	}
	if out, err := exec.Command("btrfs", "quota", "disable", mnt).CombinedOutput(); err != nil {
		t.Fatalf("btrfs quota disable: %v: %s", err, out)
	}
	m.CheckPools(ctx)

	issues := m.Health(v)
	if len(issues) != 1 || issues[0].Kind != Degraded || issues[0].Reason != "SizeNotEnforced" {
		t.Fatalf("Health = %+v, want one Degraded SizeNotEnforced issue", issues)
	}
	if b := Blocking(issues); len(b) != 0 {
		t.Errorf("Blocking = %+v, want none: the volume is still usable", b)
	}
	if issues := m.Health(bv); len(issues) != 0 {
		t.Errorf("block volume: Health = %+v, want none", issues)
	}
	if issues := m.Health(dv); len(issues) != 0 {
		t.Errorf("dir volume: Health = %+v, want none", issues)
	}
	if err := m.SizeProblem(); !errors.Is(err, pool.ErrSizesNotEnforced) {
		t.Errorf("SizeProblem = %v, want ErrSizesNotEnforced", err)
	}
	want := map[string]PoolSizes{"bt": {Pool: "bt"}, "default": {Pool: "default"}}
	for _, s := range m.Sizes() {
		w := want[s.Pool]
		if s.Enforced != w.Enforced || (s.Problem != nil) != (s.Pool == "bt") {
			t.Errorf("Sizes: %+v", s)
		}
	}
}

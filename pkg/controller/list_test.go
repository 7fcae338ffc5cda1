package controller

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/topology"
	"google.golang.org/grpc/codes"
)

func TestListVolumesPaging(t *testing.T) {
	e := newEnv(t)
	want := map[string]bool{}
	for i := range 7 {
		want[e.create(t, fmt.Sprintf("pv-%d", i), nil).GetVolumeId()] = true
	}
	ctx := context.Background()
	got := map[string]bool{}
	token := ""
	pages := 0
	for {
		resp, err := e.srv.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 3, StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(resp.GetEntries()) > 3 {
			t.Fatalf("page has %d entries, max 3", len(resp.GetEntries()))
		}
		for _, en := range resp.GetEntries() {
			got[en.GetVolume().GetVolumeId()] = true
		}
		if token = resp.GetNextToken(); token == "" {
			break
		}
	}
	if pages != 3 || len(got) != len(want) {
		t.Fatalf("%d pages, %d volumes; want 3 pages, %d volumes", pages, len(got), len(want))
	}
}

func TestListVolumesTokenOfDeletedVolume(t *testing.T) {
	e := newEnv(t)
	for i := range 4 {
		e.create(t, fmt.Sprintf("pv-%d", i), nil)
	}
	ctx := context.Background()
	first, err := e.srv.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: first.GetNextToken()}); err != nil {
		t.Fatal(err)
	}
	rest, err := e.srv.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: first.GetNextToken()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rest.GetEntries()) != 2 {
		t.Fatalf("second page has %d entries, want 2", len(rest.GetEntries()))
	}
}

func TestListVolumesBadInput(t *testing.T) {
	tests := []struct {
		name string
		req  *csi.ListVolumesRequest
		want codes.Code
	}{
		{"negative max", &csi.ListVolumesRequest{MaxEntries: -1}, codes.InvalidArgument},
		{"foreign token", &csi.ListVolumesRequest{StartingToken: "invalid-token"}, codes.Aborted},
		{"traversal token", &csi.ListVolumesRequest{StartingToken: "../x"}, codes.Aborted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newEnv(t).srv.ListVolumes(context.Background(), tc.req)
			wantCode(t, err, tc.want)
		})
	}
}

func TestVolumeHealth(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	healthy := e.create(t, "pv-ok", nil)
	broken := e.create(t, "pv-broken", nil)
	if err := os.Remove(e.root + "/default/volumes/" + broken.GetVolumeId()); err != nil {
		t.Fatal(err)
	}
	list, err := e.srv.ControllerListVolumeHealth(ctx, &csi.ControllerListVolumeHealthRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetEntries()) != 1 || list.GetEntries()[0].GetVolumeId() != broken.GetVolumeId() {
		t.Fatalf("health entries = %v, want only %s", list.GetEntries(), broken.GetVolumeId())
	}
	if s := list.GetEntries()[0].GetHealthStatuses(); len(s) != 1 || s[0].GetStatus() != csi.VolumeHealthErrorType_DATA_LOSS || s[0].GetMessage() == "" {
		t.Fatalf("broken volume health = %v, want DATA_LOSS with a message", s)
	}
	one, err := e.srv.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: healthy.GetVolumeId()})
	if err != nil || len(one.GetVolumeHealth().GetHealthStatuses()) != 0 {
		t.Fatalf("healthy volume: %v %v", one, err)
	}
	_, err = e.srv.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: "fake"})
	wantCode(t, err, codes.NotFound)
	got, err := e.srv.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: healthy.GetVolumeId()})
	if err != nil || got.GetVolume().GetVolumeId() != healthy.GetVolumeId() {
		t.Fatalf("ControllerGetVolume: %v %v", got, err)
	}
}

func TestGetCapacity(t *testing.T) {
	const free = 100 << 20
	e := newEnvWith(t, func(p pool.Pool) pool.Pool {
		return fixedStat{Pool: p, fs: pool.FS{AvailableBytes: free, TotalBytes: 200 << 20}}
	})
	ctx := context.Background()
	before, err := e.srv.GetCapacity(ctx, &csi.GetCapacityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if before.GetAvailableCapacity() != free || before.GetMaximumVolumeSize().GetValue() != free {
		t.Fatalf("capacity = %v, want %d available and as maximum volume size", before, free)
	}
	// A 1 MiB volume that has written nothing is promised in full.
	e.create(t, "pv-cap", nil)
	after, err := e.srv.GetCapacity(ctx, &csi.GetCapacityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(free - 1<<20); after.GetAvailableCapacity() != want || after.GetMaximumVolumeSize().GetValue() != want {
		t.Fatalf("capacity after promising 1Mi = %v, want %d", after, want)
	}
	// The maximum volume size is what CreateVolume accepts.
	big := createReq("pv-max", nil)
	big.CapacityRange.RequiredBytes = after.GetMaximumVolumeSize().GetValue() + 1
	_, err = e.srv.CreateVolume(ctx, big)
	wantCode(t, err, codes.ResourceExhausted)
	wantMessage(t, err, "can promise 99Mi", "filesystem free 100Mi")
	big.CapacityRange.RequiredBytes--
	if _, err := e.srv.CreateVolume(ctx, big); err != nil {
		t.Fatalf("CreateVolume of the maximum volume size: %v", err)
	}
	other, err := e.srv.GetCapacity(ctx, &csi.GetCapacityRequest{AccessibleTopology: topology.ForNode("node-b")})
	if err != nil || other.GetAvailableCapacity() != 0 {
		t.Fatalf("capacity for another node = %v %v, want 0", other, err)
	}
	// A pool this node lacks: no capacity, so the scheduler looks elsewhere.
	nope, err := e.srv.GetCapacity(ctx, &csi.GetCapacityRequest{Parameters: map[string]string{"pool": "nope"}})
	if err != nil || nope.GetAvailableCapacity() != 0 {
		t.Errorf("capacity of an unknown pool = %v %v, want 0", nope, err)
	}
	// A parameter CreateVolume refuses: the pool's capacity, so that the
	// refusal reaches the user as a ProvisioningFailed event.
	want, err := e.srv.GetCapacity(ctx, &csi.GetCapacityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	bogus, err := e.srv.GetCapacity(ctx, &csi.GetCapacityRequest{Parameters: map[string]string{"bogus": "1"}})
	if err != nil || bogus.GetAvailableCapacity() != want.GetAvailableCapacity() {
		t.Errorf("capacity with a bad parameter = %v %v, want %v", bogus, err, want)
	}
}

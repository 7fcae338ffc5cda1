package identity

import (
	"context"
	"errors"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func TestProbe(t *testing.T) {
	notReady := func() error { return errors.New("catalog recovery in progress") }
	ready := func() error { return nil }
	tests := []struct {
		name     string
		ready    func() error
		stopping bool
		want     bool
	}{
		{name: "ready", ready: ready, want: true},
		{name: "no ready func", want: true},
		{name: "not ready", ready: notReady, want: false},
		{name: "stopping", ready: ready, stopping: true, want: false},
		{name: "stopping and not ready", ready: notReady, stopping: true, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New("dirvol.csi.example.com", "v0.1.0", tc.ready)
			if tc.stopping {
				s.SetStopping()
			}
			resp, err := s.Probe(context.Background(), &csi.ProbeRequest{})
			if err != nil {
				t.Fatalf("Probe: %v", err)
			}
			if resp.GetReady() == nil {
				t.Fatal("Probe: ready is not set")
			}
			if got := resp.GetReady().GetValue(); got != tc.want {
				t.Errorf("Probe: ready = %v, want %v", got, tc.want)
			}
		})
	}
}

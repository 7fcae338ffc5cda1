package controller

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestLock(t *testing.T) {
	const vol, snap = "vol-0123456789abcdef0123456789abcdef", "snap-0123456789abcdef0123456789abcdef"
	tests := []struct {
		name  string
		held  []lockKey
		take  []lockKey
		busy  string // "" when take must succeed
		still []lockKey
	}{
		{name: "free", take: []lockKey{lockVolumeName("pv-1"), lockVolumeID(vol)}},
		{name: "empty key skipped", held: []lockKey{lockSnapshotID("")}, take: []lockKey{lockVolumeName("pv-1"), lockSnapshotID("")}},
		{name: "name busy", held: []lockKey{lockVolumeName("pv-1")}, take: []lockKey{lockVolumeName("pv-1")}, busy: `volume name "pv-1"`},
		{name: "second key busy releases the first", held: []lockKey{lockVolumeID(vol)},
			take: []lockKey{lockSnapshotName("snap-1"), lockVolumeID(vol)}, busy: `volume "` + vol + `"`,
			still: []lockKey{lockSnapshotName("snap-1")}},
		{name: "kinds are separate", held: []lockKey{lockVolumeName("x"), lockSnapshotID(snap)},
			take: []lockKey{lockSnapshotName("x"), lockVolumeID(snap)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{}
			for _, k := range tt.held {
				s.locks.TryLock(k)
			}
			unlock, err := s.lock(tt.take...)
			if tt.busy != "" {
				if status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), tt.busy) {
					t.Fatalf("lock = %v, want Aborted naming %s", err, tt.busy)
				}
				for _, k := range tt.still {
					if !s.locks.TryLock(k) {
						t.Errorf("%v stayed held after a refused lock", k)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("lock: %v", err)
			}
			for _, k := range tt.take {
				if k.key != "" && s.locks.TryLock(k) {
					t.Errorf("%v not held", k)
				}
			}
			unlock()
			for _, k := range tt.take {
				if k.key != "" && !s.locks.TryLock(k) {
					t.Errorf("%v still held after unlock", k)
				}
			}
		})
	}
}

package node

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The node answers the core's errors with the codes the controller uses
// (the full table is tested in internal/csierr).
func TestToStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{name: "volume not found", err: fmt.Errorf("volume vol-x: %w", volume.ErrNotFound), want: codes.NotFound},
		{name: "catalog not recovered", err: volume.ErrNotReady, want: codes.Unavailable},
		{name: "volume's pool not configured at this start", err: fmt.Errorf("x: %w", volume.ErrPoolNotConfigured), want: codes.FailedPrecondition},
		{name: "unreadable record", err: fmt.Errorf("x: %w", catalog.ErrUnreadable), want: codes.FailedPrecondition},
		{name: "loop device in use", err: fmt.Errorf("detach /dev/loop3: %w", loopdev.ErrBusy), want: codes.FailedPrecondition},
		{name: "bare error", err: errors.New("mount failed"), want: codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toStatus(tt.err)
			if status.Code(got) != tt.want {
				t.Fatalf("toStatus(%v) code = %s, want %s", tt.err, status.Code(got), tt.want)
			}
			if !strings.Contains(got.Error(), tt.err.Error()) {
				t.Errorf("toStatus(%v) = %v, lost the message", tt.err, got)
			}
		})
	}
}

package node

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The node's own errors get their hints; the core's get the codes the
// controller gives them (the whole table is tested in internal/csierr).
func TestToStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{name: "volume not found", err: fmt.Errorf("volume vol-x: %w", volume.ErrNotFound), want: codes.NotFound},
		{name: "volume busy", err: fmt.Errorf("deleting: %w", volume.ErrBusy), want: codes.Aborted},
		{name: "catalog not recovered", err: volume.ErrNotReady, want: codes.Unavailable},
		{name: "invalid path element", err: fmt.Errorf("%q: %w", "..", pool.ErrInvalidName), want: codes.InvalidArgument},
		{name: "doubly wrapped", err: fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", volume.ErrNotFound)), want: codes.NotFound},
		{name: "bare error", err: fmt.Errorf("mount failed"), want: codes.Internal},
		{name: "os error", err: &fs.PathError{Op: "mkdir", Path: "/x", Err: fs.ErrPermission}, want: codes.Internal},
		// Text that looks like a sentinel's is not the sentinel.
		{name: "text only", err: errors.New(volume.ErrNotFound.Error()), want: codes.Internal},
		{name: "volume's pool not configured at this start", err: fmt.Errorf("volume v is in pool %q: %w", "gone", volume.ErrPoolNotConfigured), want: codes.FailedPrecondition},
		{name: "unreadable record", err: fmt.Errorf("x: %w", catalog.ErrUnreadable), want: codes.FailedPrecondition},
		{name: "image pool not mounted", err: fmt.Errorf("x: %w", pool.ErrNotMounted), want: codes.FailedPrecondition},
		{name: "symbolic link in a target", err: fmt.Errorf("/pods/x: %w", errSymlink), want: codes.InvalidArgument},
		{name: "file in the middle of a target", err: fmt.Errorf("/pods/x: %w", errNotDir), want: codes.InvalidArgument},
		{name: "component too long", err: fmt.Errorf("open /pods/x: %w", unix.ENAMETOOLONG), want: codes.InvalidArgument},
		{name: "status passes through", err: status.Error(codes.Aborted, "busy"), want: codes.Aborted},
		{name: "shrink", err: fmt.Errorf("limit below size: %w", volume.ErrOutOfRange), want: codes.OutOfRange},
		{name: "pool full", err: fmt.Errorf("grow: %w", volume.ErrNoSpace), want: codes.ResourceExhausted},
		{name: "loop device in use", err: fmt.Errorf("detach /dev/loop3: %w", loopdev.ErrBusy), want: codes.FailedPrecondition},
		{name: "loop device detach deferred is not an error to map", err: loopdev.ErrDeferred, want: codes.Internal},
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
	if err := toStatus(nil); err != nil {
		t.Errorf("toStatus(nil) = %v, want nil", err)
	}
}

package csierr

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/pkg/capability"
	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{name: "volume not found", err: fmt.Errorf("volume vol-x: %w", volume.ErrNotFound), want: codes.NotFound},
		{name: "snapshot not found", err: volume.ErrSnapshotNotFound, want: codes.NotFound},
		{name: "source not found", err: volume.ErrSourceNotFound, want: codes.NotFound},
		{name: "volume busy", err: fmt.Errorf("deleting: %w", volume.ErrBusy), want: codes.Aborted},
		{name: "catalog not recovered", err: volume.ErrNotReady, want: codes.Unavailable},
		{name: "name taken", err: volume.ErrConflict, want: codes.AlreadyExists},
		{name: "shrink", err: fmt.Errorf("limit below size: %w", volume.ErrOutOfRange), want: codes.OutOfRange},
		{name: "pool full", err: fmt.Errorf("grow: %w", volume.ErrNoSpace), want: codes.ResourceExhausted},
		{name: "pool full while copying", err: fmt.Errorf("%w: %w", volume.ErrNoSpace, syscall.ENOSPC), want: codes.ResourceExhausted},
		{name: "catalog filesystem full", err: fmt.Errorf("put: %w: %w", catalog.ErrNoSpace, syscall.ENOSPC), want: codes.ResourceExhausted},
		{name: "request names an unknown pool", err: volume.ErrUnknownPool, want: codes.InvalidArgument},
		{name: "source does not fit", err: volume.ErrSourceMismatch, want: codes.InvalidArgument},
		{name: "invalid path element", err: fmt.Errorf("%q: %w", "..", pool.ErrInvalidName), want: codes.InvalidArgument},
		{name: "backend cannot", err: pool.ErrUnsupported, want: codes.InvalidArgument},
		{name: "capability", err: capability.ErrUnsupported, want: codes.InvalidArgument},
		{name: "existing volume's pool not configured", err: fmt.Errorf("x: %w", volume.ErrPoolNotConfigured), want: codes.FailedPrecondition},
		{name: "volume still mounted", err: fmt.Errorf("x: %w", volume.ErrInUse), want: codes.FailedPrecondition},
		{name: "image pool not mounted", err: fmt.Errorf("x: %w", pool.ErrNotMounted), want: codes.FailedPrecondition},
		{name: "unreadable record", err: fmt.Errorf("x: %w", catalog.ErrUnreadable), want: codes.FailedPrecondition},
		{name: "loop device in use", err: fmt.Errorf("detach /dev/loop3: %w", loopdev.ErrBusy), want: codes.FailedPrecondition},
		{name: "loop device detach deferred is not an error to map", err: loopdev.ErrDeferred, want: codes.Internal},
		{name: "deadline", err: fmt.Errorf("wait: %w", context.DeadlineExceeded), want: codes.DeadlineExceeded},
		{name: "cancelled", err: context.Canceled, want: codes.Canceled},
		{name: "doubly wrapped", err: fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", volume.ErrNotFound)), want: codes.NotFound},
		{name: "bare error", err: fmt.Errorf("mount failed"), want: codes.Internal},
		{name: "os error", err: &fs.PathError{Op: "mkdir", Path: "/x", Err: fs.ErrPermission}, want: codes.Internal},
		{name: "bare ENOSPC is not classified here", err: syscall.ENOSPC, want: codes.Internal},
		// Text that looks like a sentinel's is not the sentinel.
		{name: "text only", err: errors.New(volume.ErrNotFound.Error()), want: codes.Internal},
		{name: "status kept", err: status.Error(codes.Aborted, "busy"), want: codes.Aborted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Status(tt.err)
			if status.Code(got) != tt.want || Code(tt.err) != tt.want {
				t.Fatalf("Status(%v) code = %s, Code = %s, want %s", tt.err, status.Code(got), Code(tt.err), tt.want)
			}
			if !strings.Contains(got.Error(), status.Convert(tt.err).Message()) {
				t.Errorf("Status(%v) = %v, lost the message", tt.err, got)
			}
		})
	}
	if err := Status(nil); err != nil {
		t.Errorf("Status(nil) = %v, want nil", err)
	}
	if c := Code(nil); c != codes.OK {
		t.Errorf("Code(nil) = %s, want OK", c)
	}
}

// Every sentinel in the table is reached by its own entry, not shadowed by
// an earlier one.
func TestTableOrder(t *testing.T) {
	for _, e := range table {
		if got := Code(fmt.Errorf("wrapped: %w", e.err)); got != e.code {
			t.Errorf("%v maps to %s, want %s", e.err, got, e.code)
		}
	}
}

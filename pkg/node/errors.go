//go:build linux

package node

import (
	"errors"

	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus is the one place the node service turns lower-layer errors into
// gRPC codes, by their sentinel errors. Anything unrecognised (mount
// failures, I/O errors) is Internal, never Unknown.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	msg := err.Error()
	switch {
	case errors.Is(err, errSymlink):
		code = codes.InvalidArgument
		msg += "; target paths are resolved without following symbolic links, give the path with none"
	case errors.Is(err, errNotDir):
		code = codes.InvalidArgument
		msg += "; every component of a target path but the last must be a directory"
	case errors.Is(err, unix.ENAMETOOLONG):
		code = codes.InvalidArgument
		msg += "; a path component is at most 255 bytes"
	case errors.Is(err, volume.ErrUnknownPool):
		// The volume exists, in a pool this start was not given: nothing
		// is wrong with the request, and the controller says the same.
		code = codes.FailedPrecondition
		msg += "; start the driver with that --pool again, then retry"
	case errors.Is(err, errNoMountAPI):
		code = codes.FailedPrecondition
	case errors.Is(err, volume.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, volume.ErrBusy):
		code = codes.Aborted
	case errors.Is(err, volume.ErrNotReady):
		code = codes.Unavailable
	case errors.Is(err, pool.ErrInvalidName):
		code = codes.InvalidArgument
	case errors.Is(err, volume.ErrOutOfRange):
		code = codes.OutOfRange
	case errors.Is(err, volume.ErrNoSpace):
		code = codes.ResourceExhausted
	case errors.Is(err, loopdev.ErrBusy):
		code = codes.FailedPrecondition
	}
	return status.Error(code, msg)
}

package node

import (
	"errors"

	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
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
	code := codes.Internal
	switch {
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
	return status.Error(code, err.Error())
}

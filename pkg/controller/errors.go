package controller

import (
	"errors"

	"github.com/dirvol/dirvol/pkg/capability"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus is the one place the controller turns lower-layer errors into
// gRPC codes. Anything unrecognised is Internal, never Unknown.
//
// pool.ErrUnsupported (a pool's backend cannot do what was asked, say a
// block volume on a backend without block files) is InvalidArgument: the
// request, through its StorageClass, names a pool that cannot serve it, and
// repeating it cannot succeed; the message names the pool.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, errBadParameter), errors.Is(err, capability.ErrUnsupported),
		errors.Is(err, volume.ErrUnknownPool), errors.Is(err, pool.ErrInvalidName),
		errors.Is(err, volume.ErrSourceMismatch), errors.Is(err, pool.ErrUnsupported):
		code = codes.InvalidArgument
	case errors.Is(err, volume.ErrNotFound), errors.Is(err, volume.ErrSnapshotNotFound),
		errors.Is(err, volume.ErrSourceNotFound):
		code = codes.NotFound
	case errors.Is(err, volume.ErrConflict):
		code = codes.AlreadyExists
	case errors.Is(err, volume.ErrOutOfRange):
		code = codes.OutOfRange
	case errors.Is(err, volume.ErrNoSpace):
		code = codes.ResourceExhausted
	case errors.Is(err, volume.ErrBusy):
		code = codes.Aborted
	case errors.Is(err, volume.ErrNotReady):
		code = codes.Unavailable
	}
	return status.Error(code, err.Error())
}

// unknownPoolStatus answers an operation on an existing volume or snapshot
// whose pool this start was not given: not a bad request, and nothing was
// changed.
func unknownPoolStatus(err error) error {
	return status.Errorf(codes.FailedPrecondition, "%v; start the driver with that --pool again, then retry", err)
}

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
		errors.Is(err, volume.ErrUnknownPool), errors.Is(err, pool.ErrInvalidName):
		code = codes.InvalidArgument
	case errors.Is(err, volume.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, volume.ErrConflict):
		code = codes.AlreadyExists
	case errors.Is(err, volume.ErrNoSpace):
		code = codes.ResourceExhausted
	case errors.Is(err, volume.ErrBusy):
		code = codes.Aborted
	case errors.Is(err, volume.ErrNotReady):
		code = codes.Unavailable
	}
	return status.Error(code, err.Error())
}

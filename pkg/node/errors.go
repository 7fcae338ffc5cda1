//go:build linux

package node

import (
	"errors"

	"github.com/dirvol/dirvol/internal/csierr"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus turns errors into gRPC codes: the node's own sentinels here,
// with a hint for what to do, and every error of the volume core and below
// with the table the Controller service uses too (internal/csierr), where
// anything unrecognised (mount failures, I/O errors) is Internal, never
// Unknown.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, errSymlink):
		return status.Error(codes.InvalidArgument,
			err.Error()+"; target paths are resolved without following symbolic links, give the path with none")
	case errors.Is(err, errNotDir):
		return status.Error(codes.InvalidArgument,
			err.Error()+"; every component of a target path but the last must be a directory")
	case errors.Is(err, unix.ENAMETOOLONG):
		return status.Error(codes.InvalidArgument, err.Error()+"; a path component is at most 255 bytes")
	case errors.Is(err, errNoMountAPI):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return csierr.Status(err)
}

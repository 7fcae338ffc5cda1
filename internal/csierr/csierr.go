// Package csierr is the one table that turns the errors of dirvol's core into
// gRPC status codes, for the Controller and Node services alike. Lower layers
// return sentinel errors (volume.ErrNotFound, catalog.ErrNoSpace, ...); Code
// finds them with errors.Is, never by their text, and anything it does not
// know is Internal, never Unknown.
//
// A handler answers with Status(err). It departs from the table only where
// the CSI spec asks for another answer for its RPC; each such place says so
// where it does it. They are:
//   - DeleteVolume and DeleteSnapshot answer OK, not NotFound, for an ID
//     that does not exist: the spec makes both idempotent.
//   - GetCapacity answers zero capacity, not an error, for a StorageClass
//     whose pool this node lacks: pools are per node, and the scheduler
//     must be able to pick a node that has it.
package csierr

import (
	"context"
	"errors"

	"github.com/dirvol/dirvol/internal/loopdev"
	"github.com/dirvol/dirvol/pkg/capability"
	"github.com/dirvol/dirvol/pkg/catalog"
	"github.com/dirvol/dirvol/pkg/pool"
	"github.com/dirvol/dirvol/pkg/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// entry maps one sentinel error to its code.
type entry struct {
	err  error
	code codes.Code
}

// table is checked in order; the first sentinel err wraps decides. An error
// that wraps two sentinels (a full pool while copying: ErrNoSpace and
// ENOSPC) is classified by the earlier entry.
var table = []entry{
	// The catalog is still being read at start: retry shortly.
	{volume.ErrNotReady, codes.Unavailable},
	// Another operation holds the volume or snapshot: retry later.
	{volume.ErrBusy, codes.Aborted},

	{volume.ErrNotFound, codes.NotFound},
	{volume.ErrSnapshotNotFound, codes.NotFound},
	// CSI: NotFound when a content source does not exist.
	{volume.ErrSourceNotFound, codes.NotFound},
	// CSI: AlreadyExists when a name is taken with other properties.
	{volume.ErrConflict, codes.AlreadyExists},
	// CSI: OutOfRange for a capacity the volume cannot have.
	{volume.ErrOutOfRange, codes.OutOfRange},
	// A full pool, or a full filesystem under the catalog: the CO retries
	// or places the volume elsewhere.
	{volume.ErrNoSpace, codes.ResourceExhausted},
	{catalog.ErrNoSpace, codes.ResourceExhausted},

	// The request cannot succeed as made, on this node: a pool it names is
	// not configured, its content source does not fit it, a name is not a
	// path element, the pool's backend cannot do what it asks.
	{volume.ErrUnknownPool, codes.InvalidArgument},
	{volume.ErrSourceMismatch, codes.InvalidArgument},
	{pool.ErrInvalidName, codes.InvalidArgument},
	{pool.ErrUnsupported, codes.InvalidArgument},
	{capability.ErrUnsupported, codes.InvalidArgument},

	// The request is fine but the node is not in a state to serve it until
	// an operator acts: an existing volume's pool is missing from this
	// start or its image is not mounted, its record cannot be read, its
	// loop device is held elsewhere.
	{volume.ErrPoolNotConfigured, codes.FailedPrecondition},
	// CSI: DeleteVolume answers FailedPrecondition for a volume in use;
	// nothing was changed, and the CO retries once it is unpublished.
	{volume.ErrInUse, codes.FailedPrecondition},
	{pool.ErrNotMounted, codes.FailedPrecondition},
	{catalog.ErrUnreadable, codes.FailedPrecondition},
	{loopdev.ErrBusy, codes.FailedPrecondition},

	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
}

// Code returns the gRPC code for err: the code of a status error, else that
// of the first sentinel in the table err wraps, else Internal. Code(nil) is
// OK.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	for _, e := range table {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return codes.Internal
}

// Status returns err as a gRPC status error with Code(err) and err's text.
// A status error is returned as it is, and nil as nil.
func Status(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(Code(err), err.Error())
}

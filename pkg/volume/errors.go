package volume

import "errors"

var (
	// ErrNotFound means no volume has the given ID (or the ID is not one
	// this driver could have issued).
	ErrNotFound = errors.New("volume not found")
	// ErrConflict means a volume with the requested name exists with a
	// different size or parameters.
	ErrConflict = errors.New("volume exists with different properties")
	// ErrNoSpace means the pool cannot promise the requested size.
	ErrNoSpace = errors.New("not enough space in pool")
	// ErrUnknownPool means the requested pool is not configured.
	ErrUnknownPool = errors.New("unknown pool")
	// ErrBusy means the volume is in the middle of another operation.
	ErrBusy = errors.New("volume is busy")
	// ErrNotReady means recovery has not finished.
	ErrNotReady = errors.New("volume catalog is still being recovered")
)

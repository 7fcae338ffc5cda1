package node

import "github.com/dirvol/dirvol/internal/csierr"

// toStatus turns lower-layer errors into gRPC codes with the table the
// Controller service uses too (internal/csierr): anything unrecognised
// (mount failures, I/O errors) is Internal, never Unknown.
func toStatus(err error) error { return csierr.Status(err) }

package volume

import (
	"crypto/rand"
	"encoding/hex"
	"regexp"
)

// idPattern and snapshotIDPattern are the only shapes of volume and snapshot
// ID this driver issues. Every ID in a request is checked against them
// before any lookup, so no request field ever reaches a path unchecked.
var (
	idPattern         = regexp.MustCompile(`^vol-[0-9a-f]{32}$`)
	snapshotIDPattern = regexp.MustCompile(`^snap-[0-9a-f]{32}$`)
)

// ValidID reports whether id has the shape of a volume ID this driver issues.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// ValidSnapshotID reports whether id has the shape of a snapshot ID this
// driver issues.
func ValidSnapshotID(id string) bool { return snapshotIDPattern.MatchString(id) }

// newID returns a fresh random volume ID (128 bits).
func newID() string { return "vol-" + randomHex() }

// newSnapshotID returns a fresh random snapshot ID (128 bits).
func newSnapshotID() string { return "snap-" + randomHex() }

func randomHex() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}

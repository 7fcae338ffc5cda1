package volume

import (
	"crypto/rand"
	"encoding/hex"
	"regexp"
)

// idPattern is the only shape of volume ID this driver issues. Every ID in a
// request is checked against it before any lookup, so no request field ever
// reaches a path unchecked.
var idPattern = regexp.MustCompile(`^vol-[0-9a-f]{32}$`)

// ValidID reports whether id has the shape of a volume ID this driver issues.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// newID returns a fresh random volume ID (128 bits).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return "vol-" + hex.EncodeToString(b[:])
}

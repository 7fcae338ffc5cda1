package pool

import (
	"fmt"
	"path/filepath"
	"strings"

	mount "k8s.io/mount-utils"
)

// maxNameLen is the longest path element Linux filesystems accept.
const maxNameLen = 255

// checkName accepts name only as a single, ordinary path element.
func checkName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("%q: %w", name, ErrInvalidName)
	case len(name) > maxNameLen:
		return fmt.Errorf("%d bytes is longer than %d: %w", len(name), maxNameLen, ErrInvalidName)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%q holds a slash or NUL: %w", name, ErrInvalidName)
	}
	return nil
}

// within joins name to base and checks that the result stays inside base.
func within(base, name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	p := filepath.Join(base, name)
	if !mount.PathWithinBase(p, base) {
		return "", fmt.Errorf("%q leaves %s: %w", name, base, ErrInvalidName)
	}
	return p, nil
}

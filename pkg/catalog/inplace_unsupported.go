//go:build !linux

package catalog

// prepareInPlace has nothing to prepare where the catalog does not know
// the filesystems.
func prepareInPlace(string) error { return nil }

package volume

import "path/filepath"

// snapPath is where a pool of e keeps snapshot id.
func (e *env) snapPath(poolName, id string) string {
	return filepath.Join(e.dirs[poolName].Root(), "snapshots", id)
}

package pool

// Placeholders replaced by the dir backend's snapshot/clone/block code.

// Expand implements Pool.
func (d *Dir) Expand(id string, bytes int64) error { return ErrUnsupported }

// BlockPath implements Pool.
func (d *Dir) BlockPath(id string) (string, error) { return "", ErrUnsupported }

// Snapshot implements Pool.
func (d *Dir) Snapshot(volID, snapID string) error { return ErrUnsupported }

// SnapshotExists implements Pool.
func (d *Dir) SnapshotExists(snapID string) (bool, error) { return false, ErrUnsupported }

// RemoveSnapshot implements Pool.
func (d *Dir) RemoveSnapshot(snapID string) error { return ErrUnsupported }

// ScanSnapshots implements Pool.
func (d *Dir) ScanSnapshots() ([]string, error) { return nil, nil }

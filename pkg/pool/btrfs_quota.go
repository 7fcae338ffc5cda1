package pool

import (
	"github.com/dirvol/dirvol/internal/btrfs"
)

// QuotaStatus reads the quota status of the pool's filesystem.
func (b *Btrfs) QuotaStatus() (btrfs.QuotaStatus, error) {
	var st btrfs.QuotaStatus
	err := b.withRoot(func(fd int) (err error) {
		st, err = btrfs.ReadQuotaStatus(fd)
		return err
	})
	return st, err
}

// cleanerBusy reports whether btrfs still has deleted subvolumes to drop.
func (b *Btrfs) cleanerBusy() (bool, error) {
	var n int
	err := b.withRoot(func(fd int) (err error) {
		n, err = btrfs.PendingDrops(fd)
		return err
	})
	return n > 0, err
}

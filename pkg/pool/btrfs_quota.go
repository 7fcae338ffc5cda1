package pool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dirvol/dirvol/internal/btrfs"
)

// ErrSizesNotEnforced means a pool whose backend enforces volume sizes
// cannot do so right now: on btrfs, the kernel's quota figures are
// inconsistent or being rescanned, or quotas were turned off.
var ErrSizesNotEnforced = errors.New("volume sizes are not enforced")

// quotaState is what the last quota check found.
type quotaState struct {
	status btrfs.QuotaStatus
	// problem is nil while limits hold, else why not (ErrSizesNotEnforced
	// wrapped).
	problem error
	// rescans counts the rescans this pool started.
	rescans int
}

// QuotaStatus reads the quota status of the pool's filesystem.
func (b *Btrfs) QuotaStatus() (btrfs.QuotaStatus, error) {
	var st btrfs.QuotaStatus
	err := b.withRoot(func(fd int) (err error) {
		st, err = btrfs.ReadQuotaStatus(fd)
		return err
	})
	return st, err
}

// Check implements Pool. On a pool that limits volumes it reads the quota
// status item (one tree search) and, when the kernel has marked its figures
// inconsistent, starts a rescan, which recounts every group and clears the
// mark; later checks follow the rescan until it ends. While the status
// cannot be trusted, EnforcesSize is false, SizeProblem says why, and the
// change is logged once. It also drops the quota groups of subvolumes btrfs
// has finished deleting since the last call. A pool without limits (quotas
// off on a filesystem it does not own) has nothing to check. An image pool
// first checks that its image is still mounted (ErrNotMounted).
func (b *Btrfs) Check(context.Context) error {
	if err := b.checkMounted(); err != nil {
		return err
	}
	if !b.limits {
		return nil
	}
	if err := b.dropUnfreed(); err != nil {
		return fmt.Errorf("pool %q: %w", b.Name(), err)
	}
	return b.checkQuota(false)
}

// checkQuota reads the quota status and acts on it. committed says the
// caller has just committed a transaction, so the status item is current;
// otherwise a status that looks wrong is read again after a commit before
// it is believed, since the kernel writes the item only when it commits.
func (b *Btrfs) checkQuota(committed bool) error {
	b.qmu.Lock()
	defer b.qmu.Unlock()
	var st btrfs.QuotaStatus
	var running bool
	err := b.withRoot(func(fd int) (err error) {
		if st, err = btrfs.ReadQuotaStatus(fd); err != nil {
			return err
		}
		if !st.Trusted() && !committed {
			if err := btrfs.Commit(fd); err != nil {
				return err
			}
			if st, err = btrfs.ReadQuotaStatus(fd); err != nil {
				return err
			}
		}
		if st.Mode == btrfs.QuotaOff {
			return nil
		}
		// The status item lags a commit behind; the kernel knows now.
		if running, err = btrfs.RescanRunning(fd); err != nil {
			return err
		}
		st.Rescanning = running
		if st.Inconsistent && !st.Rescanning {
			if err := btrfs.StartRescan(fd); err != nil {
				return err
			}
			b.quota.rescans++
			st.Rescanning = true
			b.dir.log.Info("Started a btrfs quota rescan to make the quota figures consistent again; volume sizes are not enforced until it ends", "path", b.Root())
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("pool %q: check btrfs quota status: %w", b.Name(), err)
		b.setQuotaState(st, fmt.Errorf("%w: cannot read the btrfs quota status (%w)", ErrSizesNotEnforced, err))
		return err
	}
	b.setQuotaState(st, quotaProblem(st))
	return b.quota.problem
}

// waitRescan waits until no rescan runs on the pool's filesystem, or
// timeout passes, and checks the status (which starts a rescan if it must,
// then waits for that one too). A rescan of a fresh or small filesystem
// takes milliseconds; one of a large filesystem can take minutes, which
// later Checks follow instead.
func (b *Btrfs) waitRescan(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		for {
			var running bool
			err := b.withRoot(func(fd int) (err error) {
				running, err = btrfs.RescanRunning(fd)
				return err
			})
			if err != nil {
				return err
			}
			if !running || time.Now().After(deadline) {
				break
			}
			time.Sleep(rescanPoll)
		}
		err := b.checkQuota(false)
		if err == nil || !errors.Is(err, ErrSizesNotEnforced) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(rescanPoll)
	}
}

// rescanPoll is how often waitRescan asks whether a rescan has ended.
const rescanPoll = 20 * time.Millisecond

// quotaProblem says why status st leaves sizes unenforced, or nil.
func quotaProblem(st btrfs.QuotaStatus) error {
	switch {
	case st.Mode == btrfs.QuotaOff:
		return fmt.Errorf("%w: btrfs quotas were turned off on the pool's filesystem, which dropped every volume's limit; turn them on again (btrfs quota enable on the pool's path): new volumes get limits, existing ones get theirs back when expanded", ErrSizesNotEnforced)
	case st.Inconsistent:
		return fmt.Errorf("%w: the kernel marked the btrfs quota figures inconsistent; a rescan is running to repair them (see the kernel log)", ErrSizesNotEnforced)
	case st.Rescanning:
		return fmt.Errorf("%w: a btrfs quota rescan is running; usage figures are incomplete until it ends", ErrSizesNotEnforced)
	}
	return nil
}

// setQuotaState records what a check found and logs changes. b.qmu is
// held.
func (b *Btrfs) setQuotaState(st btrfs.QuotaStatus, problem error) {
	was := b.quota.problem
	b.quota.status, b.quota.problem = st, problem
	switch {
	case problem != nil && (was == nil || was.Error() != problem.Error()):
		b.dir.log.Error(problem, "Volume sizes in this pool are not enforced", "path", b.Root(), "quotaStatus", st.String(), "sizesEnforced", false)
	case problem == nil && was != nil:
		b.dir.log.Info("Volume sizes in this pool are enforced again", "path", b.Root(), "quotaStatus", st.String(), "sizesEnforced", true)
	}
}

// SizeProblem implements Pool: why this pool, which limits volumes, does
// not enforce their sizes as of the last check, or nil.
func (b *Btrfs) SizeProblem() error {
	if !b.limits {
		return nil
	}
	b.qmu.Lock()
	defer b.qmu.Unlock()
	return b.quota.problem
}

// Rescans returns how many quota rescans the pool has started.
func (b *Btrfs) Rescans() int {
	b.qmu.Lock()
	defer b.qmu.Unlock()
	return b.quota.rescans
}

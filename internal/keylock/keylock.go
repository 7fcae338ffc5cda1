// Package keylock provides per-key try-locks. A CSI handler that finds its
// key already held answers Aborted instead of queueing, as the CSI spec asks
// ("an operation for this volume is already pending"); blocking would let
// retries from the sidecars pile up behind a slow disk.
package keylock

import "sync"

// Locks is a set of held keys. The zero value is ready to use and it is safe
// for concurrent use.
type Locks[K comparable] struct {
	mu   sync.Mutex
	held map[K]struct{}
}

// TryLock takes key and reports true, or reports false when key is held.
func (l *Locks[K]) TryLock(key K) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held == nil {
		l.held = make(map[K]struct{})
	}
	if _, busy := l.held[key]; busy {
		return false
	}
	l.held[key] = struct{}{}
	return true
}

// Unlock releases key. Releasing a key that is not held is a no-op.
func (l *Locks[K]) Unlock(key K) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.held, key)
}

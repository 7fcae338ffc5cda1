package volume

import (
	"fmt"
	"strconv"
	"sync"
)

// ledger tracks, per pool, the bytes promised to volumes and not yet
// written: the sum over volumes of max(0, capacity - used). Each change is
// O(1), so the cost of a create does not grow with the number of volumes.
type ledger struct {
	mu        sync.Mutex
	vols      map[string]ledgerEntry
	unwritten map[string]int64
}

type ledgerEntry struct {
	pool     string
	capacity int64
	used     int64
}

func (e ledgerEntry) unwritten() int64 { return max(0, e.capacity-e.used) }

func newLedger() *ledger {
	return &ledger{vols: make(map[string]ledgerEntry), unwritten: make(map[string]int64)}
}

// add records volume id; used starts at 0, which over-reserves until the
// volume is first measured rather than promising space twice.
func (l *ledger) add(id, pool string, capacity int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addLocked(id, ledgerEntry{pool: pool, capacity: capacity})
}

func (l *ledger) addLocked(id string, e ledgerEntry) {
	if old, ok := l.vols[id]; ok {
		l.unwritten[old.pool] -= old.unwritten()
	}
	l.vols[id] = e
	l.unwritten[e.pool] += e.unwritten()
}

// reserve adds volume id if capacity fits in available minus what is already
// promised in the pool, and otherwise returns ErrNoSpace with the figures.
func (l *ledger) reserve(id, pool string, capacity, available int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if free := available - l.unwritten[pool]; capacity > free {
		return fmt.Errorf("%w: %s requested, pool %q can promise %s (filesystem free %s, promised to volumes and not yet written %s)",
			ErrNoSpace, human(capacity), pool, human(max(0, free)), human(available), human(l.unwritten[pool]))
	}
	l.addLocked(id, ledgerEntry{pool: pool, capacity: capacity})
	return nil
}

// grow raises volume id's capacity if the extra bytes it promises fit in
// available minus what is already promised in the pool, and otherwise
// returns ErrNoSpace with the figures. Bytes already written stay counted
// as written. A volume the ledger does not know is added.
func (l *ledger) grow(id, pool string, capacity, available int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	old, known := l.vols[id]
	if !known {
		old = ledgerEntry{pool: pool}
	}
	grown := old
	grown.capacity = capacity
	extra := grown.unwritten() - old.unwritten()
	if free := available - l.unwritten[old.pool]; extra > free {
		return fmt.Errorf("%w: %s more requested, pool %q can promise %s (filesystem free %s, promised to volumes and not yet written %s)",
			ErrNoSpace, human(extra), old.pool, human(max(0, free)), human(available), human(l.unwritten[old.pool]))
	}
	l.addLocked(id, grown)
	return nil
}

// setCapacity sets volume id's capacity without any check; it undoes a
// grow whose expansion failed.
func (l *ledger) setCapacity(id string, capacity int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.vols[id]; ok {
		e.capacity = capacity
		l.addLocked(id, e)
	}
}

func (l *ledger) remove(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.vols[id]; ok {
		l.unwritten[old.pool] -= old.unwritten()
		delete(l.vols, id)
	}
}

func (l *ledger) setUsed(id string, used int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.vols[id]; ok {
		e.used = used
		l.addLocked(id, e)
	}
}

func (l *ledger) promised(pool string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.unwritten[pool]
}

// human formats a byte count the way Kubernetes quantities read: the largest
// binary unit that divides it exactly (10Gi, 1536Mi), else bytes.
func human(b int64) string {
	units := []string{"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"}
	for i, u := range units {
		size := int64(1) << (10 * (len(units) - i))
		if b != 0 && b%size == 0 {
			return strconv.FormatInt(b/size, 10) + u
		}
	}
	return strconv.FormatInt(b, 10)
}

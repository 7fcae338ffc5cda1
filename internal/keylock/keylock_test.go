package keylock

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestTryLock(t *testing.T) {
	var l Locks[string]
	if !l.TryLock("a") {
		t.Fatal("first TryLock(a) = false, want true")
	}
	if l.TryLock("a") {
		t.Fatal("second TryLock(a) = true while held")
	}
	if !l.TryLock("b") {
		t.Fatal("TryLock(b) = false, keys must be independent")
	}
	l.Unlock("a")
	if !l.TryLock("a") {
		t.Fatal("TryLock(a) after Unlock = false")
	}
	l.Unlock("never-held")
}

func TestTryLockConcurrentOneWinner(t *testing.T) {
	var l Locks[string]
	var winners atomic.Int32
	var start, done sync.WaitGroup
	start.Add(1)
	for range 64 {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			if l.TryLock("k") {
				winners.Add(1)
			}
		}()
	}
	start.Done()
	done.Wait()
	if got := winners.Load(); got != 1 {
		t.Fatalf("%d goroutines took the lock, want exactly 1", got)
	}
}

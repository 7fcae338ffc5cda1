package btrfs

import (
	"testing"
	"time"

	"github.com/dirvol/dirvol/internal/testfs"
)

// waitRescan polls until no rescan runs on fd's filesystem.
func waitRescan(t *testing.T, fd int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		running, err := RescanRunning(fd)
		if err != nil {
			t.Fatal(err)
		}
		if !running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("quota rescan still running after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readStatus(t *testing.T, fd int) QuotaStatus {
	t.Helper()
	if err := Commit(fd); err != nil { // the item is written at commit
		t.Fatal(err)
	}
	st, err := ReadQuotaStatus(fd)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestQuotaStatus(t *testing.T) {
	tests := []struct {
		name   string
		enable func(fd int) error
		mode   QuotaMode
	}{
		{"off", func(int) error { return nil }, QuotaOff},
		{"quota groups", EnableQuota, QuotaFull},
		{"simple quotas", EnableSimpleQuota, QuotaSimple},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fd := openDir(t, testfs.Mount(t, testfs.Btrfs, 0))
			if err := tc.enable(fd); err != nil {
				t.Fatal(err)
			}
			if tc.mode != QuotaOff {
				waitRescan(t, fd)
			}
			st := readStatus(t, fd)
			if st.Mode != tc.mode || st.Trusted() != (tc.mode != QuotaOff) {
				t.Fatalf("status = %+v (%s), want mode %s", st, st, tc.mode)
			}
			if tc.mode != QuotaFull {
				return // simple quotas have nothing to rescan (EINVAL)
			}
			// A rescan asked for on a consistent filesystem runs and
			// leaves it consistent.
			if err := StartRescan(fd); err != nil {
				t.Fatal(err)
			}
			waitRescan(t, fd)
			if st := readStatus(t, fd); !st.Trusted() {
				t.Errorf("after a rescan: %s", st)
			}
		})
	}
}

func TestDeviceSize(t *testing.T) {
	fd := openDir(t, testfs.Mount(t, testfs.Btrfs, 300<<20))
	n, err := DeviceSize(fd, 1)
	if err != nil || n != 300<<20 {
		t.Errorf("DeviceSize = %d, %v; want %d", n, err, 300<<20)
	}
}

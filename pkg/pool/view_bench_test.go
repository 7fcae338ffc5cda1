package pool

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkViewLinkUnlink measures what the claim view adds to one create
// and one delete: making an entry, then removing it with its directories.
func BenchmarkViewLinkUnlink(b *testing.B) {
	root := b.TempDir()
	v := NewView(root)
	c := Claim{Namespace: "ns", Name: "claim", PV: "pvc-0123abcd-0123-4567-89ab-0123456789ab"}
	id := "vol-0123456789abcdef0123456789abcdef"
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Link(id, c); err != nil {
			b.Fatal(err)
		}
		if err := v.Unlink(id, c); err != nil {
			b.Fatal(err)
		}
	}
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "pairs/s")
	}
}

// BenchmarkViewEntries measures reading a view of 10,000 entries in 100
// namespaces, as every start does before repairing it.
func BenchmarkViewEntries(b *testing.B) {
	root := b.TempDir()
	if err := os.MkdirAll(filepath.Join(root, volumesDir), 0o755); err != nil {
		b.Fatal(err)
	}
	v := NewView(root)
	const n = 10000
	for i := range n {
		c := Claim{Namespace: fmt.Sprintf("ns-%d", i%100), Name: fmt.Sprintf("claim-%d", i), PV: fmt.Sprintf("pv-%d", i)}
		if _, err := v.Link(fmt.Sprintf("vol-%032x", i), c); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		e, err := v.Entries()
		if err != nil || len(e) != n {
			b.Fatalf("Entries: %d, %v", len(e), err)
		}
	}
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N*n)/s, "entries/s")
	}
}

package catalog

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// recordSeeds are record files as the catalog writes them and as tests and
// crashes leave them: padded, unpadded, torn, with unknown states, wrong
// IDs, wrong types and hostile names.
func recordSeeds(f *testing.F, key string, good any) {
	f.Helper()
	padded, err := encode(key, good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(key, padded)
	f.Add(key, bytes.TrimRight(padded, " \n"))
	f.Add(key, padded[:len(bytes.TrimRight(padded, " \n"))/2])
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `"x"`,
		`{"id":"` + key + `","name":"a","state":"ready"}`,
		`{"id":"` + key + `","name":"a","state":"frozen"}`,
		`{"id":"` + key + `","name":"a"}`,
		`{"id":"other","name":"a","state":"ready"}`,
		`{"id":"` + key + `","name":"../../etc","pool":"../x","state":"deleting","reclaimTarget":"../../x"}`,
		`{"id":"` + key + `","name":"a\u0000b","state":"creating","capacityBytes":-1,"sizeBytes":-1}`,
		`{"id":"` + key + `","capacityBytes":"big","sizeBytes":"big"}`,
		`{"id":"` + key + `","name":"a","state":"ready"}{"id":"x"}`,
		`{"id":"` + key + `","name":"a","state":"ready","parameters":{"mode":"0750"}}` + strings.Repeat(" ", 5000),
	} {
		f.Add(key, []byte(s))
	}
	f.Add("../../etc", []byte(`{"id":"../../etc","name":"a","state":"ready"}`))
}

// checkDecoded checks what decode must guarantee of a record it accepts,
// and that writing it back and reading it again gives the same record.
func checkDecoded[T record[T]](t *testing.T, key string, r T, err error) {
	t.Helper()
	if err != nil {
		if err.Error() == "" {
			t.Fatal("refusal without a message")
		}
		return
	}
	if r.recordID() != key {
		t.Fatalf("accepted a record of ID %q from the file of %q", r.recordID(), key)
	}
	switch r.recordState() {
	case StateCreating, StateReady, StateDeleting:
	default:
		t.Fatalf("accepted state %q", r.recordState())
	}
	data, err := encode(key, r)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	if len(data)%recordPage != 0 {
		t.Fatalf("encoded record is %d bytes, not whole pages", len(data))
	}
	again, err := decode[T](key, data)
	if err != nil || !reflect.DeepEqual(normalise(again), normalise(r)) {
		t.Fatalf("round trip: %+v, %v; want %+v", again, err, r)
	}
}

// normalise drops what JSON does not keep exactly: the monotonic clock and
// location of times, and nil versus empty maps.
func normalise[T any](r T) any {
	switch v := any(r).(type) {
	case Volume:
		v.CreatedAt = v.CreatedAt.UTC().Round(0)
		if len(v.Parameters) == 0 {
			v.Parameters = nil
		}
		return v
	case Snapshot:
		v.CreatedAt = v.CreatedAt.UTC().Round(0)
		if len(v.Parameters) == 0 {
			v.Parameters = nil
		}
		return v
	}
	return r
}

func FuzzDecodeVolume(f *testing.F) {
	recordSeeds(f, "vol-a", vol("vol-a", "pv-a"))
	f.Fuzz(func(t *testing.T, key string, data []byte) {
		r, err := decode[Volume](key, data)
		checkDecoded(t, key, r, err)
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	recordSeeds(f, "snap-a", snap("snap-a", "s-a", "vol-a"))
	f.Fuzz(func(t *testing.T, key string, data []byte) {
		r, err := decode[Snapshot](key, data)
		checkDecoded(t, key, r, err)
	})
}

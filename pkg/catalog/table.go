package catalog

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
)

// record is what a table stores: a value with an ID (its file name), a name
// unique within its table and a lifecycle state.
type record[T any] interface {
	recordID() string
	recordName() string
	recordState() State
	clone() T
}

// table is one kind of record (volumes or snapshots): the files of a
// recordDir and in-memory indexes by ID and by name.
type table[T record[T]] struct {
	dir recordDir
	// kind names the records in messages ("volume", "snapshot").
	kind string

	// mu guards the indexes only; it is never held across disk I/O.
	mu     sync.Mutex
	byID   map[string]T
	byName map[string]string
	// problems holds, by key, the record files load could not read; get
	// answers ErrUnreadable for them and put refuses them, so that those
	// files stay as they were found. strays are the other entries load did
	// not understand.
	problems map[string]Problem
	strays   []Problem
	// cramped holds the keys of records whose files have no room to be
	// rewritten in place (written by an earlier version); pad rewrites
	// them.
	cramped map[string]bool
}

func newTable[T record[T]](dir, kind string) *table[T] {
	return &table[T]{
		dir:      recordDir{path: dir},
		kind:     kind,
		byID:     make(map[string]T),
		byName:   make(map[string]string),
		problems: make(map[string]Problem),
	}
}

// decode turns the content of the record file named for key into a record.
// It refuses content that is not a record, names another ID than key or
// holds a state this driver does not know: acting on a record it does not
// understand (say, deleting the directory of a volume whose state it cannot
// read) could lose data.
func decode[T record[T]](key string, data []byte) (T, error) {
	var r T
	if err := json.Unmarshal(data, &r); err != nil {
		return r, err
	}
	if r.recordID() != key {
		return r, fmt.Errorf("record holds ID %q, file is named for %q", r.recordID(), key)
	}
	switch st := r.recordState(); st {
	case StateCreating, StateReady, StateDeleting:
	default:
		return r, fmt.Errorf("record has state %.32q; this driver knows %s, %s and %s", st, StateCreating, StateReady, StateDeleting)
	}
	return r, nil
}

// load (re)reads every record file and replaces the indexes. Files that
// cannot be read or decoded, or whose name is already held, are returned as
// Problems and their IDs stay reserved; other stray entries are returned as
// Problems too.
func (t *table[T]) load() ([]Problem, error) {
	files, strays, err := t.dir.load()
	if err != nil {
		return nil, err
	}
	byID := make(map[string]T, len(files))
	byName := make(map[string]string, len(files))
	bad := make(map[string]Problem)
	cramped := make(map[string]bool)
	problems := append([]Problem(nil), strays...)
	for _, f := range files {
		r, err := decodeLoaded[T](f)
		if err == nil {
			if other, taken := byName[r.recordName()]; taken {
				err = fmt.Errorf("name %q is also held by %s %s", r.recordName(), t.kind, other)
			}
		}
		if err != nil {
			p := Problem{File: t.dir.file(f.key), ID: f.key, Err: err}
			problems = append(problems, p)
			bad[f.key] = p
			continue
		}
		byID[f.key] = r
		byName[r.recordName()] = f.key
		// Records in an intent state are finished or rolled back by the
		// recovery that follows: only ready ones need the room.
		if f.cramped && r.recordState() == StateReady {
			cramped[f.key] = true
		}
	}
	t.mu.Lock()
	t.byID, t.byName, t.problems, t.strays, t.cramped = byID, byName, bad, strays, cramped
	t.mu.Unlock()
	return problems, nil
}

func decodeLoaded[T record[T]](f loaded) (T, error) {
	if f.err != nil {
		var zero T
		return zero, f.err
	}
	return decode[T](f.key, f.data)
}

// pad rewrites, padded, the records load found without room to be
// rewritten in place, and returns how many it rewrote. It stops at the
// first failure (on a full filesystem: ErrNoSpace); the records left
// cramped are tried again at the next load.
func (t *table[T]) pad() (int, error) {
	t.mu.Lock()
	keys := make([]string, 0, len(t.cramped))
	for k := range t.cramped {
		keys = append(keys, k)
	}
	t.mu.Unlock()
	sort.Strings(keys)
	for i, k := range keys {
		t.mu.Lock()
		r, ok := t.byID[k]
		t.mu.Unlock()
		if ok {
			if err := t.dir.write(k, r); err != nil {
				return i, err
			}
		}
		t.mu.Lock()
		delete(t.cramped, k)
		t.mu.Unlock()
	}
	return len(keys), nil
}

// problemList returns the problems of the last load, record files first.
func (t *table[T]) problemList() []Problem {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Problem, 0, len(t.problems)+len(t.strays))
	for _, p := range t.problems {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return append(out, t.strays...)
}

func (t *table[T]) get(id string) (T, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.byID[id]
	if !ok {
		var zero T
		if p, bad := t.problems[id]; bad {
			return zero, fmt.Errorf("%s %s: record file %s: %w: %w; it is kept for an operator to repair or remove, then restart the driver",
				t.kind, id, p.File, p.Err, ErrUnreadable)
		}
		return zero, fmt.Errorf("%s %s: %w", t.kind, id, ErrNotFound)
	}
	return r.clone(), nil
}

func (t *table[T]) getByName(name string) (T, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.byName[name]
	if !ok {
		var zero T
		return zero, fmt.Errorf("%s named %q: %w", t.kind, name, ErrNotFound)
	}
	return t.byID[id].clone(), nil
}

// list returns every record, sorted by ID.
func (t *table[T]) list() []T {
	t.mu.Lock()
	out := make([]T, 0, len(t.byID))
	for _, r := range t.byID {
		out = append(out, r.clone())
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].recordID() < out[j].recordID() })
	return out
}

func (t *table[T]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}

// put durably writes r, adding or replacing the record with its ID. It fails
// with ErrNameTaken, writing nothing, when another ID holds r's name, and
// returns only once the record is on stable storage.
func (t *table[T]) put(r T) error {
	r = r.clone()
	id, name := r.recordID(), r.recordName()
	t.mu.Lock()
	if _, bad := t.problems[id]; bad {
		t.mu.Unlock()
		return fmt.Errorf("%s ID %s: its record file %s could not be loaded and is kept for an operator; the ID cannot be reused",
			t.kind, id, t.dir.file(id))
	}
	old, existed := t.byID[id]
	if holder, taken := t.byName[name]; taken && holder != id {
		t.mu.Unlock()
		return fmt.Errorf("%s name %q held by %s: %w", t.kind, name, holder, ErrNameTaken)
	}
	// Claim the name before the slow write so that a concurrent put of the
	// same name with another ID fails instead of racing.
	t.byID[id] = r
	t.byName[name] = id
	t.mu.Unlock()

	if err := t.dir.write(id, r); err != nil {
		t.mu.Lock()
		if existed {
			t.byID[id] = old
			if old.recordName() != name {
				delete(t.byName, name)
			}
		} else {
			delete(t.byID, id)
			delete(t.byName, name)
		}
		t.mu.Unlock()
		return err
	}
	if existed && old.recordName() != name {
		// The record now on disk holds the new name only: free the old one.
		t.mu.Lock()
		if t.byName[old.recordName()] == id {
			delete(t.byName, old.recordName())
		}
		t.mu.Unlock()
	}
	return nil
}

// remove durably deletes the record with the given ID; a missing record is
// not an error.
func (t *table[T]) remove(id string) error {
	if err := t.dir.remove(id); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.byID[id]; ok {
		delete(t.byName, r.recordName())
		delete(t.byID, id)
	}
	return nil
}

package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// recordDir stores one JSON file per record, named <key>.json. A write goes
// to a temporary file that is fsynced, renamed over the record and followed
// by an fsync of the directory, so a crash leaves either the old or the new
// record, never a torn one, and the cost of a write does not depend on how
// many records exist.
type recordDir struct {
	path string
}

const (
	recordSuffix = ".json"
	tempPrefix   = ".tmp-"
)

func (d recordDir) file(key string) string {
	return filepath.Join(d.path, key+recordSuffix)
}

// write durably replaces the record stored under key with v.
func (d recordDir) write(key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode record %s: %w", key, err)
	}
	tmp, err := os.CreateTemp(d.path, tempPrefix+key+"-*")
	if err != nil {
		return fmt.Errorf("create temporary record for %s: %w", key, err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write record %s: %w", key, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync record %s: %w", key, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close record %s: %w", key, err)
	}
	if err := os.Rename(tmp.Name(), d.file(key)); err != nil {
		return fmt.Errorf("commit record %s: %w", key, err)
	}
	committed = true
	return syncDir(d.path)
}

// remove durably deletes the record stored under key; a missing record is
// not an error.
func (d recordDir) remove(key string) error {
	if err := os.Remove(d.file(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove record %s: %w", key, err)
	}
	return syncDir(d.path)
}

// loaded is one record file read at startup.
type loaded struct {
	key  string
	data []byte
}

// load reads every record and deletes temporary files left by a crash in
// the middle of write: they were never renamed into place, so nothing was
// ever promised from them.
func (d recordDir) load() ([]loaded, error) {
	if err := os.MkdirAll(d.path, 0o700); err != nil {
		return nil, fmt.Errorf("create catalog directory: %w", err)
	}
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return nil, fmt.Errorf("read catalog directory: %w", err)
	}
	out := make([]loaded, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, tempPrefix):
			if err := os.Remove(filepath.Join(d.path, name)); err != nil {
				return nil, fmt.Errorf("remove unfinished record %s: %w", name, err)
			}
		case strings.HasSuffix(name, recordSuffix) && e.Type().IsRegular():
			data, err := os.ReadFile(filepath.Join(d.path, name))
			if err != nil {
				return nil, fmt.Errorf("read record %s: %w", name, err)
			}
			out = append(out, loaded{key: strings.TrimSuffix(name, recordSuffix), data: data})
		}
	}
	return out, syncDir(d.path)
}

// syncDir makes a rename, create or unlink inside dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s for fsync: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// recordDir stores one JSON file per record, named <key>.json. A write goes
// to a temporary file that is fsynced, renamed over the record and followed
// by an fsync of the directory, so a crash leaves either the old or the new
// record, never a torn one, and the cost of a write does not depend on how
// many records exist.
//
// Every record file is padded with spaces (valid trailing JSON whitespace)
// to a whole number of pages with room to spare. The padding is what lets a
// change of state still be recorded when the catalog's filesystem is full:
// see overwrite.
type recordDir struct {
	path string
}

const (
	recordSuffix = ".json"
	tempPrefix   = ".tmp-"

	// maxRecordBytes is the largest record file load reads. Records are a
	// few hundred bytes plus padding (one page); a larger file is not one
	// this driver wrote, and reading it whole could exhaust memory.
	maxRecordBytes = 64 << 10
	// recordPage is the allocation unit a record file is padded to, and the
	// largest record overwrite rewrites in place: one page, which a single
	// write at offset 0 replaces whole as far as a killed process is
	// concerned.
	recordPage = 4096
	// recordSlack is the room kept free in a record file for the fields a
	// later state adds (the delete intent's reclaim target: up to 255
	// bytes of a validated name).
	recordSlack = 1024
)

var (
	// ErrNoSpace means the filesystem holding the catalog has no room (or
	// no quota) for a record write.
	ErrNoSpace = errors.New("catalog filesystem is full")
	// ErrUnreadable means a record file exists but cannot be understood. It
	// is kept on disk for an operator and its ID is never reused.
	ErrUnreadable = errors.New("catalog record cannot be read")
)

func (d recordDir) file(key string) string {
	return filepath.Join(d.path, key+recordSuffix)
}

// encode is the content of a record file: the JSON of v padded with spaces
// to a whole number of pages, leaving at least recordSlack bytes of room.
func encode(key string, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode record %s: %w", key, err)
	}
	size := (len(data) + recordSlack + recordPage - 1) / recordPage * recordPage
	return pad(data, size), nil
}

// pad returns data followed by spaces up to size bytes, ending in a newline.
func pad(data []byte, size int) []byte {
	out := bytes.Repeat([]byte{' '}, size)
	copy(out, data)
	out[size-1] = '\n'
	return out
}

// noSpace reports whether err means the filesystem (or a quota) is full.
func noSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// write durably replaces the record stored under key with v. When the
// filesystem is full, an existing record is rewritten in place instead (see
// overwrite); if that is not possible either, the error wraps ErrNoSpace.
func (d recordDir) write(key string, v any) error {
	data, err := encode(key, v)
	if err != nil {
		return err
	}
	err = d.replace(key, data)
	if err == nil || !noSpace(err) {
		return err
	}
	oerr := d.overwrite(key, data)
	switch {
	case oerr == nil:
		return nil
	case errors.Is(oerr, os.ErrNotExist):
		return fmt.Errorf("%w: the filesystem holding the catalog directory %s has no room for new record %s (%w); free space on that filesystem, then retry",
			ErrNoSpace, d.path, key, err)
	}
	return fmt.Errorf("%w: the filesystem holding the catalog directory %s has no room for record %s (%w), and %w; free space on that filesystem, then retry",
		ErrNoSpace, d.path, key, err, oerr)
}

// replace writes data to a temporary file and renames it over the record.
func (d recordDir) replace(key string, data []byte) error {
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

// overwrite rewrites an existing record file in place, within the blocks it
// already has, so that it needs no free space: this is how a delete intent
// is recorded on a full filesystem, after which deleting frees space. It
// refuses when the new content does not fit the file or the file is more
// than one page, so that it is always a single write of one page at offset
// 0: a killed process leaves the old or the new record. A power loss in the
// middle can tear the page; the torn record then fails to decode and is
// reported and kept (ErrUnreadable), its volume neither served nor deleted.
func (d recordDir) overwrite(key string, data []byte) error {
	f, err := os.OpenFile(d.file(key), os.O_WRONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open the record to rewrite it in place: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat record %s: %w", key, err)
	}
	size := fi.Size()
	content := bytes.TrimRight(data, " \n")
	switch {
	case size > recordPage:
		return fmt.Errorf("it cannot be rewritten in place: the record file is %d bytes, more than the %d bytes rewritten in place", size, recordPage)
	case int64(len(content))+1 > size:
		return fmt.Errorf("it cannot be rewritten in place: the new record (%d bytes) does not fit in the %d bytes of the record file", len(content), size)
	}
	if _, err := f.WriteAt(pad(content, int(size)), 0); err != nil {
		return fmt.Errorf("rewrite record %s in place: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync record %s: %w", key, err)
	}
	return nil
}

// remove durably deletes the record stored under key; a missing record is
// not an error.
func (d recordDir) remove(key string) error {
	if err := os.Remove(d.file(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove record %s: %w", key, err)
	}
	return syncDir(d.path)
}

// loaded is one record file read at startup; err is set when it could not
// be read.
type loaded struct {
	key  string
	data []byte
	err  error
	// cramped is set when the file has no room to be rewritten in place
	// with a later state (a record written by an earlier version,
	// unpadded).
	cramped bool
}

// load reads every record and deletes temporary files left by a crash in
// the middle of write: they were never renamed into place, so nothing was
// ever promised from them. Any other entry (a directory, a link, a file of
// another name, a temporary file that cannot be removed) is left in place
// and returned as a Problem: one stray entry must not stop the driver. Only
// a directory that cannot be created or listed is an error.
func (d recordDir) load() ([]loaded, []Problem, error) {
	if err := os.MkdirAll(d.path, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create catalog directory: %w", err)
	}
	var strays []Problem
	if err := prepareInPlace(d.path); err != nil {
		strays = append(strays, Problem{File: d.path, Err: fmt.Errorf(
			"records here may not be rewritable in place, so a delete on a full filesystem may fail with ResourceExhausted: %w", err)})
	}
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return nil, nil, fmt.Errorf("read catalog directory: %w", err)
	}
	out := make([]loaded, 0, len(entries))
	stray := func(name string, err error) {
		strays = append(strays, Problem{File: filepath.Join(d.path, name), Err: err})
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, tempPrefix) && e.Type().IsRegular():
			if err := os.Remove(filepath.Join(d.path, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				stray(name, fmt.Errorf("cannot remove this unfinished record write: %w", err))
			}
		case strings.HasPrefix(name, tempPrefix):
			stray(name, fmt.Errorf("a %s named like an unfinished record write; the catalog writes only files here, so it is left in place", kindOf(e.Type())))
		case strings.HasSuffix(name, recordSuffix) && e.Type().IsRegular():
			data, size, err := readRecord(filepath.Join(d.path, name))
			out = append(out, loaded{key: strings.TrimSuffix(name, recordSuffix), data: data, err: err,
				cramped: size < int64(len(data))+recordSlack})
		case strings.HasSuffix(name, recordSuffix):
			// Named like a record: its ID stays reserved.
			out = append(out, loaded{key: strings.TrimSuffix(name, recordSuffix),
				err: fmt.Errorf("a %s, not a record file", kindOf(e.Type()))})
		default:
			stray(name, errors.New("not a record file of this catalog; left in place"))
		}
	}
	return out, strays, syncDir(d.path)
}

// kindOf names a directory entry's type for messages.
func kindOf(t fs.FileMode) string {
	switch {
	case t.IsDir():
		return "directory"
	case t&fs.ModeSymlink != 0:
		return "symbolic link"
	case t.IsRegular():
		return "file"
	}
	return "special file"
}

// readRecord reads one record file, refusing a file larger than
// maxRecordBytes without reading it whole and refusing to follow a link. It
// returns the record without its padding and the file's size.
func readRecord(path string) ([]byte, int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecordBytes+1))
	if err != nil {
		return nil, 0, err
	}
	if len(data) > maxRecordBytes {
		size := "more"
		if fi, err := f.Stat(); err == nil {
			size = fmt.Sprint(fi.Size())
		}
		return nil, 0, fmt.Errorf("file is %s bytes; a record is at most %d", size, maxRecordBytes)
	}
	// Keep the record, not its padding: every record is held until all
	// are decoded.
	return bytes.Clone(bytes.TrimRight(data, " \n")), int64(len(data)), nil
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
